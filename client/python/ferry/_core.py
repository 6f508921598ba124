"""Connection state shared by the blocking and the asyncio client.

Core is sans-I/O: its owner feeds it the bytes it reads (feed()), sends
what it accumulates in `out`, and tells it when a connection starts
(connection_made()) and ends (connection_lost()).  Core matches replies
to requests by rid, keeps the subscriptions so it can subscribe them
again on a new connection, and carries confirmed publishes over to the
new connection (with their pid/seq, so the broker recognises a retry of
a publish it had stored as a duplicate).  It is not thread-safe: the
blocking client calls it under one lock.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any, Callable, Mapping, Sequence

from . import codec
from .errors import (ConnectionLost, Deleted, FerryError, FrameTooBig,
                     IdleTimeout, MessageTooBig, ProtocolError,
                     Shutdown, from_code)

# What happens to a request whose connection drops before its reply.
RESEND = 0   # send it again on the next connection (PUB, PING, STATS, ...)
FAIL = 1     # fail it with ConnectionLost (ACK, NACK, TOUCH: old leases)
DONE = 2     # consider it done (UNSUB: the subscription ended anyway)


# Keys of a plain delivery, checked inline by Core.decode().
_PLAIN_MSG = frozenset(("t", "sid", "id", "topic", "lease", "att", "ts", "body"))


class Reply:
    """One outstanding request. `cb` (if set) is called once it is done."""

    __slots__ = ("rid", "frame", "kind", "done", "value", "error", "cb")

    def __init__(self, kind: int = RESEND, cb: Callable[[Reply], None] | None = None) -> None:
        self.rid = 0
        self.frame = b""
        self.kind = kind
        self.done = False
        self.value: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self.cb = cb

    def resolve(self, value: dict[str, Any] | None) -> None:
        if not self.done:
            self.done = True
            self.value = value
            if self.cb:
                self.cb(self)

    def fail(self, error: BaseException) -> None:
        if not self.done:
            self.done = True
            self.error = error
            if self.cb:
                self.cb(self)


class SubState:
    """A subscription as the client keeps it across connections."""

    __slots__ = ("topic", "opts", "sid", "group", "ready", "closed",
                 "deliver", "end", "ack_timeout_ms", "mode", "owner")

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


class ShutdownNotice(Exception):
    """The broker announced that it closes the connection (E_SHUTDOWN,
    E_IDLE): reconnect."""


class Core:
    def __init__(self, name: str = "", pid: str | None = None,
                 on_error: Callable[[FerryError], None] | None = None,
                 on_restart: Callable[[str, str], None] | None = None) -> None:
        self.name = name or f"py-{os.getpid()}"
        # Idempotent producer (PROTOCOL.md section 8, Duplicates): one pid
        # per client, kept across reconnects.  seq starts at the current
        # time in microseconds so that a caller reusing its own pid in a
        # new process still moves above its old high-water mark.
        self.pid = pid or uuid.uuid4().hex
        self.seq = time.time_ns() // 1000
        self.pid_packed = codec.pack_pid(self.pid)
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
        self.topics: dict[str, bytes] = {}
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
        rid = self._rid()
        payload["rid"] = rid
        frame = codec.encode(payload)
        self._check_size(frame)
        reply.rid = rid
        reply.frame = frame
        self.pending[rid] = reply
        if self.ready:
            self.out += frame
        return reply

    def send(self, payload: dict[str, Any]) -> None:
        """Send without rid: nothing comes back on success.  Dropped if
        there is no connection."""
        if self.ready:
            frame = codec.encode(payload)
            self._check_size(frame)
            self.out += frame

    def topic(self, topic: str) -> bytes:
        p = self.topics.get(topic)
        if p is None:
            if len(self.topics) > 1000:
                self.topics.clear()
            p = self.topics[topic] = codec.pack_topic(topic)
        return p

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def check_body(self, body: bytes) -> None:
        if self.max_msg and len(body) > self.max_msg:
            raise MessageTooBig(f"body of {len(body)} bytes is above the "
                                f"broker's max_msg {self.max_msg}")

    def publish(self, topic: str, body: bytes, opts: dict[str, Any] | None,
                frame_opts: dict[str, Any] | None, reply: Reply | None) -> None:
        """Queue one PUB (confirmed when `reply` is given)."""
        self.check_body(body)
        if reply is None:
            if self.ready:
                frame = codec.encode_pub(self.topic(topic), body, 0, opts, frame_opts)
                self._check_size(frame)
                self.out += frame
            return
        rid = self._rid()
        frame = codec.encode_pub(self.topic(topic), body, rid, opts, frame_opts)
        self._check_size(frame)
        reply.rid = rid
        reply.frame = frame
        self.pending[rid] = reply
        if self.ready:
            self.out += frame

    def publish_simple(self, topic: str, body: bytes, idempotent: bool,
                       reply: Reply | None) -> None:
        """publish() of a body without options: the hot path."""
        if self.max_msg and len(body) > self.max_msg:
            self.check_body(body)
        tp = self.topics.get(topic) or self.topic(topic)
        if idempotent:
            self.seq += 1
            pp = self.pid_packed
        else:
            pp = b""
        if reply is None:
            if self.ready:
                frame = codec.encode_pub_simple(tp, body, 0, pp, self.seq)
                if len(frame) - 4 > self.max_frame:
                    self._check_size(frame)
                self.out += frame
            return
        rid = self._rid()
        frame = codec.encode_pub_simple(tp, body, rid, pp, self.seq)
        if len(frame) - 4 > self.max_frame:
            self._check_size(frame)
        reply.rid = rid
        reply.frame = frame
        self.pending[rid] = reply
        if self.ready:
            self.out += frame

    def publish_batch(self, topic: str,
                      msgs: Sequence[tuple[bytes, Mapping[str, Any] | None]],
                      frame_opts: dict[str, Any] | None, reply: Reply | None) -> None:
        for body, _ in msgs:
            self.check_body(body)
        rid = self._rid() if reply is not None else 0
        frame = codec.encode_pub_batch(topic, msgs, rid, frame_opts)
        self._check_size(frame)
        if reply is not None:
            reply.rid = rid
            reply.frame = frame
            self.pending[rid] = reply
        if self.ready:
            self.out += frame

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
        frames = self.decoder.frames()
        check = codec.check_broker_frame
        plain = _PLAIN_MSG
        for f in frames:
            # The common case inline: a delivery with only the usual keys,
            # each of the right type.
            if not (f["t"] == codec.MSG and f.keys() <= plain
                    and type(f.get("body")) is bytes and type(f.get("id")) is str
                    and type(f.get("sid")) is int and f["sid"] >= 0
                    and type(f.get("lease", 0)) is int and f.get("lease", 0) >= 0
                    and type(f.get("att", 0)) is int and f.get("att", 0) >= 0
                    and type(f.get("ts", 0)) is int and f.get("ts", 0) >= 0
                    and type(f.get("topic", "")) is str) and not (
                        # A reply: its other keys are checked where used.
                        f["t"] == codec.OK and type(f.get("rid", 0)) is int
                        and f.get("rid", 0) >= 0):
                check(f)
        return frames

    def dispatch(self, frames: list[dict[str, Any]]) -> None:
        for f in frames:
            t = f["t"]
            if not self.ready:
                if t == codec.WELCOME:
                    self._on_welcome(f)
                    continue
                if t == codec.ERR:
                    raise from_code(f["code"], f.get("msg", ""))
                raise ProtocolError(f"broker sent t={t} before WELCOME")
            if t == codec.MSG:
                rid = f.get("rid", 0)
                if rid:
                    r = self.pending.pop(rid, None)
                    if r is not None:
                        r.resolve(f)
                    continue
                s = self.by_sid.get(f["sid"])
                if s is not None:
                    s.deliver(f, self.gen)
                # Else a delivery sent before the broker read our UNSUB:
                # the UNSUB released it, there is nothing to settle.
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

    def settle(self, kind: int, payload: dict[str, Any], gen: int,
               reply: Reply | None) -> None:
        """ACK/NACK/TOUCH of a delivery received on connection `gen`."""
        from .errors import StaleLease
        if gen != self.gen or not self.ready:
            err = StaleLease("the delivery came on a connection that has since "
                             "dropped; it will be delivered again")
            if reply:
                reply.fail(err)
                return
            raise err
        if reply is None:
            self.send(payload)
        else:
            reply.kind = FAIL
            self.request(payload, reply)
