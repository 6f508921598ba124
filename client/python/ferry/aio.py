"""The asyncio ferry client.

    client = await ferry.aio.connect("127.0.0.1", 4470)
    await client.publish("orders", b"...")
    async for msg in client.messages("orders", group="billing"):
        ...
        await msg.ack()

Same protocol core as the blocking client (ferry._core), driven by an
asyncio.Protocol: frames queued during one loop iteration go out in one
write.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Mapping

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

# Queued bytes above which a fire-and-forget publish writes them at once
# and waits if the socket is backed up.
_FLUSH_AT = 256 * 1024
# Queued bytes a publish writes at once rather than at the end of the
# loop iteration: the broker works on them while more are encoded.
_SEND_AT = 32 * 1024


class Message(BaseMessage):
    """A delivery on an asyncio client; settle it with await msg.ack(),
    msg.nack(delay=..., error=...), msg.touch()."""

    __slots__ = ()

    async def ack(self, *, wait: bool = True) -> None:
        """Done.  wait=False queues it: every ack queued during one loop
        iteration goes out as one ACK (errors go to on_error)."""
        if not wait and self.lease and not self._settled:
            c = self._sub.client
            if c._fatal is not None or c._closed:
                c._check_open()  # raises
            c._core.queue_ack(self._sub.state, self.lease, self.gen)
            self._settled = True
            if not c._flush_scheduled:
                c._schedule_flush()
            return
        await self._settle(codec.ACK, wait)

    async def nack(self, *, delay: float | None = None, error: str | None = None,
                   wait: bool = True) -> None:
        await self._settle(codec.NACK, wait, delay, error)

    async def touch(self, *, wait: bool = True) -> None:
        await self._settle(codec.TOUCH, wait)

    async def _settle(self, t: int, wait: bool, delay: float | None = None,
                      error: str | None = None) -> None:
        payload = settle_payload(self, t, delay, error)
        if payload is not None:
            await self._sub.client._settle(payload, self.gen, wait)


class _IdReply(Reply):
    """A confirmed publish whose confirm sets its asyncio future directly
    (one object, no closure, per publish)."""

    __slots__ = ("fut",)

    def __init__(self, fut: asyncio.Future[str]) -> None:
        # Reply.__init__() inline: one of these per confirmed publish.
        self.rid = 0
        self.frame = b""
        self.kind = RESEND
        self.finished = False
        self.value = None
        self.error = None
        self.cb = None
        self.fut = fut

    def resolve(self, value: dict[str, Any] | None) -> None:
        # Reply.resolve() inline (flush() may have set a cb).
        if not self.finished:
            self.value = value
            self.finished = True
            if self.cb:
                self.cb(self)
            fut = self.fut
            if not fut.done():
                try:
                    fut.set_result(self.message_id())
                except ProtocolError as e:
                    fut.set_exception(e)

    def fail(self, error: BaseException) -> None:
        if not self.finished:
            Reply.fail(self, error)
            if not self.fut.done():
                self.fut.set_exception(error)


class Subscription(SubscriptionBase):
    def __init__(self, client: AsyncClient, topic: str, opts: dict[str, Any],
                 handler: Callable[[Message], Any] | None, auto_touch: bool) -> None:
        super().__init__(client, topic, opts, handler, auto_touch)
        self._waiter: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None

    def _wakeup(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _deliver(self, f: dict[str, Any], gen: int) -> None:
        self.queue.append(Message(f, self, gen))
        if self._waiter is not None:
            self._wakeup()

    def _end(self, error: BaseException | None) -> None:
        super()._end(error)
        self._wakeup()

    async def get(self, timeout: float | None = None) -> Message | None:
        """Next message; None after `timeout` seconds without one or when
        the subscription ended normally."""
        c = self.client
        deadline: float | None = None
        while True:
            if self.closing:
                return None
            m: Message | None = self._next(c._core.gen)
            if m is not None or self.ended:
                return m
            c._check_open()
            if timeout is not None and deadline is None:  # not per delivery
                deadline = time.monotonic() + timeout
            self._waiter = w = c._loop.create_future()
            try:
                if deadline is None:
                    await w
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None
                    try:
                        await asyncio.wait_for(w, left)
                    except asyncio.TimeoutError:
                        return None
            finally:
                self._waiter = None

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[Message]:
        while True:
            m = await self.get()
            if m is None:
                return
            yield m

    async def _run(self) -> None:
        assert self.handler is not None
        while True:
            try:
                m = await self.get()
            except FerryError:
                return
            if m is None:
                return
            toucher = None
            if m.lease and self.auto_touch:
                toucher = asyncio.ensure_future(self._touch_loop(m))
            try:
                r = self.handler(m)
                if inspect.isawaitable(r):
                    await r
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if m.lease and not m._settled:
                    try:
                        await m.nack(error=f"{type(e).__name__}: {e}", wait=False)
                    except FerryError as se:
                        log.warning("ferry: nack of %s failed: %s", m.id, se)
                continue
            finally:
                if toucher is not None:
                    toucher.cancel()
            if m.lease and not m._settled:
                try:
                    await m.ack(wait=False)
                except FerryError as se:
                    log.warning("ferry: ack of %s failed: %s", m.id, se)

    async def _touch_loop(self, m: Message) -> None:
        half = self.state.ack_timeout_ms / 2000.0
        while not m._settled:
            await asyncio.sleep(half)
            if m._settled:
                return
            try:
                await m.touch(wait=False)
            except FerryError:
                return

    async def close(self) -> None:
        """UNSUB, once the handler (if any) has finished its message."""
        c = self.client
        self.closing = True
        self._wakeup()
        if self.task is not None and self.task is not asyncio.current_task():
            try:
                await asyncio.wait_for(asyncio.shield(self.task), c.timeout)
            except (asyncio.TimeoutError, asyncio.CancelledError, Exception):
                pass
        r = Reply(DONE)
        fut = c._future(r)
        if not c._closed:
            c._core.remove_sub(self.state, r)
            c._schedule_flush()
        else:
            r.resolve({})
        try:
            await asyncio.wait_for(fut, c.timeout)
        except (asyncio.TimeoutError, FerryError):
            pass
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):
                pass

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


class _Proto(asyncio.Protocol):
    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        # Set while the transport's buffer is above its high-water mark.
        self.paused: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            tune_socket(sock)

    def data_received(self, data: bytes) -> None:
        self.client._on_data(self, data)

    def eof_received(self) -> bool:
        return False

    def pause_writing(self) -> None:
        self.paused = self.client._loop.create_future()

    def resume_writing(self) -> None:
        p, self.paused = self.paused, None
        if p is not None and not p.done():
            p.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.resume_writing()
        self.client._on_lost(self, exc)


class AsyncClient(ClientBase):
    """Use ferry.aio.connect(); options as for ferry.Client (on_error and
    on_restart are called on the event loop)."""

    def __init__(self, host: str = "127.0.0.1", port: int = codec.DEFAULT_PORT, *,
                 name: str = "", connect_timeout: float = 5.0,
                 timeout: float | None = 30.0, reconnect: bool = True,
                 reconnect_base: float = 0.05, reconnect_max: float = 5.0,
                 reconnect_give_up: float | None = 60.0, pid: str | None = None,
                 idempotent: bool = True, keepalive: float | None = 15.0,
                 on_error: Callable[[FerryError], None] | None = None,
                 on_restart: Callable[[str, str], None] | None = None) -> None:
        super().__init__(host, port, name, connect_timeout, timeout, reconnect,
                         reconnect_base, reconnect_max, reconnect_give_up, pid,
                         idempotent, keepalive, on_error, on_restart)
        self._keepalive_task: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()
        self._proto: _Proto | None = None
        self._flush_scheduled = False
        self._handshake: asyncio.Future[None] | None = None
        self._reconnect_task: asyncio.Task[None] | None = None
        self._inbox: SubState | None = None
        self._inbox_lock = asyncio.Lock()

    # --- connection ----------------------------------------------------

    async def _connect(self) -> None:
        self._handshake = self._loop.create_future()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, proto = await self._loop.create_connection(
                    lambda: _Proto(self), self.host, self.port)
                self._proto = proto
                self._core.connection_made()
                self._flush()
                await self._handshake
        except TimeoutError:
            self._drop_transport()
            raise Timeout(f"no WELCOME from {self.host}:{self.port} within "
                          f"{self.connect_timeout} s") from None
        except BaseException:
            self._drop_transport()
            raise
        self._flush()

    def _drop_transport(self) -> None:
        p, self._proto = self._proto, None
        if p is not None and p.transport is not None:
            p.transport.abort()

    def _on_data(self, proto: _Proto, data: bytes) -> None:
        if proto is not self._proto:
            return
        core = self._core
        try:
            was_ready = core.ready
            core.feed(data)
            if not was_ready and core.ready and self._handshake and not self._handshake.done():
                self._handshake.set_result(None)
        except ProtocolError as e:
            if self._handshake and not self._handshake.done():
                self._handshake.set_exception(e)
            self._give_up(e)
            return
        except ShutdownNotice:
            self._drop_transport()
            self._on_lost(proto, ConnectionLost("broker shutting down"), force=True)
            return
        except FerryError as e:  # ERR during the handshake
            if self._handshake and not self._handshake.done():
                self._handshake.set_exception(e)
            self._drop_transport()
            return
        if core.out:
            self._flush()

    def _on_lost(self, proto: _Proto, exc: Exception | None, force: bool = False) -> None:
        if proto is not self._proto and not force:
            return
        self._proto = None
        if self._handshake and not self._handshake.done():
            try:
                self._core.decoder.check_eof()
                err: FerryError = ConnectionLost(
                    f"the broker closed the connection during the handshake ({exc})")
            except ProtocolError as pe:
                err = pe
            self._handshake.set_exception(err)
            return
        if self._closed or self._fatal:
            return
        try:
            self._core.decoder.check_eof()
        except ProtocolError as e:
            self._give_up(e)
            return
        self._core.connection_lost()
        if not self.reconnect:
            self._give_up(ConnectionLost("the connection dropped (reconnect is off)"))
            return
        if self._reconnect_task is None or self._reconnect_task.done():
            self._reconnect_task = self._loop.create_task(self._reconnect_loop())

    async def _reconnect_loop(self) -> None:
        started = time.monotonic()
        attempt = 0
        while not self._closed and self._fatal is None:
            await asyncio.sleep(self._backoff(attempt))
            attempt += 1
            if self._closed:
                return
            try:
                await self._connect()
                self.reconnects += 1
                return
            except ProtocolError as e:
                self._give_up(e)
                return
            except (OSError, FerryError) as e:
                log.info("ferry: reconnect attempt %d failed: %s", attempt, e)
            expired = self._reconnect_expired(started)
            if expired is not None:
                self._give_up(expired)
                return

    def _give_up(self, err: FerryError) -> None:
        self._fatal = err
        self._drop_transport()
        self._core.fail_all(err)

    def _broker_error(self, err: FerryError) -> None:
        try:
            self.on_error(err)
        except Exception:
            log.exception("ferry: on_error hook failed")

    def _restarted(self, boot: str, previous: str) -> None:
        try:
            self.on_restart(boot, previous)
        except Exception:
            log.exception("ferry: on_restart hook failed")

    # --- sending -------------------------------------------------------

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._core.acking:
            self._core.collect_acks()
        p = self._proto
        out = self._core.out
        if out and p is not None and p.transport is not None and not p.transport.is_closing():
            p.transport.write(bytes(out))
            out.clear()
            self._last_send = time.monotonic()

    async def _keepalive_loop(self) -> None:
        """PING a connection that sent nothing for a while."""
        while not self._closed and self._fatal is None:
            every = self._keepalive()
            if not every:
                await asyncio.sleep(1.0)  # the broker may announce one later
                continue
            silent = time.monotonic() - self._last_send
            if silent >= every:
                if self._core.ready:
                    self._core.send({"t": codec.PING})
                    self._flush()
                silent = 0.0
                self._last_send = time.monotonic()
            await asyncio.sleep(min(every - silent, 1.0))

    def _backed_up(self) -> bool:
        """The transport holds more than its high-water mark: a
        fire-and-forget producer must wait, or the scheduled flushes move
        everything it publishes into the transport's buffer, which then
        grows without bound while the broker reads nothing."""
        p = self._proto
        return p is not None and p.paused is not None

    async def _drain(self) -> None:
        """Write what is queued; wait while the socket is backed up (a
        producer far ahead of the broker waits here instead of filling
        memory; see PROTOCOL.md on back-pressure)."""
        self._flush()
        p = self._proto
        if p is not None and p.paused is not None:
            await asyncio.shield(p.paused)
        elif p is None and len(self._core.out) >= _FLUSH_AT:
            # No connection (reconnecting): fire-and-forget frames are not
            # queued then, so this only holds confirmed ones; let the loop run.
            await asyncio.sleep(0)

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _future(self, r: Reply) -> asyncio.Future[dict[str, Any]]:
        fut: asyncio.Future[dict[str, Any]] = self._loop.create_future()

        def done(r: Reply) -> None:
            if fut.done():
                return
            if r.error is not None:
                fut.set_exception(r.error)
            else:
                fut.set_result(r.value or {})

        r.cb = done
        return fut

    async def _await(self, fut: asyncio.Future[dict[str, Any]],
                     timeout: float | None) -> dict[str, Any]:
        if timeout is None:
            timeout = self.timeout
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except asyncio.TimeoutError:
            raise Timeout(f"no reply within {timeout} s") from None

    async def _call(self, call: Call, timeout: float | None = None) -> Any:
        self._check_open()
        fut = self._future(call)
        self._core.request(call.payload, call)
        self._schedule_flush()
        await self._await(fut, timeout)
        return call.result

    async def _settle(self, payload: dict[str, Any], gen: int, wait: bool) -> None:
        self._check_open()
        r = Reply(FAIL)
        fut = self._future(r)
        if not wait:
            fut.add_done_callback(self._settle_done)
        self._core.settle(payload, gen, r)
        self._schedule_flush()
        if wait:
            await self._await(fut, None)

    def _settle_done(self, fut: asyncio.Future[dict[str, Any]]) -> None:
        e = fut.exception()
        if reportable(e):
            self._broker_error(e)  # type: ignore[arg-type]

    # --- public API ----------------------------------------------------

    async def publish(self, topic: str, data: Any, *, id: str | None = None,
                      headers: Mapping[str, str] | None = None,
                      delay: float | None = None, ttl: float | None = None,
                      confirm: bool = True, reply_to: str | None = None,
                      corr: str | None = None, group: str | None = None,
                      mandatory: bool = False, timeout: float | None = None) -> str | None:
        """As ferry.Client.publish()."""
        if self._fatal is not None or self._closed:
            self._check_open()
        if not confirm:
            self._core.publish(topic, data, None, id, headers, delay, ttl, reply_to,
                               corr, group, mandatory)
            if len(self._core.out) >= _FLUSH_AT or self._backed_up():
                await self._drain()
            elif not self._flush_scheduled:
                self._schedule_flush()
            return id
        r = _IdReply(self._loop.create_future())
        if (type(data) is bytes and id is None and headers is None and delay is None
                and ttl is None and reply_to is None and corr is None
                and group is None and not mandatory):
            self._core.publish_bytes(topic, data, r)  # publish()'s own shortcut
        else:
            self._core.publish(topic, data, r, id, headers, delay, ttl, reply_to,
                               corr, group, mandatory)
        if not self._flush_scheduled:
            self._schedule_flush()
        try:
            return await asyncio.wait_for(asyncio.shield(r.fut), timeout or self.timeout)
        except asyncio.TimeoutError:
            raise Timeout(f"no reply within {timeout or self.timeout} s") from None

    def publish_nowait(self, topic: str, data: Any, *, id: str | None = None,
                       headers: Mapping[str, str] | None = None,
                       delay: float | None = None, ttl: float | None = None,
                       reply_to: str | None = None, corr: str | None = None,
                       group: str | None = None,
                       mandatory: bool = False) -> asyncio.Future[str]:
        """Queue a confirmed publish; the future gives its id.  Many of
        these go out in one write."""
        if self._fatal is not None or self._closed:
            self._check_open()
        r = _IdReply(self._loop.create_future())
        if (type(data) is bytes and id is None and headers is None and delay is None
                and ttl is None and reply_to is None and corr is None
                and group is None and not mandatory):
            self._core.publish_bytes(topic, data, r)  # publish()'s own shortcut
        else:
            self._core.publish(topic, data, r, id, headers, delay, ttl, reply_to,
                               corr, group, mandatory)
        if len(self._core.out) >= _SEND_AT:
            self._flush()  # let the broker start on them
        elif not self._flush_scheduled:
            self._schedule_flush()
        return r.fut

    async def publish_batch(self, topic: str, items: Iterable[Any], *, confirm: bool = True,
                            group: str | None = None, mandatory: bool = False,
                            timeout: float | None = None) -> list[str] | None:
        self._check_open()
        r = Reply(RESEND) if confirm else None
        fut = self._future(r) if r is not None else None
        self._core.publish_batch(topic, items, r, group, mandatory)
        self._schedule_flush()
        if fut is None:
            if len(self._core.out) >= _FLUSH_AT or self._backed_up():
                await self._drain()
            return None
        return codec.get_ids(await self._await(fut, timeout))

    async def subscribe(self, topic: str, handler: Callable[[Message], Any | Awaitable[Any]],
                        *, group: str | None = None, prefetch: int = 16,
                        ack_timeout: float | None = None, mode: str = "at-least-once",
                        ephemeral: bool = False, max_attempts: int | None = None,
                        group_options: Mapping[str, Any] | None = None,
                        auto_touch: bool = True) -> Subscription:
        """Run handler(msg) (a coroutine function or a plain one) for every
        message in a task; returning acks, raising nacks with its text."""
        s = await self._subscribe(topic, handler, group, prefetch, ack_timeout, mode,
                                  ephemeral, max_attempts, group_options, auto_touch)
        s.task = self._loop.create_task(s._run())
        return s

    async def subscription(self, topic: str, *, group: str | None = None,
                           prefetch: int = 16, ack_timeout: float | None = None,
                           mode: str = "at-least-once", ephemeral: bool = False,
                           max_attempts: int | None = None,
                           group_options: Mapping[str, Any] | None = None) -> Subscription:
        return await self._subscribe(topic, None, group, prefetch, ack_timeout, mode,
                                     ephemeral, max_attempts, group_options, False)

    async def messages(self, topic: str, *, idle_timeout: float | None = None,
                       **kw: Any) -> AsyncIterator[Message]:
        """`async for msg in client.messages(topic, ...)`; leaving the loop
        ends the subscription."""
        s = await self.subscription(topic, **kw)
        try:
            while True:
                m = await s.get(idle_timeout)
                if m is None:
                    return
                yield m
        finally:
            await s.close()

    async def _subscribe(self, topic: str, handler: Any, group: str | None, prefetch: int,
                         ack_timeout: float | None, mode: str, ephemeral: bool,
                         max_attempts: int | None, extra: Mapping[str, Any] | None,
                         auto_touch: bool) -> Subscription:
        opts = self._sub_opts(group, prefetch, ack_timeout, mode, ephemeral,
                              max_attempts, extra)
        s = Subscription(self, topic, opts, handler, auto_touch)
        await self._add_sub(s.state)
        return s

    async def _add_sub(self, state: SubState) -> None:
        fut = self._future(state.ready)
        self._core.add_sub(state)
        self._schedule_flush()
        await self._await(fut, None)

    async def _ensure_inbox(self) -> str:
        async with self._inbox_lock:  # one inbox, whichever task asks first
            return await self._ensure_inbox_locked()

    async def _ensure_inbox_locked(self) -> str:
        s = self._inbox
        if s is None or s.closed:
            self._check_open()
            s = self._core.inbox()
            await self._add_sub(s)
            self._inbox = s
        return s.topic

    async def request(self, topic: str, data: Any, *, timeout: float = 5.0,
                      headers: Mapping[str, str] | None = None) -> Message:
        """As ferry.Client.request()."""
        inbox = await self._ensure_inbox()
        corr, waiter = self._core.new_request()
        fut = self._future(waiter)
        deadline = time.monotonic() + timeout
        try:
            try:
                await self.publish(topic, data, headers=headers, reply_to=inbox, corr=corr,
                                   mandatory=True, ttl=timeout, timeout=timeout)
            except NoSubscribers as e:
                raise no_responders(topic) from e
            try:
                f = await asyncio.wait_for(fut, max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                raise Timeout(f"no reply from {topic!r} within {timeout} s") from None
            return Message(f, None, 0)
        finally:
            self._core.requests.pop(corr, None)

    async def reply(self, msg: BaseMessage, data: Any, *,
                    headers: Mapping[str, str] | None = None) -> bool:
        """As ferry.Client.reply()."""
        try:
            await self.publish(reply_target(msg), data, headers=headers, corr=msg.corr,
                               mandatory=True)
        except NoSubscribers:
            return False
        return True

    async def ping(self, timeout: float | None = None) -> float:
        t0 = time.monotonic()
        await self._call(ping_call(), timeout)
        return time.monotonic() - t0

    async def delete(self, topic: str, group: str | None = None) -> None:
        await self._call(delete_call(topic, group))

    async def stats(self, topic: str | None = None) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await self._call(stats_call(topic))
        return rows

    async def stats_broker(self) -> dict[str, Any]:
        """As ferry.Client.stats_broker()."""
        row: dict[str, Any] = await self._call(stats_broker_call())
        return row

    async def inflight(self, topic: str, group: str | None = None) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await self._call(inflight_call(topic, group))
        return rows

    async def peek(self, topic: str, group: str | None = None) -> Message | None:
        f = await self._call(peek_call(topic, group))
        return None if f is None else Message(f, None, 0)

    async def trace(self, message_id: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await self._call(trace_call(message_id))
        return rows

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until every confirmed publish is answered."""
        futs = []
        for r in self._core.unconfirmed():
            f: asyncio.Future[None] = self._loop.create_future()
            prev = r.cb

            def done(r: Reply, f: asyncio.Future[None] = f, prev: Any = prev) -> None:
                if prev:
                    prev(r)
                if not f.done():
                    f.set_result(None)
            r.cb = done
            futs.append(f)
        self._flush()
        if futs:
            try:
                await asyncio.wait_for(asyncio.gather(*futs), timeout or self.timeout)
            except asyncio.TimeoutError:
                raise Timeout("flush did not complete") from None

    async def close(self) -> None:
        if self._closed:
            return
        self._flush()
        self._closed = True
        for task in (self._reconnect_task, self._keepalive_task):
            if task is not None:
                task.cancel()
        self._core.fail_all(ClientClosed("the client was closed"))
        p, self._proto = self._proto, None
        if p is not None and p.transport is not None:
            p.transport.close()
        await asyncio.sleep(0)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


async def connect(host: str = "127.0.0.1", port: int = codec.DEFAULT_PORT,
                  **options: Any) -> AsyncClient:
    """Connect and handshake; options as for ferry.Client."""
    c = AsyncClient(host, port, **options)
    await c._connect()
    c._keepalive_task = asyncio.get_running_loop().create_task(c._keepalive_loop())
    return c
