"""The blocking ferry client.

One background thread per Client owns the socket: it reads and decodes
frames, writes what callers queued, reconnects with exponential backoff
and jitter, and touches deliveries whose handler runs long.  Calls from
any thread queue frames under one lock and wait on one condition
variable for their replies.  Handlers of subscribe() run in one thread
per subscription, one message at a time.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from collections import deque
from typing import Any, Callable, Iterable, Iterator, Mapping

from . import codec
from ._common import tune_socket
from ._core import (DONE, FAIL, RESEND, Call, ClientBase, Reply, ShutdownNotice, SubState,
                    SubscriptionBase, delete_call, inflight_call, no_responders, peek_call,
                    ping_call, reply_target, reportable, settle_payload, stats_broker_call,
                    stats_call, trace_call)
from .errors import (ClientClosed, ConnectionLost, FerryError, NoSubscribers,
                     ProtocolError, Timeout)
from .message import BaseMessage

log = logging.getLogger("ferry")

_READ_SIZE = 256 * 1024
# Queued bytes that make a producer wait (until half are written): small,
# since each one is latency once ferryd slows us.
_MAX_QUEUED = 256 * 1024
# Queued bytes a publishing thread writes itself (see _queued()).
_SEND_AT = 32 * 1024


class Message(BaseMessage):
    """A delivery.  ack()/nack()/touch() settle it (at-least-once only;
    on an at-most-once subscription they do nothing)."""

    __slots__ = ()

    def ack(self, *, wait: bool = True, timeout: float | None = None) -> None:
        """Done: remove the message.  wait=True waits for the broker's
        confirmation (durable; raises StaleLease if the lease was no longer
        valid); wait=False sends it and goes on (errors go to the client's
        on_error)."""
        if not wait and self.lease and not self._settled:
            # Coalesced with the other acks queued before the next write.
            sub: Subscription = self._sub
            client = sub.client
            # The lock (not the condition's wrapper): the I/O thread swaps
            # the queued acks out under it.
            with client._lock:
                client._core.queue_ack(sub.state, self.lease, self.gen)
                self._settled = True
                if client._active:
                    client._active.pop(self, None)
                if not client._signaled:
                    client._wake()
            return
        self._settle(codec.ACK, wait, timeout)

    def nack(self, *, delay: float | None = None, error: str | None = None,
             wait: bool = True, timeout: float | None = None) -> None:
        """Failed: requeue it, after `delay` seconds if given, else after
        the broker's exponential backoff; `error` is kept in its history."""
        self._settle(codec.NACK, wait, timeout, delay, error)

    def touch(self, *, wait: bool = True, timeout: float | None = None) -> None:
        """Still working: extend the lease by the subscription's ack
        timeout."""
        self._settle(codec.TOUCH, wait, timeout)

    def _settle(self, t: int, wait: bool, timeout: float | None,
                delay: float | None = None, error: str | None = None) -> None:
        payload = settle_payload(self, t, delay, error)
        if payload is None:
            return
        client: Client = self._sub.client
        if t != codec.TOUCH and client._active:
            with client._lock:
                client._active.pop(self, None)
        client._settle(payload, self.gen, wait, timeout)


class Subscription(SubscriptionBase):
    """A live subscription: iterate it for messages (iterator form) or let
    its handler thread consume it (handler form).  close() ends it."""

    def __init__(self, client: Client, topic: str, opts: dict[str, Any],
                 handler: Callable[[Message], Any] | None,
                 auto_touch: bool = True) -> None:
        super().__init__(client, topic, opts, handler, auto_touch)
        self.thread: threading.Thread | None = None

    # Called by Core, under the client lock, in the I/O thread.
    def _deliver(self, f: dict[str, Any], gen: int) -> None:
        self.queue.append(Message(f, self, gen))

    def get(self, timeout: float | None = None) -> Message | None:
        """Next message, or None after `timeout` seconds without one.
        Raises the error that ended the subscription (e.g. Deleted)."""
        c = self.client
        if self.closing:
            return None
        m: Message | None = self._next(c._core.gen)  # no lock: popleft is atomic
        if m is not None or self.ended:
            return m
        deadline = None if timeout is None else time.monotonic() + timeout
        with c._cv:
            while True:
                if self.closing:
                    return None
                m = self._next(c._core.gen)
                if m is not None or self.ended:
                    return m
                c._check_open()
                if deadline is None:
                    c._cv.wait(1.0)
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None
                    c._cv.wait(left)

    def __iter__(self) -> Iterator[Message]:
        while True:
            m = self.get()
            if m is None:
                return
            yield m

    def _run(self) -> None:
        c = self.client
        assert self.handler is not None
        while True:
            try:
                m = self.get()
            except FerryError:
                return
            if m is None:
                return
            if m.lease and self.auto_touch:
                half = self.state.ack_timeout_ms / 2000.0
                with c._cv:
                    c._active[m] = (time.monotonic() + half, half)
                    c._wake()
            try:
                self.handler(m)
            except Exception as e:  # the handler failed: nack it
                with c._cv:
                    c._active.pop(m, None)
                if m.lease and not m._settled:
                    try:
                        m.nack(error=f"{type(e).__name__}: {e}", wait=False)
                    except FerryError as se:
                        log.warning("ferry: nack of %s failed: %s", m.id, se)
                continue
            with c._cv:
                c._active.pop(m, None)
            if m.lease and not m._settled:
                try:
                    m.ack(wait=False)
                except FerryError as se:
                    log.warning("ferry: ack of %s failed: %s", m.id, se)

    def close(self, timeout: float | None = None) -> None:
        """UNSUB: the broker puts back what was delivered and not settled."""
        c = self.client
        # Let the handler finish its message (and queue its ack) first, so
        # the ack goes out before the UNSUB that would release it.
        self.closing = True
        with c._cv:
            c._cv.notify_all()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout if timeout is not None else c.timeout)
        r = Reply(DONE)
        with c._cv:
            if not c._closed:
                c._core.remove_sub(self.state, r)
            else:
                r.resolve({})
            c._cv.notify_all()
        if not r.finished:
            try:
                c._wait(r, timeout)
            except FerryError:
                pass

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class PublishFuture(Reply):
    """The pending confirm of publish_nowait(): the request itself, so a
    publish costs one object."""

    __slots__ = ("_client", "_many")

    def __init__(self, client: Client, many: bool = False) -> None:
        # Reply.__init__() inline: one object per confirmed publish.
        self.rid = 0
        self.frame = b""
        self.kind = RESEND
        self.finished = False
        self.value = None
        self.error = None
        self.cb = None
        self._client = client
        self._many = many

    def done(self) -> bool:
        return self.finished

    def result(self, timeout: float | None = None) -> Any:
        """The message id (a list of ids for a batch).  For a duplicate
        whose original the broker no longer remembers the id is ""."""
        if not self.finished or self.error is not None:
            self._client._wait(self, timeout)  # raises the error, if any
        if self._many:
            return codec.get_ids(self.value or {})
        # The common case of message_id() without its call: confirmed,
        # no lock taken (finished is set last, under the client's lock).
        v = self.value
        if v is not None:
            ids = v.get("ids")
            if type(ids) is list and len(ids) == 1 and type(ids[0]) is str:
                return ids[0]
        return self.message_id()


class Client(ClientBase):
    """A blocking connection to ferryd.

    Options: name (HELLO name), connect_timeout, timeout (default wait for
    replies, seconds), reconnect (bool), reconnect_base / reconnect_max
    (backoff, seconds), reconnect_give_up (seconds without a connection
    before failing everything; None = never), pid (idempotent producer id;
    default a fresh UUID), idempotent (give every publish pid+seq, default
    True), keepalive (PING after this many silent seconds, default 15, and
    anyway within a third of the idle timeout the broker announces; None:
    only the latter; 0: never), on_error (called with every error the
    broker sent without rid, whatever its code: Deleted (the subscription
    `err.sid` ended; its iterator raises it too), Shutdown and IdleTimeout
    (the client reconnects), notices about a subscription, codes this
    client does not know; also acks refused after ack(wait=False);
    default: log a warning), on_restart (called with (boot, previous boot)
    when a reconnect finds that the broker restarted: its in-memory state,
    leases and counters, is gone; default: log a warning).  Both hooks run
    on the client's I/O thread, without its lock: they may call what does
    not wait for a reply (publish_nowait, ack(wait=False)); what waits
    would wait for the thread that reads the reply.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = codec.DEFAULT_PORT,
                 *, name: str = "", connect_timeout: float = 5.0,
                 timeout: float | None = 30.0, reconnect: bool = True,
                 reconnect_base: float = 0.05, reconnect_max: float = 5.0,
                 reconnect_give_up: float | None = 60.0, pid: str | None = None,
                 idempotent: bool = True, keepalive: float | None = 15.0,
                 on_error: Callable[[FerryError], None] | None = None,
                 on_restart: Callable[[str, str], None] | None = None) -> None:
        super().__init__(host, port, name, connect_timeout, timeout, reconnect,
                         reconnect_base, reconnect_max, reconnect_give_up, pid,
                         idempotent, keepalive, on_error, on_restart)
        # Hook calls waiting for the I/O thread to make them outside the
        # lock (the core reports under it; a hook may call the client).
        self._notices: deque[tuple[Callable[..., None], tuple[Any, ...]]] = deque()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._sock: socket.socket | None = None
        self._signaled = False
        # Bytes the I/O thread took from the core's queue and is writing.
        self._sending = bytearray()
        self._wr, self._ww = socket.socketpair()
        self._wr.setblocking(False)
        self._ww.setblocking(False)
        self._active: dict[Message, tuple[float, float]] = {}
        self._inbox: SubState | None = None
        self._inbox_lock = threading.Lock()
        try:
            self._connect()
        except BaseException:
            self._wr.close()
            self._ww.close()
            raise
        self._thread = threading.Thread(target=self._io_loop, name="ferry-io", daemon=True)
        self._thread.start()

    # --- public API ----------------------------------------------------

    def publish(self, topic: str, data: Any, *, id: str | None = None,
                headers: Mapping[str, str] | None = None, delay: float | None = None,
                ttl: float | None = None, confirm: bool = True,
                reply_to: str | None = None, corr: str | None = None,
                group: str | None = None, mandatory: bool = False,
                timeout: float | None = None) -> str | None:
        """Publish one message; returns its id once the broker has stored
        it (confirm=True), or at once (confirm=False: fire-and-forget, the
        id is None unless given; lost if the connection drops before it is
        written).  delay and ttl are in seconds."""
        if not confirm:
            with self._lock:  # the condition's lock, without its wrapper
                if self._fatal is not None or self._closed:
                    self._check_open()
                self._core.publish(topic, data, None, id, headers, delay, ttl, reply_to,
                                   corr, group, mandatory)
                self._queued()
            return id
        mid: str = self.publish_nowait(topic, data, id=id, headers=headers, delay=delay,
                                       ttl=ttl, reply_to=reply_to, corr=corr, group=group,
                                       mandatory=mandatory).result(timeout)
        return mid

    def publish_nowait(self, topic: str, data: Any, *, id: str | None = None,
                       headers: Mapping[str, str] | None = None,
                       delay: float | None = None, ttl: float | None = None,
                       reply_to: str | None = None, corr: str | None = None,
                       group: str | None = None, mandatory: bool = False) -> PublishFuture:
        """Confirmed publish without waiting: pipeline many, then read the
        futures (or flush())."""
        r = PublishFuture(self)
        with self._lock:
            if self._fatal is not None or self._closed:
                self._check_open()
            if (type(data) is bytes and id is None and headers is None and delay is None
                    and ttl is None and reply_to is None and corr is None
                    and group is None and not mandatory):
                self._core.publish_bytes(topic, data, r)  # publish()'s own shortcut
            else:
                self._core.publish(topic, data, r, id, headers, delay, ttl, reply_to,
                                   corr, group, mandatory)
            self._queued()
        return r

    def publish_batch(self, topic: str, items: Iterable[Any], *, confirm: bool = True,
                      group: str | None = None, mandatory: bool = False,
                      timeout: float | None = None) -> list[str] | None:
        """Publish several messages in one frame, all or nothing.  Each item
        is data, or (data, {"id", "headers", "delay", "ttl", ...}).  Returns
        their ids in order (confirm=True) or None."""
        r = PublishFuture(self, many=True) if confirm else None
        with self._cv:
            self._check_open()
            self._core.publish_batch(topic, items, r, group, mandatory)
            self._kick()
        if r is None:
            return None
        ids: list[str] = r.result(timeout)
        return ids

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything queued is written and every confirmed
        publish is answered."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            self._flush_locked()
            while (self._core.out or self._sending or self._core.acking
                   or self._core.unconfirmed()):
                self._check_open()
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise Timeout("flush did not complete")
                self._cv.wait(left if left is not None else 1.0)

    def subscribe(self, topic: str, handler: Callable[[Message], Any], *,
                  group: str | None = None, prefetch: int = 16,
                  ack_timeout: float | None = None, mode: str = "at-least-once",
                  ephemeral: bool = False, max_attempts: int | None = None,
                  group_options: Mapping[str, Any] | None = None,
                  auto_touch: bool = True) -> Subscription:
        """Run `handler(msg)` for every message, in a thread of its own.
        Returning acks the message; raising nacks it with the exception's
        text (the broker then backs off).  A handler running longer than
        half its lease gets the lease extended (TOUCH) automatically."""
        s = self._subscribe(topic, handler, group, prefetch, ack_timeout, mode,
                            ephemeral, max_attempts, group_options, auto_touch)
        s.thread = threading.Thread(target=s._run, name=f"ferry-sub-{topic}", daemon=True)
        s.thread.start()
        return s

    def messages(self, topic: str, *, group: str | None = None, prefetch: int = 16,
                 ack_timeout: float | None = None, mode: str = "at-least-once",
                 ephemeral: bool = False, max_attempts: int | None = None,
                 group_options: Mapping[str, Any] | None = None,
                 idle_timeout: float | None = None) -> Iterator[Message]:
        """Iterate over deliveries: `for msg in client.messages(topic):`.
        Settle each with msg.ack()/nack()/touch().  Stops after
        `idle_timeout` seconds without a message, if given; leaving the
        loop ends the subscription."""
        s = self._subscribe(topic, None, group, prefetch, ack_timeout, mode,
                            ephemeral, max_attempts, group_options, False)
        return self._iterate(s, idle_timeout)

    def _iterate(self, s: Subscription, idle_timeout: float | None) -> Iterator[Message]:
        try:
            while True:
                m = s.get(idle_timeout)
                if m is None:
                    return
                yield m
        finally:
            s.close()

    def subscription(self, topic: str, **kw: Any) -> Subscription:
        """A Subscription without a handler: call .get(timeout) or iterate."""
        return self._subscribe(topic, None, kw.pop("group", None), kw.pop("prefetch", 16),
                               kw.pop("ack_timeout", None), kw.pop("mode", "at-least-once"),
                               kw.pop("ephemeral", False), kw.pop("max_attempts", None),
                               kw.pop("group_options", None), False)

    def _subscribe(self, topic: str, handler: Callable[[Message], Any] | None,
                   group: str | None, prefetch: int, ack_timeout: float | None,
                   mode: str, ephemeral: bool, max_attempts: int | None,
                   extra: Mapping[str, Any] | None, auto_touch: bool) -> Subscription:
        opts = self._sub_opts(group, prefetch, ack_timeout, mode, ephemeral,
                              max_attempts, extra)
        s = Subscription(self, topic, opts, handler, auto_touch)
        self._add_sub(s.state)
        return s

    def _add_sub(self, state: SubState) -> None:
        with self._cv:
            self._check_open()
            self._core.add_sub(state)
            self._flush_locked()
        self._wait(state.ready, self.timeout)

    def request(self, topic: str, data: Any, *, timeout: float = 5.0,
                headers: Mapping[str, str] | None = None) -> Message:
        """Send a request and wait for its reply.  Raises NoResponders at
        once if nobody is subscribed to `topic`, Timeout if no reply comes
        within `timeout` seconds."""
        inbox = self._ensure_inbox()
        deadline = time.monotonic() + timeout
        with self._cv:
            corr, waiter = self._core.new_request()
        try:
            try:
                self.publish(topic, data, headers=headers, reply_to=inbox, corr=corr,
                             mandatory=True, ttl=timeout, timeout=timeout)
            except NoSubscribers as e:
                raise no_responders(topic) from e
            left = deadline - time.monotonic()
            try:
                f = self._wait(waiter, max(left, 0.0))
            except Timeout:
                raise Timeout(f"no reply from {topic!r} within {timeout} s") from None
            return Message(f, None, 0)
        finally:
            with self._cv:
                self._core.requests.pop(corr, None)

    def reply(self, msg: BaseMessage, data: Any, *,
              headers: Mapping[str, str] | None = None) -> bool:
        """Publish the reply to a request.  Returns False if the requester
        has gone (nobody listens on its inbox any more)."""
        try:
            self.publish(reply_target(msg), data, headers=headers, corr=msg.corr,
                         mandatory=True)
        except NoSubscribers:
            return False
        return True

    def _ensure_inbox(self) -> str:
        with self._inbox_lock:  # one inbox, whichever thread asks first
            return self._ensure_inbox_locked()

    def _ensure_inbox_locked(self) -> str:
        s = self._inbox
        if s is None or s.closed:
            s = self._core.inbox()
            self._add_sub(s)
            self._inbox = s
        return s.topic

    def ping(self, timeout: float | None = None) -> float:
        """Round trip to the broker, in seconds."""
        t0 = time.monotonic()
        self._call(ping_call(), timeout)
        return time.monotonic() - t0

    def delete(self, topic: str, group: str | None = None) -> None:
        """Delete a topic (every group), or one group of it."""
        self._call(delete_call(topic, group))

    def stats(self, topic: str | None = None) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self._call(stats_call(topic))
        return rows

    def stats_broker(self) -> dict[str, Any]:
        """The broker-wide figures (PROTOCOL.md, STATS without a topic:
        conns, topics, groups, ready, ..., up); {} from a broker that does
        not report them."""
        row: dict[str, Any] = self._call(stats_broker_call())
        return row

    def inflight(self, topic: str, group: str | None = None) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self._call(inflight_call(topic, group))
        return rows

    def peek(self, topic: str, group: str | None = None) -> Message | None:
        """The group's next message, without taking it; None if empty."""
        f = self._call(peek_call(topic, group))
        return None if f is None else Message(f, None, 0)

    def trace(self, message_id: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self._call(trace_call(message_id))
        return rows

    def close(self) -> None:
        """Close the connection; the broker requeues unsettled deliveries.
        Waits for queued frames to be written (up to connect_timeout)."""
        with self._cv:
            if self._closed:
                return
            deadline = time.monotonic() + self.connect_timeout
            while ((self._core.out or self._sending or self._core.acking)
                   and self._sock is not None and self._fatal is None):
                self._flush_locked()
                if time.monotonic() > deadline:
                    break
                self._cv.wait(0.01)
            self._closed = True
            self._core.fail_all(ClientClosed("the client was closed"))
            self._cv.notify_all()
            self._wake()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(5)
        for s in (self._wr, self._ww):
            s.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- internals: calls from user threads ----------------------------

    def _call(self, call: Call, timeout: float | None = None) -> Any:
        with self._cv:
            self._check_open()
            self._core.request(call.payload, call)
            self._flush_locked()
        self._wait(call, timeout)
        return call.result

    def _settle(self, payload: dict[str, Any], gen: int, wait: bool,
                timeout: float | None) -> None:
        r = Reply(FAIL, None if wait else self._async_settle_done)
        with self._cv:
            self._check_open()
            self._core.settle(payload, gen, r)
            if wait:
                self._flush_locked()
            else:
                self._kick()
        if wait:
            self._wait(r, timeout)
        elif r.finished and r.error is not None:
            raise r.error

    def _async_settle_done(self, r: Reply) -> None:
        if reportable(r.error):
            self.on_error(r.error)  # type: ignore[arg-type]

    def _wait(self, r: Reply, timeout: float | None) -> dict[str, Any]:
        if timeout is None:
            timeout = self.timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            if self._core.out:
                self._flush_locked()
            while not r.finished:
                self._check_open()
                if deadline is None:
                    self._cv.wait(1.0)
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Timeout(f"no reply within {timeout} s")
                self._cv.wait(left)
        if r.error is not None:
            raise r.error
        return r.value or {}

    def _wake(self) -> None:
        if not self._signaled:
            self._signaled = True
            try:
                self._ww.send(b"\0")
            except (BlockingIOError, OSError):
                pass

    def _kick(self) -> None:
        """After queueing frames (lock held): the I/O thread writes them,
        batched.  A producer far ahead of the socket waits here."""
        out = self._core.out
        if out:
            if not self._signaled:
                self._wake()
            if len(out) >= _MAX_QUEUED:
                deadline = time.monotonic() + (self.timeout or 30.0)
                while (len(self._core.out) >= _MAX_QUEUED // 2
                       and self._sock is not None):
                    self._check_open()
                    if time.monotonic() > deadline:
                        raise Timeout("the broker does not read what we send")
                    self._wake()
                    self._cv.wait(0.1)

    def _queued(self) -> None:
        """After queueing a publish (lock held).  Enough bytes for one good
        write go out from the caller's thread at once, as long as the I/O
        thread holds none of its own: waiting for the I/O thread would
        wait for the GIL this thread holds, and the broker would sit idle
        meanwhile.  Less than that wakes the I/O thread (once)."""
        out = self._core.out
        if len(out) >= _SEND_AT:
            if not self._sending and self._sock is not None:
                try:
                    n = self._sock.send(out)
                except OSError:
                    n = 0  # full, or broken: the I/O thread sees to it
                if n:
                    del out[:n]
                    self._last_send = time.monotonic()
            if len(out) >= _MAX_QUEUED:
                self._kick()  # the broker does not keep up: wait
        if out and not self._signaled:
            self._wake()

    def _flush_locked(self) -> None:
        """Write what is queued now (lock held), if the I/O thread is not
        in the middle of writing: a caller about to wait for a reply
        should not wait for the I/O thread to wake up first."""
        if self._core.acking:
            self._core.collect_acks()
        out = self._core.out
        sock = self._sock
        if not out or sock is None:
            return
        if not self._sending:
            self._last_send = time.monotonic()
            try:
                n = sock.send(out)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError:
                n = 0  # the I/O thread sees the error and reconnects
            if n:
                del out[:n]
        if out:
            self._wake()

    def _broker_error(self, err: FerryError) -> None:
        self._notify(self.on_error, err)

    def _restarted(self, boot: str, previous: str) -> None:
        self._notify(self.on_restart, boot, previous)

    def _notify(self, hook: Callable[..., None], *args: Any) -> None:
        self._notices.append((hook, args))
        if threading.current_thread() is not self._thread:
            self._wake()

    def _deliver_notices(self) -> None:
        """On the I/O thread, without the lock: call the hooks queued."""
        while self._notices:
            hook, args = self._notices.popleft()
            try:
                hook(*args)
            except Exception:  # a broken hook must not kill the I/O thread
                log.exception("ferry: hook %r failed", hook)

    # --- internals: the I/O thread -------------------------------------

    def _connect(self) -> None:
        """Connect and handshake (HELLO/WELCOME); then the core re-sends
        subscriptions and unanswered requests."""
        sock = socket.create_connection((self.host, self.port), self.connect_timeout)
        try:
            tune_socket(sock)
            deadline = time.monotonic() + self.connect_timeout
            with self._cv:
                self._core.connection_made()
                hello = bytes(self._core.out)
                self._core.out.clear()
            sock.sendall(hello)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Timeout(f"no WELCOME from {self.host}:{self.port} "
                                  f"within {self.connect_timeout} s")
                sock.settimeout(left)
                try:
                    data = sock.recv(_READ_SIZE)
                except socket.timeout:
                    continue
                with self._cv:
                    if not data:
                        self._core.decoder.check_eof()
                        raise ConnectionLost("the broker closed the connection "
                                             "during the handshake")
                    self._core.feed(data)
                    if self._core.ready:
                        sock.setblocking(False)
                        self._sock = sock
                        self._flush_locked()
                        self._cv.notify_all()
                        return
        except BaseException:
            sock.close()
            raise

    def _io_loop(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._wr, selectors.EVENT_READ)
        registered: socket.socket | None = None
        try:
            while not self._closed:
                if self._notices:
                    self._deliver_notices()
                sock = self._sock
                if sock is None:
                    if registered is not None:
                        sel.unregister(registered)
                        registered = None
                    if not self._reconnect():
                        return
                    continue
                timeout = self._touch_due()
                want = selectors.EVENT_READ | (
                    selectors.EVENT_WRITE if self._core.out or self._sending else 0)
                if registered is not sock:
                    if registered is not None:
                        sel.unregister(registered)
                    sel.register(sock, want)
                    registered = sock
                else:
                    sel.modify(sock, want)
                events = sel.select(timeout)
                try:
                    for key, ev in events:
                        if key.fileobj is self._wr:
                            try:
                                self._wr.recv(4096)
                            except BlockingIOError:
                                pass
                            self._signaled = False
                            continue
                        if ev & selectors.EVENT_READ:
                            data = sock.recv(_READ_SIZE)
                            if not data:
                                with self._cv:
                                    self._core.decoder.check_eof()
                                raise ConnectionLost("the broker closed the connection")
                            frames = self._core.decode(data)
                            with self._cv:
                                try:
                                    self._core.dispatch(frames)
                                finally:
                                    self._cv.notify_all()
                    # Take what callers queued, then write it without the
                    # lock, so that they can go on queueing meanwhile.
                    with self._cv:
                        if self._core.acking:
                            self._core.collect_acks()
                        out = self._core.out
                        if out and len(self._sending) < _READ_SIZE:
                            if self._sending:
                                self._sending += out
                                out.clear()
                            else:
                                self._core.out, self._sending = self._sending, out
                    if self._sending:
                        self._last_send = time.monotonic()
                        n = sock.send(self._sending)
                        del self._sending[:n]
                        if not self._sending:
                            with self._cv:
                                self._cv.notify_all()
                except (BlockingIOError, InterruptedError):
                    pass
                except ProtocolError as e:
                    self._give_up(e)
                    return
                except (OSError, ConnectionLost, ShutdownNotice) as e:
                    log.info("ferry: connection lost: %s", e)
                    self._lost()
        finally:
            if registered is not None:
                try:
                    sel.unregister(registered)
                except (KeyError, ValueError):
                    pass
            sel.close()
            with self._cv:
                if self._sock is not None:
                    self._sock.close()
                    self._sock = None
                self._cv.notify_all()

    def _lost(self) -> None:
        with self._cv:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
            self._core.connection_lost()
            self._sending = bytearray()
            self._active.clear()
            self._cv.notify_all()

    def _give_up(self, err: FerryError) -> None:
        with self._cv:
            self._fatal = err
            if self._sock is not None:
                self._sock.close()
                self._sock = None
            self._core.fail_all(err)
            self._cv.notify_all()

    def _reconnect(self) -> bool:
        if not self.reconnect:
            self._give_up(ConnectionLost("the connection dropped (reconnect is off)"))
            return False
        started = time.monotonic()
        attempt = 0
        while not self._closed:
            delay = self._backoff(attempt)
            attempt += 1
            # Sleep on the wake socket so close() interrupts the wait.
            sel = selectors.DefaultSelector()
            sel.register(self._wr, selectors.EVENT_READ)
            sel.select(delay)
            sel.close()
            if self._closed:
                return False
            try:
                self._connect()
                self.reconnects += 1
                log.info("ferry: reconnected to %s:%d", self.host, self.port)
                return True
            except ProtocolError as e:
                self._give_up(e)
                return False
            except (OSError, FerryError) as e:
                log.info("ferry: reconnect attempt %d failed: %s", attempt, e)
            expired = self._reconnect_expired(started)
            if expired is not None:
                self._give_up(expired)
                return False
        return False

    def _touch_done(self, m: Message) -> Callable[[Reply], None]:
        def done(r: Reply) -> None:
            if r.error is not None:  # called under the lock
                self._active.pop(m, None)
                self._async_settle_done(r)
        return done

    def _touch_due(self) -> float:
        """TOUCH deliveries whose handler has run past half its lease, and
        PING a connection that sent nothing for `keepalive` seconds (a
        broker with idle_timeout closes silent clients, subscribers
        waiting for messages included); returns how long the I/O thread
        may sleep."""
        now = time.monotonic()
        keepalive = self._keepalive()
        if keepalive and now - self._last_send >= keepalive:
            with self._cv:
                self._core.send({"t": codec.PING})
            self._last_send = now
        wait = 1.0
        if keepalive:
            wait = min(wait, max(0.0, self._last_send + keepalive - now))
        if not self._active:
            return wait
        nxt = now + wait
        with self._cv:
            for m, (due, half) in list(self._active.items()):
                if m._settled:
                    del self._active[m]
                    continue
                if due <= now:
                    try:
                        self._core.settle({"t": codec.TOUCH, "sid": m.sid, "lease": m.lease},
                                          m.gen, Reply(FAIL, self._touch_done(m)))
                    except FerryError:
                        self._active.pop(m, None)
                        continue
                    due = now + half
                    self._active[m] = (due, half)
                nxt = min(nxt, due)
        return max(0.0, nxt - now)


def connect(host: str = "127.0.0.1", port: int = codec.DEFAULT_PORT, **options: Any) -> Client:
    return Client(host, port, **options)
