"""The codec against PROTOCOL.md's hex examples (section 10) and its
framing rules (section 2)."""

from __future__ import annotations

import msgpack
import pytest

from ferry import codec
from ferry.errors import ProtocolError


def hx(s: str) -> bytes:
    return bytes.fromhex(s.replace("\n", " "))


HELLO = hx("""00 00 00 15 83 a1 74 01 a1 76 01 a4 6e 61 6d 65
a8 77 6f 72 6b 65 72 2d 31""")

PUB = hx("""00 00 00 2a 84 a1 74 02 a3 72 69 64 01 a5 74 6f
70 69 63 ae 6f 72 64 65 72 73 2e 63 72 65 61 74
65 64 a4 62 6f 64 79 c4 05 68 65 6c 6c 6f""")

REQUEST = hx("""00 00 00 46 87 a1 74 02 a3 72 69 64 02 a5 74 6f
70 69 63 a8 72 70 63 2e 65 63 68 6f a9 6d 61 6e
64 61 74 6f 72 79 c3 a8 72 65 70 6c 79 5f 74 6f
a8 5f 69 6e 62 6f 78 2e 37 a4 63 6f 72 72 a2 63
31 a4 62 6f 64 79 c4 02 68 69""")


def test_hello_example() -> None:
    assert len(HELLO) == 25
    assert codec.encode({"t": 1, "v": 1, "name": "worker-1"}) == HELLO


def test_pub_example_generic_encoder() -> None:
    assert len(PUB) == 46
    f = {"t": 2, "rid": 1, "topic": "orders.created", "body": b"hello"}
    assert codec.encode(f) == PUB


def test_pub_example_fast_encoder() -> None:
    assert codec.encode_pub(codec.pack_topic("orders.created"), b"hello", 1) == PUB


def test_request_example() -> None:
    assert len(REQUEST) == 74
    f = {"t": 2, "rid": 2, "topic": "rpc.echo", "mandatory": True,
         "reply_to": "_inbox.7", "corr": "c1", "body": b"hi"}
    assert codec.encode(f) == REQUEST
    # The fast encoder orders keys its own way; the map is the same.
    fast = codec.encode_pub(codec.pack_topic("rpc.echo"), b"hi", 2,
                            {"reply_to": "_inbox.7", "corr": "c1"},
                            {"mandatory": True})
    assert len(fast) == len(REQUEST)
    assert msgpack.unpackb(fast[4:]) == msgpack.unpackb(REQUEST[4:])


@pytest.mark.parametrize("frame", [HELLO, PUB, REQUEST])
def test_decode_examples(frame: bytes) -> None:
    d = codec.Decoder()
    d.feed(frame)
    (f,) = list(d.frames())
    assert f == msgpack.unpackb(frame[4:])
    assert d.pending() == 0


def test_decode_byte_by_byte() -> None:
    """A frame is acted on only once all L bytes are there."""
    d = codec.Decoder()
    stream = HELLO + PUB + REQUEST
    got = []
    for i in range(len(stream)):
        d.feed(stream[i:i + 1])
        got.extend(d.frames())
        if i < len(HELLO) - 1:
            assert got == []
    assert [f["t"] for f in got] == [1, 2, 2]
    assert got[1]["body"] == b"hello"


def test_truncated_at_every_byte_is_incomplete_not_error() -> None:
    for n in range(len(PUB)):
        d = codec.Decoder()
        d.feed(PUB[:n])
        assert list(d.frames()) == []
        if n:
            with pytest.raises(ProtocolError, match="closed inside a frame"):
                d.check_eof()


def test_zero_length_breaks_framing() -> None:
    d = codec.Decoder()
    d.feed(b"\0\0\0\0" + HELLO)
    with pytest.raises(ProtocolError, match="length 0"):
        list(d.frames())
    assert list(d.frames()) == []


def test_too_big() -> None:
    d = codec.Decoder(max_frame=16)
    d.feed(b"\0\0\0\x11" + b"\x80" * 17)
    with pytest.raises(ProtocolError, match="above max_frame"):
        list(d.frames())


@pytest.mark.parametrize("payload,match", [
    (b"\x91\x01", "not a map"),                   # an array
    (b"\x81\xa1t\x41\x00", "trailing"),           # map + extra byte
    (b"\x82\xa1t\x41", "not valid msgpack"),      # map truncated inside
    (b"\x81\xa1x\x01", "valid 't'"),              # no t
    (b"\x81\xa1t\xa1x", "valid 't'"),             # t not a uint
    (b"\xc1", "not valid msgpack"),               # reserved byte
])
def test_malformed_payloads(payload: bytes, match: str) -> None:
    d = codec.Decoder()
    d.feed(len(payload).to_bytes(4, "big") + payload)
    with pytest.raises(ProtocolError, match=match):
        list(d.frames())


# A delivery with exactly the usual eight keys: the decoder's fast path.
PLAIN_MSG = {"t": 67, "sid": 1, "id": "0000000000000001-00000001", "topic": "orders",
             "lease": 9, "att": 1, "ts": 1733362000000, "body": b"x" * 128}


def frame_of(payload: dict) -> bytes:  # type: ignore[type-arg]
    p = msgpack.packb(payload, use_bin_type=True)
    return len(p).to_bytes(4, "big") + p


def checked(stream: bytes, max_frame: int = codec.DEFAULT_MAX_FRAME) -> list[dict]:  # type: ignore[type-arg]
    d = codec.Decoder(max_frame)
    d.feed(stream)
    return d.frames(check=True)


def test_checked_delivery_split_at_every_byte() -> None:
    """The checked decoder acts on a frame only once all of it is there,
    wherever the reads split it."""
    other = dict(PLAIN_MSG, lease=10, id="0000000000000001-00000002")
    stream = frame_of(PLAIN_MSG) + frame_of(other)
    for cut in range(len(stream) + 1):
        d = codec.Decoder()
        d.feed(stream[:cut])
        got = d.frames(check=True)
        d.feed(stream[cut:])
        got += d.frames(check=True)
        assert got == [PLAIN_MSG, other], cut
        assert d.pending() == 0


def test_checked_delivery_oversized_refused() -> None:
    f = frame_of(PLAIN_MSG)
    with pytest.raises(ProtocolError, match="above max_frame"):
        checked(f, max_frame=len(f) - 5)
    assert checked(f, max_frame=len(f) - 4) == [PLAIN_MSG]


@pytest.mark.parametrize("key", ["sid", "id", "topic", "lease", "att", "ts"])
def test_checked_delivery_nil_is_absent(key: str) -> None:
    """Eight keys, one of them nil: that key is absent, as in any frame
    (or the frame is refused if the key is required)."""
    f = dict(PLAIN_MSG, **{key: None})
    want = {k: v for k, v in f.items() if v is not None}
    if key in ("sid", "id"):
        with pytest.raises(ProtocolError, match=f"'{key}' is missing"):
            checked(frame_of(f))
    else:
        assert checked(frame_of(f)) == [want]


def test_checked_delivery_unknown_key_kept() -> None:
    """Eight keys, one unknown in place of a usual one: decoded, checked
    and kept like any other frame (rule 2: unknown keys are ignored)."""
    f = {k: v for k, v in PLAIN_MSG.items() if k != "ts"}
    f["x-new"] = [1, 2]
    assert checked(frame_of(f)) == [f]
    f9 = dict(PLAIN_MSG, **{"x-new": "y"})
    assert checked(frame_of(f9)) == [f9]


@pytest.mark.parametrize("key,value,match", [
    ("lease", -1, "'lease' is not a uint"),
    ("lease", True, "'lease' is not a uint"),
    ("att", 1.0, "'att' is not a uint"),
    ("sid", "1", "'sid' is not a uint"),
    ("ts", [], "'ts' is not a uint"),
    ("topic", 5, "'topic' is not a str"),
    ("id", b"bin", "'id' is not a str"),
    ("body", 7, "'body' is missing or not bin"),
])
def test_checked_delivery_bad_types_refused(key: str, value: object, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        checked(frame_of(dict(PLAIN_MSG, **{key: value})))


def test_checked_delivery_t_must_be_an_int() -> None:
    """A float 67.0 equals MSG but is no valid `t`."""
    with pytest.raises(ProtocolError, match="valid 't'"):
        checked(frame_of(dict(PLAIN_MSG, t=67.0)))


def test_checked_delivery_str_body_accepted() -> None:
    # As before the fast path: the codec accepts a str body.
    f = dict(PLAIN_MSG, body="text")
    assert checked(frame_of(f)) == [f]


def test_checked_unknown_type_refused() -> None:
    with pytest.raises(ProtocolError, match="unknown type t=99"):
        checked(frame_of({"t": 99, "a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6, "g": 7}))


def test_nil_means_absent_and_non_str_keys_ignored() -> None:
    p = msgpack.packb({"t": 65, "rid": 3, "sid": None, 7: "x"})
    f = codec.decode_payload(p)
    assert f == {"t": 65, "rid": 3}


@pytest.mark.parametrize("n", [0, 1, 127, 128, 255, 256, 65535, 65536,
                               2**32 - 1, 2**32, 2**64 - 1])
def test_uint_widths(n: int) -> None:
    assert codec.pack_uint(n) == msgpack.packb(n)
    # Every width MUST be accepted: a uint in a wider encoding.
    wide = b"\xcf" + n.to_bytes(8, "big")
    f = codec.decode_payload(b"\x82\xa1t\x41\xa3rid" + wide)
    assert codec.get_uint(f, "rid") == n


def test_uint_as_signed_int_encoding_accepted() -> None:
    f = codec.decode_payload(b"\x82\xa1t\x41\xa3rid\xd3" + (5).to_bytes(8, "big"))
    assert f["rid"] == 5


def test_negative_uint_refused() -> None:
    f = codec.decode_payload(b"\x82\xa1t\x41\xa3rid\xff")
    with pytest.raises(ProtocolError, match="not a uint"):
        codec.get_uint(f, "rid")


@pytest.mark.parametrize("size", [0, 1, 255, 256, 65535, 65536, 70000])
def test_pub_fast_matches_generic(size: int) -> None:
    body = bytes(range(256)) * (size // 256) + bytes(size % 256)
    opts = {"id": "m-1", "hdr": {"a": "b"}, "delay": 1000, "ttl": 2**40,
            "pid": "p", "seq": 2**63}
    fast = codec.encode_pub(codec.pack_topic("x.y"), body, 300, opts,
                            {"group": "g", "mandatory": True})
    generic = codec.encode({"t": 2, "rid": 300, "topic": "x.y", "group": "g",
                            "mandatory": True, **opts, "body": body})
    assert len(fast) == len(generic)
    assert msgpack.unpackb(fast[4:]) == msgpack.unpackb(generic[4:])


def test_batch() -> None:
    frame = codec.encode_pub_batch("t", [(b"a", None), (b"bb", {"id": "x"})], 9)
    f = msgpack.unpackb(frame[4:])
    assert f == {"t": 2, "rid": 9, "topic": "t",
                 "msgs": [{"body": b"a"}, {"id": "x", "body": b"bb"}]}
    many = codec.encode_pub_batch("t", [(b"", None)] * 70000)
    assert len(msgpack.unpackb(many[4:])["msgs"]) == 70000
    with pytest.raises(ValueError):
        codec.encode_pub_batch("t", [])


def test_broker_frame_checks() -> None:
    ok = {"t": 67, "sid": 1, "id": "x", "body": b"", "lease": 4}
    assert codec.check_broker_frame(ok) == 67
    with pytest.raises(ProtocolError, match="unknown type"):
        codec.check_broker_frame({"t": 99})
    with pytest.raises(ProtocolError, match="'sid' is missing"):
        codec.check_broker_frame({"t": 67, "id": "x", "body": b""})
    with pytest.raises(ProtocolError, match="'body'"):
        codec.check_broker_frame({"t": 67, "sid": 1, "id": "x", "body": 5})
    with pytest.raises(ProtocolError, match="'code' is missing"):
        codec.check_broker_frame({"t": 66})
    # str body accepted (section 3: for body a str is accepted too)
    assert codec.get_body({"t": 67, "body": "hé"}) == "hé".encode()


@pytest.mark.parametrize("rid", [0, 7, 300])
@pytest.mark.parametrize("pid", ["", "p-1"])
@pytest.mark.parametrize("size", [0, 5, 255, 256, 65536])
def test_pub_simple_matches_generic(rid: int, pid: str, size: int) -> None:
    body = b"\x01" * size
    seq = 2**50 + 3
    fast = codec.encode_pub_simple(codec.pack_topic("a.b"), body, rid,
                                   codec.pack_pid(pid) if pid else b"", seq)
    f: dict = {"t": 2}
    if rid:
        f["rid"] = rid
    f["topic"] = "a.b"
    if pid:
        f["pid"] = pid
        f["seq"] = seq
    f["body"] = body
    assert fast == codec.encode(f)


def test_core_checks_delivery_fields() -> None:
    from ferry._core import Core
    c = Core()
    good = {"t": 67, "sid": 1, "id": "x", "body": b"", "hdr": {"a": "b"}, "att": 2}
    assert c.decode(codec.encode(good)) == [good]
    for bad in ({"hdr": ["a"]}, {"hdr": {"a": 1}}, {"att": "2"}, {"topic": 5},
                {"hist": 3}, {"lease": -1}):
        c = Core()
        with pytest.raises(ProtocolError):
            c.decode(codec.encode({**good, **bad}))


@pytest.mark.parametrize("missing", ["sid", "id", "body"])
def test_core_delivery_missing_key(missing: str) -> None:
    from ferry._core import Core
    f = {"t": 67, "sid": 1, "id": "x", "body": b""}
    del f[missing]
    with pytest.raises(ProtocolError, match=f"'{missing}'"):
        Core().decode(codec.encode(f))


def test_get_ids() -> None:
    assert codec.get_ids({"t": 65}) == []
    assert codec.get_ids({"t": 65, "ids": ["a", ""]}) == ["a", ""]
    for bad in ("a", ["a", 1], {"a": 1}):
        with pytest.raises(ProtocolError, match="'ids'"):
            codec.get_ids({"t": 65, "ids": bad})


def test_error_classes_by_code() -> None:
    from ferry import errors
    names = {1: "E_PROTO", 2: "E_TOOBIG", 3: "E_HANDSHAKE", 4: "E_UNKNOWN_TYPE",
             5: "E_BADNAME", 6: "E_BADARG", 7: "E_NOSUB", 8: "E_STALE",
             9: "E_MSGSIZE", 10: "E_NOTFOUND", 11: "E_LIMIT", 12: "E_FULL",
             13: "E_DISK", 14: "E_INTERNAL", 15: "E_DELETED", 16: "E_SHUTDOWN",
             17: "E_MODE", 18: "E_NOSUBSCRIBERS", 20: "E_IDLE"}
    retryable = {12, 13, 14, 16, 18, 20}
    for code, name in names.items():
        e = errors.from_code(code, "m", sid=3)
        assert e.code == code and e.name == name and e.sid == 3
        assert e.retryable == (code in retryable), name
        assert isinstance(e, errors.FerryError) and str(e) == f"{name}: m"
    assert isinstance(errors.from_code(8), errors.StaleLease)
    assert isinstance(errors.from_code(12), errors.QueueFull)
    unknown = errors.from_code(99, "new")
    assert type(unknown) is errors.FerryError and unknown.code == 99
    assert not unknown.retryable


@pytest.mark.parametrize("confirm", [False, True])
@pytest.mark.parametrize("idempotent", [False, True])
@pytest.mark.parametrize("size", [0, 5, 255, 256, 65536])
def test_core_publish_bytes_matches_generic(confirm: bool, idempotent: bool, size: int) -> None:
    """The pre-packed hot path writes what the generic encoder would, rid
    and seq included, for the first publish and for later ones (rid above
    127, a cached topic)."""
    from ferry._core import RESEND, Core, Reply
    c = Core(pid="p-1", idempotent=idempotent)
    c.ready = True
    c.next_rid = 126
    body = b"\x02" * size
    for _ in range(3):
        c.out.clear()
        r = Reply(RESEND) if confirm else None
        seq = c.seq + 1
        rid = c.next_rid
        c.publish_bytes("a.b", body, r)
        f: dict = {"t": 2}
        if confirm:
            f["rid"] = rid
        f["topic"] = "a.b"
        if idempotent:
            f["pid"] = "p-1"
            f["seq"] = seq
        f["body"] = body
        assert bytes(c.out) == codec.encode(f)
        if r is not None:
            assert r.frame == codec.encode(f) and c.pending[rid] is r


def test_reply_message_id() -> None:
    from ferry._core import Reply
    r = Reply()
    r.resolve({"t": 65, "ids": ["a"]})
    assert r.message_id() == "a"
    r = Reply()
    r.resolve({"t": 65})
    assert r.message_id() == ""
    r = Reply()
    r.resolve({"t": 65, "ids": [1]})
    with pytest.raises(ProtocolError, match="'ids'"):
        r.message_id()


def test_invalid_utf8_text_decodes_with_surrogates() -> None:
    """Text that is not UTF-8 (the broker passes ids and headers on as the
    producer sent them) decodes with surrogate escapes, not an error; the
    fast path hands it to the lenient one."""
    payload = msgpack.packb({"t": 67, "sid": 1, "id": b"a\xffb", "body": b"x"},
                            use_bin_type=False)
    f = codec.decode_payload(payload)
    assert f["id"] == "a\udcffb" and f["id"].encode("utf-8", "surrogateescape") == b"a\xffb"


@pytest.mark.parametrize("payload", [b"\x81\x91\x01\x01", b"\x82\xa1t\x41\x81\x01\x02\x03"])
def test_unhashable_map_key_is_a_protocol_error(payload: bytes) -> None:
    """An array or a map as a map key: a clear ProtocolError, not the
    TypeError msgpack raises for it."""
    with pytest.raises(ProtocolError):
        codec.decode_payload(payload)
    d = codec.Decoder()
    d.feed(len(payload).to_bytes(4, "big") + payload)
    with pytest.raises(ProtocolError):
        d.frames(check=True)
