"""The asyncio client against the real ferryd (and a fake server)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any, Coroutine

import msgpack
import pytest

import ferry
import ferry.aio
from ferryd import Ferryd


def run(coro: Coroutine[Any, Any, Any], timeout: float = 30) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())


def test_publish_subscribe_iterate(broker: Ferryd) -> None:
    async def main() -> None:
        async with await ferry.aio.connect("127.0.0.1", broker.port) as c:
            mid = await c.publish("a", b"one")
            assert len(mid) == 36
            assert await c.publish("a", {"x": 1}, confirm=False) is None
            ids = await c.publish_batch("a", [b"b1", (b"b2", {"id": "b2-id"})])
            assert ids and ids[1] == "b2-id"
            futs = [c.publish_nowait("a", str(i).encode()) for i in range(100)]
            assert len(set(await asyncio.gather(*futs))) == 100
            got = []
            async for m in c.messages("a", idle_timeout=2):
                got.append(m)
                if m.body == b"b1" and m.attempt == 1:
                    await m.nack(delay=0, error="once more")
                    continue
                await m.ack()
                if len(got) == 105:
                    break
            bodies = [m.body for m in got]
            assert bodies[:3] == [b"one", b'{"x":1}', b"b1"]
            assert got[1].json() == {"x": 1}
            assert sorted(bodies[3:]) == sorted([b"b1", b"b2"] + [str(i).encode() for i in range(100)])
            again = [m for m in got if m.body == b"b1"]
            assert [m.attempt for m in again] == [1, 2]
    run(main())


def test_handler_ack_nack_and_auto_touch(broker: Ferryd) -> None:
    async def main() -> None:
        async with await ferry.aio.connect(port=broker.port, name="aw") as c:
            seen: list[tuple[bytes, int]] = []
            done = asyncio.Event()

            async def handler(m: ferry.aio.Message) -> None:
                seen.append((m.body, m.attempt))
                if m.body == b"slow":
                    await asyncio.sleep(2.5)  # > two leases of 1 s
                if m.body == b"bad" and m.attempt == 1:
                    raise RuntimeError("nope")
                if len(seen) >= 3:
                    done.set()

            await c.publish("h", b"slow")
            bad = await c.publish("h", b"bad")
            s = await c.subscribe("h", handler, ack_timeout=1.0, prefetch=1)
            await asyncio.wait_for(done.wait(), 10)
            await s.close()
            assert seen == [(b"slow", 1), (b"bad", 1), (b"bad", 2)]
            ev = [e for e in await c.trace(bad) if e.get("ev") == "nacked"]
            assert "RuntimeError: nope" in ev[0]["e"]
            row = [r for r in await c.stats("h") if r.get("group") == "default"][0]
            assert row.get("timeout", 0) == 0 and row.get("ack") == 2
    run(main())


def test_request_reply_and_errors(broker: Ferryd) -> None:
    async def main() -> None:
        srv = await ferry.aio.connect(port=broker.port)
        c = await ferry.aio.connect(port=broker.port)
        with pytest.raises(ferry.NoResponders):
            await c.request("rpc", b"x")

        async def echo(m: ferry.aio.Message) -> None:
            await srv.reply(m, b"re:" + m.body)

        s = await srv.subscribe("rpc", echo)
        r = await c.request("rpc", b"hi", timeout=5)
        assert r.body == b"re:hi"
        await s.close()
        quiet = await srv.subscription("rpc.quiet")
        with pytest.raises(ferry.Timeout):
            await c.request("rpc.quiet", b"x", timeout=0.3)
        await quiet.close()
        with pytest.raises(ferry.BadName):
            await c.publish("no spaces", b"x")
        await (await srv.subscription("f", group="g", group_options={"max_msgs": 1})).close()
        await c.publish("f", b"1")
        with pytest.raises(ferry.QueueFull) as e:
            await c.publish("f", b"2")
        assert e.value.retryable
        assert (await c.peek("f", "g")).body == b"1"  # type: ignore[union-attr]
        assert await c.ping() < 1
        await srv.close()
        await c.close()
        with pytest.raises(ferry.ClientClosed):
            await c.publish("f", b"x")
    run(main())


def test_reconnect_kill9(durable_broker: Ferryd) -> None:
    d = durable_broker

    async def main() -> None:
        c = await ferry.aio.connect(port=d.port, reconnect_base=0.05, reconnect_max=0.5)
        n = 300
        done: list[int] = []

        async def produce() -> None:
            for i in range(n):
                await c.publish("k", str(i).encode(), timeout=20)
                done.append(i)

        task = asyncio.create_task(produce())
        deadline = time.monotonic() + 20
        while len(done) < 80 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert len(done) >= 80
        await asyncio.to_thread(d.kill)
        await asyncio.sleep(0.3)
        await asyncio.to_thread(d.restart)
        await asyncio.wait_for(task, 30)
        assert c.reconnects >= 1
        bodies = []
        async for m in c.messages("k", prefetch=400, idle_timeout=2):
            bodies.append(m.body)
            await m.ack(wait=False)
            if len(bodies) >= n + 10:
                break
        assert len(bodies) == len(set(bodies))
        assert sorted(bodies) == sorted(str(i).encode() for i in range(n))
        await c.close()
    run(main(), 60)


def test_unknown_frame_from_fake_server() -> None:
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    lsock.settimeout(10)
    port = lsock.getsockname()[1]

    def serve() -> None:
        try:
            conn, _ = lsock.accept()
        except OSError:
            return
        with conn:
            conn.recv(4096)
            w = msgpack.packb({"t": 64, "v": 1})
            conn.sendall(len(w).to_bytes(4, "big") + w)
            conn.recv(4096)
            bad = msgpack.packb({"t": 200, "rid": 1})
            conn.sendall(len(bad).to_bytes(4, "big") + bad + b"\0\0")
            time.sleep(1)

    t = threading.Thread(target=serve, daemon=True)
    t.start()

    async def main() -> None:
        c = await ferry.aio.connect(port=port)
        t0 = time.monotonic()
        with pytest.raises(ferry.ProtocolError, match="unknown type t=200"):
            await c.ping(timeout=5)
        assert time.monotonic() - t0 < 3
        await c.close()
    try:
        run(main())
    finally:
        lsock.close()
        t.join(5)


def test_keepalive_and_resubscribe(tmp_path: Any) -> None:
    d = Ferryd("--fsync", "never", "--idle-timeout", "1", tmp=str(tmp_path))
    d.start()

    async def main() -> None:
        kept = await ferry.aio.connect(port=d.port, keepalive=None)
        idle = await ferry.aio.connect(port=d.port, keepalive=0, reconnect_base=0.05)
        s1 = await kept.subscription("ka", ephemeral=True)
        s2 = await idle.subscription("ka", ephemeral=True)
        await asyncio.sleep(2.5)
        assert kept.reconnects == 0
        assert idle.reconnects >= 1
        await kept.publish("ka", b"x")
        m1, m2 = await s1.get(3), await s2.get(3)
        assert m1 is not None and m2 is not None
        await kept.close()
        await idle.close()
    try:
        run(main())
    finally:
        d.kill()


def test_close_lets_the_handler_finish(broker: Ferryd) -> None:
    async def main() -> None:
        async with await ferry.aio.connect(port=broker.port) as c:
            started = asyncio.Event()
            finished: list[bytes] = []

            async def handler(m: ferry.aio.Message) -> None:
                started.set()
                await asyncio.sleep(0.3)
                finished.append(m.body)

            s = await c.subscribe("fin", handler, group="g")
            await c.publish("fin", b"x")
            await asyncio.wait_for(started.wait(), 5)
            await s.close()
            assert finished == [b"x"]
            rows = [r for r in await c.stats("fin") if r.get("group") == "g"]
            assert rows[0].get("ack") == 1 and rows[0].get("rel", 0) == 0
    run(main())


def test_fire_and_forget_backpressure_against_a_server_that_does_not_read() -> None:
    """A producer far ahead of a broker that stops reading waits instead
    of queueing without bound."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    lsock.settimeout(10)
    port = lsock.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        try:
            conn, _ = lsock.accept()
        except OSError:
            return
        with conn:
            conn.recv(4096)
            w = msgpack.packb({"t": 64, "v": 1, "max_frame": 1 << 20})
            conn.sendall(len(w).to_bytes(4, "big") + w)
            stop.wait(20)  # and never read again

    t = threading.Thread(target=serve, daemon=True)
    t.start()

    async def main() -> None:
        c = await ferry.aio.connect(port=port, keepalive=0)
        body = b"x" * 1024
        sent = 0

        async def flood() -> None:
            nonlocal sent
            while sent < 200_000:  # 200 MB if nothing held it back
                await c.publish("t", body, confirm=False)
                sent += 1

        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(flood(), 3)
        assert sent < 100_000, sent  # held back, far below the 200 MB
        assert len(c._core.out) < 1 << 20
        await c.close()
    try:
        run(main())
    finally:
        stop.set()
        lsock.close()
        t.join(5)


def test_unsolicited_errors_and_restart(broker: Ferryd) -> None:
    # Every ERR without rid reaches on_error (here E_DELETED, whose
    # iterator raises too); a reconnect to a restarted broker calls
    # on_restart with the new and the old boot.
    async def main() -> None:
        seen: list[ferry.FerryError] = []
        restarts: list[tuple[str, str]] = []
        async with await ferry.aio.connect(
                "127.0.0.1", broker.port, on_error=seen.append,
                on_restart=lambda b, p: restarts.append((b, p)),
                reconnect_base=0.05, reconnect_max=0.2) as c:
            s = await c.subscription("unasked", group="g")
            sid = s.sid
            assert sid > 0
            await c.delete("unasked", "g")
            with pytest.raises(ferry.Deleted):
                await s.get(3)
            assert isinstance(seen[0], ferry.Deleted) and seen[0].sid == sid
            boot0 = c.server["boot"]
            await asyncio.to_thread(broker.kill)
            await asyncio.to_thread(broker.restart)
            await c.ping(timeout=10)
            assert restarts == [(c.server["boot"], boot0)]
            assert c.server["boot"] != boot0
    run(main())


def test_batch_and_inspection(broker: Ferryd) -> None:
    # The calls ferry.Client and libferry have: publish_batch, stats,
    # stats_broker, inflight, peek, trace.
    async def main() -> None:
        async with await ferry.aio.connect("127.0.0.1", broker.port, name="insp") as c:
            s = await c.subscription("insp", group="g", prefetch=1)
            ids = await c.publish_batch("insp", [b"one", b"two", b"three"])
            assert len(ids) == 3 and len(set(ids)) == 3
            m = await s.get(3)
            assert m is not None and m.id == ids[0]
            head = await c.peek("insp", "g")  # next after the one in flight
            assert head is not None and head.body == b"two" and not head.lease
            rows = await c.inflight("insp", "g")
            assert [r["id"] for r in rows] == [ids[0]] and rows[0]["by"] == "insp"
            row = [r for r in await c.stats("insp") if r.get("group") == "g"][0]
            assert row["inflight"] == 1 and row["enq"] == 3
            b = await c.stats_broker()
            assert b["conns"] >= 1 and b["topics"] >= 1 and b["pub"] >= 3
            await m.ack()
            events = [e["ev"] for e in await c.trace(ids[0])]
            assert events[:3] == ["published", "delivered", "acked"]
            await s.close()
    run(main())


def test_stalled_broker_blocks_publisher_soon_aio(broker: Ferryd) -> None:
    """As test_client's: the asyncio producer waits after a few hundred
    KiB while ferryd reads nothing."""
    import os
    import signal

    async def main() -> int:
        body = b"s" * 100
        sent = 0
        c = await ferry.aio.connect(port=broker.port, reconnect=False)
        assert broker.proc is not None
        os.kill(broker.proc.pid, signal.SIGSTOP)
        try:
            while sent < 16 << 20:  # bounded: 16 MB of bodies
                try:
                    await asyncio.wait_for(
                        c.publish("stall", body, confirm=False), 0.5)
                except TimeoutError:
                    break
                sent += len(body)
        finally:
            os.kill(broker.proc.pid, signal.SIGCONT)
        await c.close()
        return sent

    sent = asyncio.run(main())
    assert sent < 1536 << 10, f"{sent} bytes taken while ferryd read nothing"
