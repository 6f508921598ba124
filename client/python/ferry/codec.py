"""Framing and frame codec of the ferry wire protocol (PROTOCOL.md).

Pure functions and a pure incremental decoder over bytes: no sockets, no
clocks, no threads.  Both the blocking client and the asyncio client use
this module; the unit tests check it against PROTOCOL.md's hex examples.

A frame is a 4-byte big-endian payload length L, then L bytes holding
exactly one msgpack map with str keys.  Decoded frames are plain dicts
with nil values removed (PROTOCOL.md section 3, rule 3: nil means absent).
"""

from __future__ import annotations

import struct
from typing import Any, Mapping, Sequence

import msgpack

from .errors import ProtocolError

PROTOCOL_VERSION = 1
DEFAULT_PORT = 4470
DEFAULT_MAX_FRAME = 8 * 1024 * 1024

# Frame types (section 6).
HELLO = 1
PUB = 2
SUB = 3
UNSUB = 4
ACK = 5
NACK = 6
TOUCH = 7
DELETE = 8
PING = 9
STATS = 10
INFLIGHT = 11
PEEK = 12
TRACE = 13
WELCOME = 64
OK = 65
ERR = 66
MSG = 67

BROKER_TYPES = frozenset((WELCOME, OK, ERR, MSG))

# Subscription modes (SUB `mode`).
MODE_AT_LEAST_ONCE = 0
MODE_AT_MOST_ONCE = 1

UINT64_MAX = (1 << 64) - 1
MAX_DELAY_MS = 1 << 40

_LEN = struct.Struct(">I")
_packer = msgpack.Packer(use_bin_type=True, autoreset=True)


def encode(payload: Mapping[str, Any]) -> bytes:
    """One frame: length prefix + the msgpack map `payload`.

    str values become msgpack str, bytes/bytearray/memoryview become bin.
    Keys whose value is None are left out (nil means absent anyway).
    """
    body: bytes = _packer.pack({k: v for k, v in payload.items() if v is not None})
    return _LEN.pack(len(body)) + body


# --- hand-written PUB encoding: the publish hot path -----------------------
# A PUB frame is built from pre-packed pieces rather than through a dict,
# which saves most of the per-message allocation.  The output is the same
# msgpack the generic encoder would produce for the same keys in the same
# order (tests check it).


def pack_uint(n: int) -> bytes:
    if n < 0 or n > UINT64_MAX:
        raise ValueError(f"integer out of range: {n}")
    if n < 0x80:
        return bytes((n,))
    if n < 0x100:
        return b"\xcc" + bytes((n,))
    if n < 0x10000:
        return b"\xcd" + n.to_bytes(2, "big")
    if n < 0x100000000:
        return b"\xce" + n.to_bytes(4, "big")
    return b"\xcf" + n.to_bytes(8, "big")


def bin_header(n: int) -> bytes:
    if n < 0x100:
        return b"\xc4" + bytes((n,))
    if n < 0x10000:
        return b"\xc5" + n.to_bytes(2, "big")
    return b"\xc6" + n.to_bytes(4, "big")


def _map_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x80 | n,))
    return b"\xde" + n.to_bytes(2, "big")


_K_T_PUB = b"\xa1t\x02"
_K_RID = b"\xa3rid"
_K_TOPIC = b"\xa5topic"
_K_BODY = b"\xa4body"
_K_PID = b"\xa3pid"
_K_SEQ = b"\xa3seq"

# Per-message keys of a PUB (also the keys of a `msgs` entry), in the
# order this encoder writes them.
_MSG_KEYS = ("id", "hdr", "delay", "ttl", "reply_to", "corr", "pid", "seq")


def pub_message_items(body: bytes, opts: Mapping[str, Any] | None) -> list[bytes]:
    """Packed key/value pieces of one message (everything but the frame's
    own keys), `body` last, and their pair count as the first element."""
    parts: list[bytes] = []
    n = 1
    if opts:
        for k in _MSG_KEYS:
            v = opts.get(k)
            if v is None:
                continue
            n += 1
            parts.append(_packer.pack(k))
            parts.append(_packer.pack(v))
    parts.append(_K_BODY)
    parts.append(bin_header(len(body)))
    parts.append(body)
    return [bytes((n,)), *parts]


def encode_pub(topic_packed: bytes, body: bytes, rid: int = 0,
               opts: Mapping[str, Any] | None = None,
               frame_opts: Mapping[str, Any] | None = None) -> bytes:
    """A single-message PUB frame.

    topic_packed: the topic already packed as msgpack str (pack_topic()),
    so a producer publishing to one topic packs it once.  opts: the
    per-message keys (id, hdr, delay, ttl, reply_to, corr, pid, seq);
    frame_opts: group, mandatory.
    """
    pieces = pub_message_items(body, opts)
    n = pieces[0][0] + 2  # t, topic
    head = [_K_T_PUB]
    if rid:
        n += 1
        head.append(_K_RID)
        head.append(pack_uint(rid))
    head.append(_K_TOPIC)
    head.append(topic_packed)
    if frame_opts:
        for k, v in frame_opts.items():
            if v is None:
                continue
            n += 1
            head.append(_packer.pack(k))
            head.append(_packer.pack(v))
    payload = b"".join((_map_header(n), *head, *pieces[1:]))
    return _LEN.pack(len(payload)) + payload


def encode_pub_simple(topic_packed: bytes, body: bytes, rid: int,
                      pid_packed: bytes, seq: int) -> bytes:
    """The common PUB: topic, body and (if pid_packed) pid + seq, nothing
    else.  pid_packed is pack_pid(pid) or b"" (then seq is ignored)."""
    n = len(body)
    if n < 0x100:
        bh = b"\xc4" + _U8[n]
    elif n < 0x10000:
        bh = b"\xc5" + n.to_bytes(2, "big")
    else:
        bh = b"\xc6" + n.to_bytes(4, "big")
    if pid_packed:
        sp = pack_uint(seq)
        if rid:
            payload = b"".join((b"\x86\xa1t\x02\xa3rid", pack_uint(rid), _K_TOPIC,
                                topic_packed, pid_packed, sp, _K_BODY, bh, body))
        else:
            payload = b"".join((b"\x85\xa1t\x02", _K_TOPIC, topic_packed, pid_packed,
                                sp, _K_BODY, bh, body))
    elif rid:
        payload = b"".join((b"\x84\xa1t\x02\xa3rid", pack_uint(rid), _K_TOPIC,
                            topic_packed, _K_BODY, bh, body))
    else:
        payload = b"".join((b"\x83\xa1t\x02", _K_TOPIC, topic_packed, _K_BODY, bh, body))
    return _LEN.pack(len(payload)) + payload


def pack_pid(pid: str) -> bytes:
    """The `pid` key and value, then the `seq` key, packed, for
    encode_pub_simple()."""
    packed: bytes = _packer.pack(pid)
    return _K_PID + packed + _K_SEQ


_U8 = [bytes((i,)) for i in range(256)]


def pack_topic(topic: str) -> bytes:
    packed: bytes = _packer.pack(topic)
    return packed


def encode_pub_batch(topic: str, msgs: Sequence[tuple[bytes, Mapping[str, Any] | None]],
                     rid: int = 0,
                     frame_opts: Mapping[str, Any] | None = None) -> bytes:
    """A batch PUB frame: `msgs` is a sequence of (body, per-message opts)."""
    if not msgs:
        raise ValueError("a batch needs at least one message")
    n = 3
    head = [_K_T_PUB]
    if rid:
        n += 1
        head.append(_K_RID)
        head.append(pack_uint(rid))
    head.append(_K_TOPIC)
    head.append(_packer.pack(topic))
    if frame_opts:
        for k, v in frame_opts.items():
            if v is None:
                continue
            n += 1
            head.append(_packer.pack(k))
            head.append(_packer.pack(v))
    head.append(b"\xa4msgs")
    cnt = len(msgs)
    if cnt < 16:
        head.append(bytes((0x90 | cnt,)))
    elif cnt < 0x10000:
        head.append(b"\xdc" + cnt.to_bytes(2, "big"))
    else:
        head.append(b"\xdd" + cnt.to_bytes(4, "big"))
    for body, opts in msgs:
        pieces = pub_message_items(body, opts)
        head.append(_map_header(pieces[0][0]))
        head.extend(pieces[1:])
    payload = b"".join((_map_header(n), *head))
    return _LEN.pack(len(payload)) + payload


# --- decoding --------------------------------------------------------------


def decode_payload(payload: bytes | memoryview) -> dict[str, Any]:
    """Decode one frame payload into a dict (nil values and non-str keys
    dropped).  Raises ProtocolError when it is not exactly one msgpack map
    or has no valid `t`."""
    try:
        # Fast path: every key a str, every str valid UTF-8 (msgpack's
        # defaults: no keyword arguments, which cost a tenth of the call).
        # Anything else raises ValueError and takes the lenient path.
        obj = _unpackb(payload)
    except (ValueError, TypeError):
        obj = _decode_lenient(payload)
    except msgpack.UnpackException as e:
        raise ProtocolError(f"frame payload is not valid msgpack: {e}") from None
    return _frame_map(obj)


def _frame_map(obj: Any) -> dict[str, Any]:
    """The decoded payload `obj` as a frame: a map without nil values,
    with a valid `t`; or raise ProtocolError."""
    if type(obj) is not dict:
        raise ProtocolError(f"frame payload is a {type(obj).__name__}, not a map")
    if None in obj.values():
        obj = {k: v for k, v in obj.items() if v is not None}
    t = obj.get("t")
    if type(t) is not int or t < 0:
        raise ProtocolError(f"frame without a valid 't': {t!r}")
    return obj


_unpackb = msgpack.unpackb


def _decode_lenient(payload: bytes | memoryview) -> Any:
    """Decode accepting any map key (rule 2: keys that are not str are
    ignored), or raise ProtocolError."""
    try:
        obj = msgpack.unpackb(payload, raw=False, strict_map_key=False,
                              unicode_errors="surrogateescape")
    except msgpack.ExtraData:
        raise ProtocolError("frame payload has trailing bytes after its map") from None
    except (ValueError, TypeError, msgpack.UnpackException) as e:
        # TypeError: a map or an array as a map key (unhashable).
        raise ProtocolError(f"frame payload is not valid msgpack: {e}") from None
    if isinstance(obj, dict) and not all(type(k) is str for k in obj):
        obj = {k: v for k, v in obj.items() if type(k) is str}
    return obj


class Decoder:
    """Incremental frame decoder.

    feed() bytes as they arrive; frames() returns every complete frame.
    A frame is only decoded once all of its L bytes are there.  Framing
    errors (L = 0, L above max_frame) raise ProtocolError and leave the
    decoder unusable: the stream has lost its framing.
    """

    __slots__ = ("buf", "pos", "max_frame", "broken")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.buf = bytearray()
        self.pos = 0
        self.max_frame = max_frame
        self.broken = False

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self.pos:
            # Drop what was consumed before growing the buffer.
            del self.buf[:self.pos]
            self.pos = 0
        self.buf += data

    def pending(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self.buf) - self.pos

    def frames(self, check: bool = False) -> list[dict[str, Any]]:
        """Every complete frame received so far, decoded, in order.

        check=True: broker frames, each checked as check_broker_frame()
        does.  A malformed payload raises ProtocolError; the frames before
        it in the same call are lost with it (the connection is given up)."""
        buf = self.buf
        end = len(buf)
        pos = self.pos
        out: list[dict[str, Any]] = []
        if self.broken:
            return out
        unpack_from = _LEN.unpack_from
        unpackb = _unpackb
        max_frame = self.max_frame
        while end - pos >= 4:
            (n,) = unpack_from(buf, pos)
            if n == 0 or n > max_frame:
                self.broken = True
                self.pos = pos
                if n == 0:
                    raise ProtocolError("received a frame of length 0")
                raise ProtocolError(
                    f"received a frame of {n} bytes, above max_frame {max_frame}")
            start = pos + 4
            if end - start < n:
                break
            pos = start + n
            self.pos = pos
            # A bytearray slice is one small copy; cheaper than a
            # memoryview's bookkeeping for frames of a few hundred bytes.
            payload = buf[start:pos]
            # decode_payload() inline: a function call per frame is a
            # measurable part of a delivery's cost.
            try:
                f = unpackb(payload)
            except (ValueError, TypeError):
                f = _decode_lenient(payload)
            except msgpack.UnpackException as e:
                raise ProtocolError(f"frame payload is not valid msgpack: {e}") from None
            if check and type(f) is dict and len(f) == 8:
                # The common delivery: exactly the usual eight keys, each
                # of the right type (uints: type int, not below 0; bool is
                # not int here).  A nil value fails these type checks, so
                # it is done without looking for nil.  Subscripts, not
                # get(): no method call (a key not there raises KeyError).
                try:
                    plain = (type(t := f["t"]) is int and t == MSG
                             and type(f["body"]) is bytes
                             and type(f["id"]) is str and type(f["topic"]) is str
                             and type(n := f["sid"]) is int and n >= 0
                             and type(n := f["lease"]) is int and n >= 0
                             and type(n := f["att"]) is int and n >= 0
                             and type(n := f["ts"]) is int and n >= 0)
                except KeyError:
                    plain = False
                if plain:
                    out.append(f)
                    continue
            elif check and type(f) is dict and len(f) == 4:
                # The confirm of a publish as ferryd sends it: {t: OK,
                # rid, ids, dur}.  Each value of the right type (so none
                # is nil) is all _frame_map() and _check_fast() would
                # check; their calls are a good part of a confirm's cost.
                # (Reading the bytes in Python instead measured slower
                # than unpackb.)
                try:
                    plain = (type(t := f["t"]) is int and t == OK
                             and type(n := f["rid"]) is int and n >= 0
                             and type(f["ids"]) is list and type(f["dur"]) is int)
                except KeyError:
                    plain = False
                if plain:
                    out.append(f)
                    continue
            f = _frame_map(f)
            if check:
                _check_fast(f)
            out.append(f)
        return out

    def check_eof(self) -> None:
        """Call when the stream ends: raises ProtocolError if it ended in
        the middle of a frame."""
        left = self.pending()
        if left and not self.broken:
            have = left - 4
            if left < 4:
                raise ProtocolError(
                    f"connection closed inside a frame's length ({left} of 4 bytes)")
            (n,) = _LEN.unpack_from(self.buf, self.pos)
            raise ProtocolError(
                f"connection closed inside a frame ({have} of {n} payload bytes)")


# --- frame checks (what the client relies on in broker frames) -------------


def _bad(frame: Mapping[str, Any], key: str, what: str) -> ProtocolError:
    return ProtocolError(f"broker frame t={frame.get('t')}: '{key}' {what}")


def get_uint(frame: Mapping[str, Any], key: str, required: bool = False) -> int:
    v = frame.get(key)
    if v is None:
        if required:
            raise _bad(frame, key, "is missing")
        return 0
    if type(v) is not int or v < 0:
        raise _bad(frame, key, f"is not a uint: {v!r}")
    return v


def get_str(frame: Mapping[str, Any], key: str, required: bool = False) -> str:
    v = frame.get(key)
    if v is None:
        if required:
            raise _bad(frame, key, "is missing")
        return ""
    if not isinstance(v, str):
        raise _bad(frame, key, f"is not a str: {v!r}")
    return v


def get_body(frame: Mapping[str, Any]) -> bytes:
    v = frame.get("body")
    if isinstance(v, bytes):
        return v
    if isinstance(v, str):  # the codec accepts a str body too
        return v.encode("utf-8", "surrogateescape")
    raise _bad(frame, "body", "is missing or not bin")


def get_headers(frame: Mapping[str, Any]) -> dict[str, str]:
    v = frame.get("hdr")
    if v is None:
        return {}
    if not isinstance(v, dict) or not all(
            isinstance(k, str) and isinstance(x, str) for k, x in v.items()):
        raise _bad(frame, "hdr", "is not a map str->str")
    return v


def get_ids(frame: Mapping[str, Any]) -> list[str]:
    """`ids` of a publish confirm (absent: none)."""
    v = frame.get("ids")
    if v is None:
        return []
    if type(v) is not list or not all(type(x) is str for x in v):
        raise _bad(frame, "ids", "is not an array of str")
    return v


def get_rows(frame: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    v = frame.get(key)
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(r, dict) for r in v):
        raise _bad(frame, key, "is not an array of maps")
    return [{k: x for k, x in r.items() if x is not None and isinstance(k, str)}
            for r in v]


def check_broker_frame(frame: Mapping[str, Any]) -> int:
    """Validate the keys the client relies on; return `t`.

    Raises ProtocolError for a broker-to-client frame the client cannot
    use: an unknown `t`, a missing or mistyped required key."""
    t = frame["t"]
    if t == MSG:
        get_uint(frame, "sid", True)
        get_str(frame, "id", True)
        get_body(frame)
        get_uint(frame, "lease")
        get_uint(frame, "rid")
        get_uint(frame, "att")
        get_uint(frame, "ts")
        get_str(frame, "topic")
        get_str(frame, "reply_to")
        get_str(frame, "corr")
        get_headers(frame)
        get_rows(frame, "hist")
    elif t == OK:
        get_uint(frame, "rid")
    elif t == ERR:
        get_uint(frame, "code", True)
        get_uint(frame, "rid")
        get_str(frame, "msg")
    elif t == WELCOME:
        get_uint(frame, "v", True)
        get_uint(frame, "max_frame")
        get_uint(frame, "max_msg")
    else:
        raise ProtocolError(f"broker sent a frame of unknown type t={t}")
    return int(t)


_PLAIN_MSG = frozenset(("t", "sid", "id", "topic", "lease", "att", "ts", "body"))


def _check_fast(f: dict[str, Any]) -> None:
    """check_broker_frame(f), with the other common cases inline: a
    delivery with only usual keys (some absent) and a reply, whose other
    keys are checked where used."""
    t = f["t"]
    g = f.get
    n: Any
    if t == MSG:
        if (f.keys() <= _PLAIN_MSG and type(g("body")) is bytes and type(g("id")) is str
                and type(n := g("sid")) is int and n >= 0
                and type(n := g("lease", 0)) is int and n >= 0
                and type(n := g("att", 0)) is int and n >= 0
                and type(n := g("ts", 0)) is int and n >= 0
                and type(g("topic", "")) is str):
            return
    elif t == OK and type(n := g("rid", 0)) is int and n >= 0:
        return
    check_broker_frame(f)
