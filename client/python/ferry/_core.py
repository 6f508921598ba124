"""Connection state shared by the blocking and the asyncio client.

Core is sans-I/O: its owner feeds it the bytes it reads (feed()), sends
what it accumulates in `out`, and tells it when a connection starts
(connection_made()) and ends (connection_lost()).  Core matches replies
to requests by rid, keeps the subscriptions so it can subscribe them
again on a new connection, and carries confirmed publishes over to the
new connection (with their pid/seq, so the broker recognises a retry of
a publish it had stored as a duplicate).  It is not thread-safe: the
blocking client calls it under one lock.

What both clients share beyond the wire state lives here too, so that
client.py (a thread and a lock) and aio.py (an asyncio.Protocol) keep
only their I/O: ClientBase holds the options and the hooks,
SubscriptionBase a subscription's queue and end, and Core turns
publish/ack/settle/request-reply calls into frames.
"""

from __future__ import annotations

import logging
import os
import struct
import time
import uuid
from collections import deque
from typing import Any, Callable, Iterable, Mapping

from . import _common, codec
from .errors import (ClientClosed, ConnectionLost, Deleted, FerryError, FrameTooBig,
                     IdleTimeout, MessageTooBig, NoResponders, NotFound, ProtocolError,
                     Shutdown, StaleLease, from_code)

log = logging.getLogger("ferry")

# What happens to a request whose connection drops before its reply.
RESEND = 0   # send it again on the next connection (PUB, PING, STATS, ...)
FAIL = 1     # fail it with ConnectionLost (ACK, NACK, TOUCH: old leases)
DONE = 2     # consider it done (UNSUB: the subscription ended anyway)

_MSG = codec.MSG
_OK = codec.OK


class Reply:
    """One outstanding request. `cb` (if set) is called once it is done."""

    __slots__ = ("rid", "frame", "kind", "finished", "value", "error", "cb")

    def __init__(self, kind: int = RESEND, cb: Callable[[Reply], None] | None = None) -> None:
        self.rid = 0
        self.frame = b""
        self.kind = kind
        self.finished = False
        self.value: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self.cb = cb

    # value (or error) is set before finished: the blocking client's
    # PublishFuture.result() reads a finished reply without the lock, from
    # another thread, and must not see it finished without its value.

    def resolve(self, value: dict[str, Any] | None) -> None:
        if not self.finished:
            self.value = value
            self.finished = True
            if self.cb:
                self.cb(self)

    def fail(self, error: BaseException) -> None:
        if not self.finished:
            self.error = error
            self.finished = True
            if self.cb:
                self.cb(self)

    def message_id(self) -> str:
        """The id a publish confirm gives (PROTOCOL.md, OK `ids`); "" for a
        duplicate whose original the broker no longer remembers."""
        v = (self.value or {}).get("ids")
        if type(v) is list and len(v) == 1 and type(v[0]) is str:
            return v[0]  # the common case, checked without a loop
        ids = codec.get_ids(self.value or {})
        return ids[0] if ids else ""


class Call(Reply):
    """A request of the client's API (PING, DELETE, STATS, ...): its
    payload, and `result`, what the API returns, read from the reply by
    `read`.  With `missing_ok`, NotFound is a result of None."""

    __slots__ = ("payload", "read", "missing_ok", "result")

    def __init__(self, payload: dict[str, Any],
                 read: Callable[[dict[str, Any]], Any] | None = None,
                 missing_ok: bool = False) -> None:
        Reply.__init__(self, RESEND)
        self.payload = payload
        self.read = read
        self.missing_ok = missing_ok
        self.result: Any = None

    def resolve(self, value: dict[str, Any] | None) -> None:
        if self.finished:
            return
        if self.read is not None:
            try:
                self.result = self.read(value or {})
            except FerryError as e:
                Reply.fail(self, e)
                return
        Reply.resolve(self, value)

    def fail(self, error: BaseException) -> None:
        if self.missing_ok and isinstance(error, NotFound):
            Reply.resolve(self, {})
        else:
            Reply.fail(self, error)


def _rows(key: str) -> Callable[[dict[str, Any]], list[dict[str, Any]]]:
    return lambda f: codec.get_rows(f, key)


def _first_row(f: dict[str, Any]) -> dict[str, Any]:
    rows = codec.get_rows(f, "broker")
    return rows[0] if rows else {}


def _msg_frame(f: dict[str, Any]) -> dict[str, Any]:
    if f.get("t") != codec.MSG:
        raise ProtocolError("the reply to PEEK is not a MSG")
    return f


def ping_call() -> Call:
    return Call({"t": codec.PING})


def delete_call(topic: str, group: str | None) -> Call:
    return Call({"t": codec.DELETE, "topic": topic, "group": group or None})


def stats_call(topic: str | None) -> Call:
    return Call({"t": codec.STATS, "topic": topic or None}, _rows("stats"))


def stats_broker_call() -> Call:
    """STATS without a topic: the broker-wide row, {} from a broker that
    does not report one."""
    return Call({"t": codec.STATS}, _first_row)


def inflight_call(topic: str, group: str | None) -> Call:
    return Call({"t": codec.INFLIGHT, "topic": topic, "group": group or None},
                _rows("inflight"))


def peek_call(topic: str, group: str | None) -> Call:
    """PEEK: the MSG frame, or None when the group is empty (NotFound)."""
    return Call({"t": codec.PEEK, "topic": topic, "group": group or None},
                _msg_frame, missing_ok=True)


def trace_call(message_id: str) -> Call:
    return Call({"t": codec.TRACE, "id": message_id}, _rows("events"))


def reply_target(msg: Any) -> str:
    """Where the reply to request `msg` goes."""
    if not msg.reply_to:
        raise ValueError("the message has no reply_to: it is not a request")
    reply_to: str = msg.reply_to
    return reply_to


class SubState:
    """A subscription as the client keeps it across connections."""

    __slots__ = ("topic", "opts", "sid", "group", "ready", "closed",
                 "deliver", "end", "ack_timeout_ms", "mode", "owner",
                 "acks", "acks_gen")

    def __init__(self, topic: str, opts: dict[str, Any], ready: Reply,
                 deliver: Callable[[dict[str, Any], int], None],
                 end: Callable[[BaseException | None], None]) -> None:
        self.topic = topic
        self.opts = opts
        self.sid = 0
        self.group = ""
        self.ready = ready
        self.closed = False
        self.deliver = deliver
        self.end = end
        self.mode = opts.get("mode", 0) or 0
        self.ack_timeout_ms = opts.get("ack_timeout") or 30000
        self.owner: Any = None
        # Leases of ack(wait=False), sent as one ACK per write
        # (Core.collect_acks), and the connection they came on.
        self.acks: list[int] = []
        self.acks_gen = 0


class ShutdownNotice(Exception):
    """The broker announced that it closes the connection (E_SHUTDOWN,
    E_IDLE): reconnect."""


class Core:
    def __init__(self, name: str = "", pid: str | None = None,
                 on_error: Callable[[FerryError], None] | None = None,
                 on_restart: Callable[[str, str], None] | None = None,
                 idempotent: bool = True) -> None:
        self.name = name or f"py-{os.getpid()}"
        # Idempotent producer (PROTOCOL.md section 8, Duplicates): one pid
        # per client, kept across reconnects.  seq starts at the current
        # time in microseconds so that a caller reusing its own pid in a
        # new process still moves above its old high-water mark.
        self.pid = pid or uuid.uuid4().hex
        self.seq = time.time_ns() // 1000
        self.pid_packed = codec.pack_pid(self.pid)
        self.idempotent = idempotent
        self.out = bytearray()
        self.pending: dict[int, Reply] = {}
        self.next_rid = 1
        self.subs: list[SubState] = []
        self.by_sid: dict[int, SubState] = {}
        self.decoder = codec.Decoder()
        self.ready = False     # WELCOME received on the current connection
        self.gen = 0           # connection generation, +1 per connection
        self.welcome: dict[str, Any] = {}
        self.max_frame = codec.DEFAULT_MAX_FRAME
        self.max_msg = 0
        # Told what the broker said unasked: every ERR without a request
        # (PROTOCOL.md section 5), and a new WELCOME boot after a
        # reconnect (boot, previous boot).
        self.on_error = on_error
        self.on_restart = on_restart
        self.topics: dict[str, tuple[bytes, bytes]] = {}
        self.acking: set[SubState] = set()
        self.requests: dict[str, Reply] = {}  # by corr
        self.resent = 0        # requests sent again on a new connection
        self.idle_ms = 0
        self.boot = ""

    # --- connection lifecycle ------------------------------------------

    def connection_made(self) -> None:
        """A new TCP connection: queue HELLO; everything else waits for
        WELCOME."""
        self.gen += 1
        self.ready = False
        self.decoder = codec.Decoder(self.max_frame)
        self.out = bytearray(codec.encode(
            {"t": codec.HELLO, "v": codec.PROTOCOL_VERSION, "name": self.name}))

    def connection_lost(self) -> None:
        self.ready = False
        self.out = bytearray()
        self.by_sid.clear()
        for s in self.subs:
            s.sid = 0
        for rid, r in list(self.pending.items()):
            if r.kind == RESEND:
                continue
            del self.pending[rid]
            if r.kind == DONE:
                r.resolve({})
            else:
                r.fail(ConnectionLost("the connection dropped before the reply"))

    def fail_all(self, error: BaseException) -> None:
        """The client gives up: fail every request and end every
        subscription."""
        pend, self.pending = self.pending, {}
        for r in pend.values():
            r.fail(error)
        subs, self.subs = self.subs, []
        self.by_sid.clear()
        for s in subs:
            s.closed = True
            s.ready.fail(error)
            s.end(error)

    def _on_welcome(self, f: dict[str, Any]) -> None:
        if f.get("v") != codec.PROTOCOL_VERSION:
            raise ProtocolError(f"broker speaks protocol version {f.get('v')}")
        self.welcome = f
        self.max_frame = f.get("max_frame") or codec.DEFAULT_MAX_FRAME
        self.decoder.max_frame = self.max_frame
        self.max_msg = f.get("max_msg", 0)
        # The broker's idle_timeout in ms (0: none), and its lifetime id:
        # a new boot means its in-memory state (leases, counters) is gone.
        self.idle_ms = codec.get_uint(f, "idle")
        previous, self.boot = self.boot, codec.get_str(f, "boot")
        self.ready = True
        if previous and self.boot and self.boot != previous and self.on_restart:
            self.on_restart(self.boot, previous)
        # Subscriptions first, so that a re-sent request finds its reply
        # inbox, then every request still waiting for its reply, in order.
        for s in self.subs:
            if not s.closed:
                self._send_sub(s)
        for r in self.pending.values():
            self.out += r.frame
            self.resent += 1

    # --- sending -------------------------------------------------------

    def _rid(self) -> int:
        rid = self.next_rid
        self.next_rid = rid + 1 if rid < codec.UINT64_MAX else 1
        return rid

    def _check_size(self, frame: bytes) -> None:
        if len(frame) - 4 > self.max_frame:
            raise FrameTooBig(f"frame of {len(frame) - 4} bytes is above the "
                              f"broker's max_frame {self.max_frame}")

    def request(self, payload: dict[str, Any], reply: Reply) -> Reply:
        """Send `payload` with a fresh rid; `reply` receives the answer."""
        if self.acking:  # acks queued before this go before it
            self.collect_acks()
        rid = self._rid()
        payload["rid"] = rid
        frame = codec.encode(payload)
        self._check_size(frame)
        self._pend(reply, rid, frame)
        return reply

    def _pend(self, reply: Reply, rid: int, frame: bytes) -> None:
        """Queue the request `frame` whose answer `reply` waits for (and
        keep it, to send again on a new connection)."""
        reply.rid = rid
        reply.frame = frame
        self.pending[rid] = reply
        if self.ready:
            self.out += frame

    def send(self, payload: dict[str, Any]) -> None:
        """Send without rid: nothing comes back on success.  Dropped if
        there is no connection."""
        if self.ready:
            frame = codec.encode(payload)
            self._check_size(frame)
            self.out += frame

    def _topic(self, topic: str) -> tuple[bytes, bytes]:
        """The constant middle of a bare PUB to `topic`: the topic key and
        value, then pid and the seq key (idempotent) or nothing."""
        if len(self.topics) > 1000:
            self.topics.clear()
        tp = codec.pack_topic(topic)
        p = self.topics[topic] = (b"\xa5topic" + tp + self.pid_packed, b"\xa5topic" + tp)
        return p

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def check_body(self, body: bytes) -> None:
        if self.max_msg and len(body) > self.max_msg:
            raise MessageTooBig(f"body of {len(body)} bytes is above the "
                                f"broker's max_msg {self.max_msg}")

    def publish(self, topic: str, data: Any, reply: Reply | None,
                id: str | None = None, headers: Mapping[str, str] | None = None,
                delay: float | None = None, ttl: float | None = None,
                reply_to: str | None = None, corr: str | None = None,
                group: str | None = None, mandatory: bool = False) -> None:
        """Queue one PUB of `data` (bytes, or JSON-encoded) with the
        options of Client.publish(); confirmed when `reply` is given.
        The drivers pass the options by position: cheaper on the hot
        path."""
        if (type(data) is bytes and id is None and not headers and delay is None
                and ttl is None and reply_to is None and corr is None and group is None
                and not mandatory):
            self.publish_bytes(topic, data, reply)
            return
        opts = _common.message_opts(id=id, headers=headers, delay=delay, ttl=ttl,
                                    reply_to=reply_to, corr=corr)
        body = _common.prepare(data, opts)
        self.check_body(body)
        if self.idempotent:
            opts["pid"] = self.pid
            opts["seq"] = self.next_seq()
        if self.acking:
            self.collect_acks()
        if reply is None:
            if self.ready:
                frame = codec.encode_pub(codec.pack_topic(topic), body, 0, opts,
                                         _common.frame_opts(group, mandatory))
                self._check_size(frame)
                self.out += frame
            return
        rid = self._rid()
        frame = codec.encode_pub(codec.pack_topic(topic), body, rid, opts,
                                 _common.frame_opts(group, mandatory))
        self._check_size(frame)
        self._pend(reply, rid, frame)

    def publish_bytes(self, topic: str, body: bytes, reply: Reply | None) -> None:
        """publish() of a bare body: the hot path.  The frame is one join
        of pieces packed in advance (codec.encode_pub_simple() builds the
        same bytes; the tests compare them)."""
        n = len(body)
        if n > self.max_msg and self.max_msg:
            self.check_body(body)
        if self.acking:
            self.collect_acks()
        mid = self.topics.get(topic) or self._topic(topic)
        if n < 0x100:
            bh = _BODY8[n]
        else:
            bh = b"\xa4body" + codec.bin_header(n)
        if reply is None:
            if not self.ready:
                return  # fire-and-forget: lost without a connection
            if self.idempotent:
                self.seq = seq = self.seq + 1
                m = mid[0]
                sb = _SEQ.pack(0xcf, seq) if seq > 0xFFFFFFFF else codec.pack_uint(seq)
                size = 4 + len(m) + len(sb) + len(bh) + n
                frame = b"".join((_LEN.pack(size), b"\x85\xa1t\x02", m, sb, bh, body))
            else:
                m = mid[1]
                size = 4 + len(m) + len(bh) + n
                frame = b"".join((_LEN.pack(size), b"\x83\xa1t\x02", m, bh, body))
            if size > self.max_frame:
                self._check_size(frame)
            self.out += frame
            return
        rid = self.next_rid
        self.next_rid = rid + 1 if rid < _UINT64_MAX else 1
        # codec.pack_uint(rid) without its call for the usual widths.
        if rid < 0x80:
            rb = _U8[rid]
        elif rid < 0x10000:
            rb = _CC[rid] if rid < 0x100 else _U16.pack(0xcd, rid)
        elif rid < 0x100000000:
            rb = _U32.pack(0xce, rid)
        else:
            rb = codec.pack_uint(rid)
        if self.idempotent:
            self.seq = seq = self.seq + 1
            m = mid[0]
            sb = _SEQ.pack(0xcf, seq) if seq > 0xFFFFFFFF else codec.pack_uint(seq)
            size = 8 + len(rb) + len(m) + len(sb) + len(bh) + n
            frame = b"".join((_LEN.pack(size), b"\x86\xa1t\x02\xa3rid", rb, m, sb, bh, body))
        else:
            m = mid[1]
            size = 8 + len(rb) + len(m) + len(bh) + n
            frame = b"".join((_LEN.pack(size), b"\x84\xa1t\x02\xa3rid", rb, m, bh, body))
        if size > self.max_frame:
            self._check_size(frame)
        # self._pend(reply, rid, frame), inline: once per publish.
        reply.rid = rid
        reply.frame = frame
        self.pending[rid] = reply
        if self.ready:
            self.out += frame

    def publish_batch(self, topic: str, items: Iterable[Any], reply: Reply | None,
                      group: str | None = None, mandatory: bool = False) -> None:
        """Queue one batch PUB; each item is data, or (data, {id, headers,
        delay, ttl, reply_to, corr})."""
        msgs = []
        for data, opts in _common.batch_items(items):
            body = _common.prepare(data, opts)
            self.check_body(body)
            if self.idempotent:
                opts["pid"] = self.pid
                opts["seq"] = self.next_seq()
            msgs.append((body, opts))
        if self.acking:
            self.collect_acks()
        rid = self._rid() if reply is not None else 0
        frame = codec.encode_pub_batch(topic, msgs, rid, _common.frame_opts(group, mandatory))
        self._check_size(frame)
        if reply is not None:
            self._pend(reply, rid, frame)
        elif self.ready:
            self.out += frame

    def unconfirmed(self) -> list[Reply]:
        """Confirmed publishes (and other re-sent requests) not answered
        yet: what flush() waits for."""
        return [r for r in self.pending.values() if r.kind == RESEND and not r.finished]

    # --- acks and settling ---------------------------------------------

    def queue_ack(self, s: SubState, lease: int, gen: int) -> None:
        """ack(wait=False): the lease goes out with the next write, in one
        ACK with every other lease queued for `s` meanwhile, without rid
        (a stale lease comes back as an ERR without rid, to on_error)."""
        if gen != self.gen:
            raise StaleLease("the delivery came on a connection that has "
                             "since dropped; it will be delivered again")
        acks = s.acks
        if s.acks_gen != gen:
            s.acks = acks = []
            s.acks_gen = gen
        if not acks:
            # Already in `acking` otherwise: collect_acks() empties the
            # lists of the subscriptions it takes out of it.
            self.acking.add(s)
        acks.append(lease)

    def collect_acks(self) -> None:
        """Turn the queued acks into ACK frames, one per subscription.
        Called before anything else is queued, so that an ack queued
        before a request goes out before it."""
        subs, self.acking = self.acking, set()
        gen = self.gen
        for s in subs:
            leases, s.acks = s.acks, []
            if not leases or not s.sid or s.acks_gen != gen:
                continue
            if len(leases) == 1:
                self.send({"t": codec.ACK, "sid": s.sid, "lease": leases[0]})
            else:
                self.send({"t": codec.ACK, "sid": s.sid, "leases": leases})

    # --- request-reply ------------------------------------------------

    def inbox(self) -> SubState:
        """The SubState of a new reply inbox: an ephemeral at-most-once
        subscription of a fresh `_inbox.` topic whose deliveries resolve
        the request waiting under their `corr`."""
        def deliver(f: dict[str, Any], gen: int) -> None:
            r = self.requests.get(f.get("corr", ""))
            if r is not None:
                r.resolve(f)

        return SubState(f"_inbox.{uuid.uuid4()}",
                        {"ephemeral": True, "mode": codec.MODE_AT_MOST_ONCE},
                        Reply(FAIL), deliver, lambda e: None)

    def new_request(self) -> tuple[str, Reply]:
        """A correlation id and the Reply its answer resolves."""
        corr = uuid.uuid4().hex
        r = self.requests[corr] = Reply(FAIL)
        return corr, r

    def add_sub(self, s: SubState) -> None:
        self.subs.append(s)
        if self.ready:
            self._send_sub(s)

    def _send_sub(self, s: SubState) -> None:
        def done(r: Reply, s: SubState = s, gen: int = self.gen) -> None:
            if r.error is not None:
                if isinstance(r.error, ConnectionLost):
                    return
                # Refused: the subscription is over.
                s.closed = True
                if s in self.subs:
                    self.subs.remove(s)
                s.ready.fail(r.error)
                s.end(r.error)
                return
            if s.closed or gen != self.gen:
                if not s.closed:
                    return
                # Closed while the SUB was on its way: end it at the broker.
                sid = codec.get_uint(r.value or {}, "sid")
                if sid and gen == self.gen:
                    self.send({"t": codec.UNSUB, "sid": sid})
                return
            f = r.value or {}
            s.sid = codec.get_uint(f, "sid", True)
            s.group = codec.get_str(f, "group")
            self.by_sid[s.sid] = s
            s.ready.resolve(f)

        payload = {"t": codec.SUB, "topic": s.topic, **s.opts}
        # A SUB is re-sent by the subscription list, not by the pending
        # list: FAIL kind drops it on disconnect (ignored in done()).
        self.request(payload, Reply(FAIL, done))

    def remove_sub(self, s: SubState, reply: Reply | None) -> None:
        """End a subscription (UNSUB if it is live)."""
        if self.acking:  # its acks go out before the UNSUB releases them
            self.collect_acks()
        if s.closed:
            if reply:
                reply.resolve({})
            return
        s.closed = True
        if s in self.subs:
            self.subs.remove(s)
        if s.sid and self.ready:
            self.by_sid.pop(s.sid, None)
            sid, s.sid = s.sid, 0
            if reply is None:
                reply = Reply(DONE)
            reply.kind = DONE
            self.request({"t": codec.UNSUB, "sid": sid}, reply)
        elif reply:
            reply.resolve({})
        s.end(None)

    # --- receiving -----------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Process received bytes.  Raises ProtocolError (the peer is
        broken: give up), ShutdownNotice (reconnect), or the ERR of a
        failed handshake."""
        self.dispatch(self.decode(data))

    def decode(self, data: bytes) -> list[dict[str, Any]]:
        """Complete frames in `data` (plus what came before), checked.
        Touches only the decoder, so the blocking client runs it outside
        its lock."""
        self.decoder.feed(data)
        return self.decoder.frames(check=True)

    def dispatch(self, frames: list[dict[str, Any]]) -> None:
        by_sid = self.by_sid
        pending = self.pending
        for f in frames:
            t = f["t"]
            # A reply (the confirm of a publish, mostly) on a ready
            # connection: as below, with fewer look-ups.
            if t == _OK and self.ready:
                r = pending.pop(f.get("rid", 0), None)
                if r is not None:
                    r.resolve(f)
                continue
            # The common case first: a delivery to a subscription.
            if t == _MSG and self.ready and not f.get("rid"):
                s = by_sid.get(f["sid"])
                if s is not None:
                    s.deliver(f, self.gen)
                # Else a delivery sent before the broker read our UNSUB:
                # the UNSUB released it, there is nothing to settle.
                continue
            if not self.ready:
                if t == codec.WELCOME:
                    self._on_welcome(f)
                    continue
                if t == codec.ERR:
                    raise from_code(f["code"], f.get("msg", ""))
                raise ProtocolError(f"broker sent t={t} before WELCOME")
            if t == codec.MSG:
                # The reply to a PEEK (a delivery with a rid).
                r = self.pending.pop(f["rid"], None)
                if r is not None:
                    r.resolve(f)
            elif t == codec.OK:
                r = self.pending.pop(f.get("rid", 0), None)
                if r is not None:
                    r.resolve(f)
            elif t == codec.ERR:
                rid = f.get("rid", 0)
                err = from_code(f["code"], f.get("msg", ""), f.get("sid", 0))
                r = self.pending.pop(rid, None) if rid else None
                if r is not None:
                    r.fail(err)
                    continue
                # Unasked (or for a request given up on): the application
                # hears of every one, whatever the code, codes this client
                # does not know included; some also change state.
                if self.on_error:
                    self.on_error(err)
                if isinstance(err, (Shutdown, IdleTimeout)):
                    # The broker closes the connection: reconnect.
                    raise ShutdownNotice(str(err))
                if isinstance(err, Deleted) and err.sid in self.by_sid:
                    s = self.by_sid.pop(err.sid)
                    s.closed = True
                    if s in self.subs:
                        self.subs.remove(s)
                    s.end(err)
            elif t == codec.WELCOME:
                raise ProtocolError("broker sent a second WELCOME")

    def settle(self, payload: dict[str, Any], gen: int, reply: Reply | None) -> None:
        """ACK/NACK/TOUCH of a delivery received on connection `gen`
        (payload from settle_payload()); without `reply`, sent without rid
        (errors come back unasked, to on_error)."""
        if gen != self.gen or not self.ready:
            err = StaleLease("the delivery came on a connection that has since "
                             "dropped; it will be delivered again")
            if reply:
                reply.fail(err)
                return
            raise err
        if self.acking:
            self.collect_acks()
        if reply is None:
            self.send(payload)
        else:
            reply.kind = FAIL
            self.request(payload, reply)

    def keepalive_after(self, keepalive: float | None) -> float | None:
        """Seconds of silence before a PING: the keepalive option, and at
        most a third of the idle timeout the broker announced."""
        if keepalive == 0:
            return None  # off, whatever the broker says
        idle = self.idle_ms / 3000.0
        if keepalive is None:
            return idle or None
        return min(keepalive, idle) if idle else keepalive


def settle_payload(msg: Any, t: int, delay: float | None = None,
                   error: str | None = None) -> dict[str, Any] | None:
    """The ACK/NACK/TOUCH frame settling `msg` (None: nothing to settle,
    an at-most-once delivery).  Marks it settled unless it is a TOUCH."""
    if not msg.lease:
        return None
    if msg._settled:
        raise StaleLease(f"message {msg.id} is already settled")
    payload: dict[str, Any] = {"t": t, "sid": msg.sid, "lease": msg.lease}
    d = _common.ms(delay, "delay")
    if d is not None:
        payload["delay"] = d
    if error:
        payload["error"] = error[:1024]
    if t != codec.TOUCH:
        msg._settled = True
    return payload


def reportable(err: BaseException | None) -> bool:
    """Whether the failure of a settle sent without waiting goes to
    on_error: not when the connection or the client went away (the
    delivery comes again, or nobody cares any more)."""
    return isinstance(err, FerryError) and not isinstance(err, (ConnectionLost, ClientClosed))


def no_responders(topic: str) -> NoResponders:
    return NoResponders(f"no responder subscribed to {topic!r}")


class SubscriptionBase:
    """What a subscription of either client keeps: its queue of
    deliveries, its end, its acks.  Subclasses add how to wait."""

    def __init__(self, client: Any, topic: str, opts: dict[str, Any],
                 handler: Callable[..., Any] | None, auto_touch: bool) -> None:
        self.client = client
        self.topic = topic
        self.handler = handler
        self.auto_touch = auto_touch
        self.queue: deque[Any] = deque()
        self.ended = False
        self.error: BaseException | None = None
        self.closing = False
        self.state = SubState(topic, opts, Reply(FAIL), self._deliver, self._end)
        self.state.owner = self

    @property
    def group(self) -> str:
        return self.state.group

    @property
    def sid(self) -> int:
        """The subscription id on the current connection (0 while not
        subscribed); an error from on_error with this `sid` concerns it."""
        return self.state.sid

    # Called by Core (under the blocking client's lock).
    def _deliver(self, f: dict[str, Any], gen: int) -> None:
        self.queue.append(self.client._message(f, self, gen))

    def _end(self, error: BaseException | None) -> None:
        self.ended = True
        self.error = error

    def _next(self, gen: int) -> Any:
        """The next queued delivery still valid on connection `gen`, or
        None; raises the error that ended the subscription once it is
        empty and over."""
        q = self.queue
        while q:
            try:
                m = q.popleft()  # atomic: no lock needed
            except IndexError:
                break
            if m.lease and m.gen != gen:
                continue  # its lease died with its connection
            return m
        if self.ended and self.error is not None and not isinstance(self.error, ClientClosed):
            raise self.error
        return None


class ClientBase:
    """The options and hooks of a client, whichever drives its I/O."""

    def __init__(self, host: str, port: int, name: str, connect_timeout: float,
                 timeout: float | None, reconnect: bool, reconnect_base: float,
                 reconnect_max: float, reconnect_give_up: float | None,
                 pid: str | None, idempotent: bool, keepalive: float | None,
                 on_error: Callable[[FerryError], None] | None,
                 on_restart: Callable[[str, str], None] | None) -> None:
        self.host = host
        self.port = port
        self.keepalive = keepalive
        self._last_send = time.monotonic()
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.reconnect = reconnect
        self.reconnect_base = reconnect_base
        self.reconnect_max = reconnect_max
        self.reconnect_give_up = reconnect_give_up
        self.idempotent = idempotent
        self.on_error = on_error or (lambda e: log.warning("ferry: %s", e))
        self.on_restart = on_restart or (lambda boot, prev: log.warning(
            "ferry: the broker restarted (boot %s, was %s)", boot, prev))
        self._core = Core(name, pid, self._broker_error, self._restarted, idempotent)
        self._closed = False
        self._fatal: FerryError | None = None
        self.reconnects = 0

    def _broker_error(self, err: FerryError) -> None:
        raise NotImplementedError

    def _restarted(self, boot: str, previous: str) -> None:
        raise NotImplementedError

    @property
    def pid(self) -> str:
        return self._core.pid

    @property
    def server(self) -> dict[str, Any]:
        """The broker's WELCOME (server, session, max_frame, max_msg, boot,
        idle)."""
        return dict(self._core.welcome)

    def _check_open(self) -> None:
        if self._fatal is not None:
            raise self._fatal
        if self._closed:
            raise ClientClosed("the client is closed")

    def _keepalive(self) -> float | None:
        return self._core.keepalive_after(self.keepalive)

    def _backoff(self, attempt: int) -> float:
        return _common.backoff(attempt, self.reconnect_base, self.reconnect_max)

    def _reconnect_expired(self, started: float) -> ConnectionLost | None:
        """The error to give up with once reconnect_give_up has passed."""
        if (self.reconnect_give_up is not None
                and time.monotonic() - started > self.reconnect_give_up):
            return ConnectionLost(f"no connection to {self.host}:{self.port} for "
                                  f"{self.reconnect_give_up} s")
        return None

    def _sub_opts(self, group: str | None, prefetch: int, ack_timeout: float | None,
                  mode: str, ephemeral: bool, max_attempts: int | None,
                  extra: Mapping[str, Any] | None) -> dict[str, Any]:
        self._check_open()
        return _common.sub_opts(group, prefetch, ack_timeout, mode, ephemeral,
                                max_attempts, extra)


_LEN = struct.Struct(">I")
_SEQ = struct.Struct(">BQ")
_U16 = struct.Struct(">BH")
_U32 = struct.Struct(">BI")
_CC = [b"\xcc" + bytes((i,)) for i in range(256)]
_UINT64_MAX = codec.UINT64_MAX
_U8 = [bytes((i,)) for i in range(256)]
# The body key and a bin 8 header, by body length.
_BODY8 = [b"\xa4body\xc4" + bytes((i,)) for i in range(256)]
