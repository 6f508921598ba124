"""The blocking client against the real ferryd."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import ferry
from ferryd import Ferryd


def drain(c: ferry.Client, topic: str, n: int, timeout: float = 5.0, **kw: Any) -> list[ferry.Message]:
    """Take up to n messages (acking them), stop after `timeout`."""
    got: list[ferry.Message] = []
    deadline = time.monotonic() + timeout
    s = c.subscription(topic, **kw)
    try:
        while len(got) < n and time.monotonic() < deadline:
            m = s.get(deadline - time.monotonic())
            if m is None:
                break
            m.ack()
            got.append(m)
    finally:
        s.close()
    return got


def test_publish_confirmed_and_fire_and_forget(broker: Ferryd) -> None:
    with ferry.Client(port=broker.port, name="t-pub") as c:
        mid = c.publish("orders", b"one")
        assert isinstance(mid, str) and len(mid) == 36
        assert c.publish("orders", b"two", confirm=False) is None
        assert c.publish("orders", b"three", id="my-3", confirm=False) == "my-3"
        c.flush(5)
        got = drain(c, "orders", 3)
        assert [m.body for m in got] == [b"one", b"two", b"three"]
        assert got[0].id == mid and got[2].id == "my-3"
        assert got[0].attempt == 1 and got[0].topic == "orders" and got[0].timestamp > 0


def test_headers_json_delay_ttl(broker: Ferryd) -> None:
    with ferry.Client(port=broker.port) as c:
        c.publish("j", {"n": 1, "s": "é"}, headers={"k": "v"})
        c.publish("j", b"raw", delay=0.4)
        t0 = time.monotonic()
        got = drain(c, "j", 2)
        assert got[0].json() == {"n": 1, "s": "é"}
        assert got[0].headers == {"k": "v", "content-type": "application/json"}
        assert got[1].body == b"raw" and got[1].headers == {}
        assert time.monotonic() - t0 >= 0.35
        # ttl: expires while waiting (ttl_drop group drops it).
        c.subscription("exp", group="g", group_options={"ttl_drop": True}).close()
        c.publish("exp", b"x", ttl=0.1)
        time.sleep(0.4)
        assert drain(c, "exp", 1, timeout=0.5, group="g") == []


def test_producer_id_dedup(broker: Ferryd) -> None:
    with ferry.Client(port=broker.port) as c:
        a = c.publish("d", b"x", id="same")
        b = c.publish("d", b"x again", id="same")
        assert a == b == "same"
        got = drain(c, "d", 2, timeout=1)
        assert [m.body for m in got] == [b"x"]


def test_batch_and_pipelined(broker: Ferryd) -> None:
    with ferry.Client(port=broker.port) as c:
        ids = c.publish_batch("b", [b"a", {"j": 2}, (b"c", {"id": "c-id", "headers": {"h": "1"}})])
        assert ids is not None and len(ids) == 3 and ids[2] == "c-id"
        futs = [c.publish_nowait("b", str(i).encode()) for i in range(200)]
        c.flush(10)
        assert all(f.done() for f in futs)
        assert len({f.result() for f in futs}) == 200
        assert c.publish_batch("b", [b"x", b"y"], confirm=False) is None
        got = drain(c, "b", 205)
        bodies = [m.body for m in got]
        assert bodies[:3] == [b"a", b'{"j":2}', b"c"]
        assert bodies[3:203] == [str(i).encode() for i in range(200)]
        assert bodies[203:] == [b"x", b"y"]
        assert got[2].headers == {"h": "1"}
        with pytest.raises(ValueError):
            c.publish_batch("b", [])


def test_handler_ack_and_nack_with_error_text(broker: Ferryd) -> None:
    seen: list[tuple[bytes, int]] = []
    done = threading.Event()

    def handler(m: ferry.Message) -> None:
        seen.append((m.body, m.attempt))
        if m.body == b"bad" and m.attempt == 1:
            raise ValueError("boom")
        if len(seen) == 3:
            done.set()

    with ferry.Client(port=broker.port, name="worker-x") as c:
        c.publish("h", b"good")
        bad = c.publish("h", b"bad")
        # A short backoff: the broker's base is 1 s, with jitter.
        with c.subscribe("h", handler):
            assert done.wait(5), seen
        assert sorted(seen) == [(b"bad", 1), (b"bad", 2), (b"good", 1)]
        ev = [e for e in c.trace(bad) if e.get("ev") == "nacked"]
        assert ev and "ValueError: boom" in ev[0]["e"] and ev[0]["by"] == "worker-x"
        rows = {r.get("group"): r for r in c.stats("h")}
        assert rows["default"].get("ack") == 2 and rows["default"].get("nack") == 1


def test_iterator_nack_delay_touch_and_stale(broker: Ferryd) -> None:
    with ferry.Client(port=broker.port) as c:
        c.publish("it", b"m")
        it = c.messages("it", ack_timeout=0.3, idle_timeout=3)
        m = next(it)
        m.touch()
        m.nack(delay=0.2, error="later")
        with pytest.raises(ferry.StaleLease):
            m.ack()  # already settled (caught locally)
        m2 = next(it)
        assert m2.id == m.id and m2.attempt == 2
        time.sleep(0.8)  # let the lease run out
        with pytest.raises(ferry.StaleLease) as ei:
            m2.ack()
        assert ei.value.code == 8 and not ei.value.retryable
        m3 = next(it)
        assert m3.attempt == 3
        m3.ack()
        it.close()  # type: ignore[attr-defined]


def test_auto_touch_long_handler(broker: Ferryd) -> None:
    seen: list[int] = []
    done = threading.Event()

    def slow(m: ferry.Message) -> None:
        seen.append(m.attempt)
        time.sleep(2.5)  # more than two leases of 1 s
        done.set()

    with ferry.Client(port=broker.port) as c:
        c.publish("slow", b"x")
        with c.subscribe("slow", slow, ack_timeout=1.0):
            assert done.wait(5)
            time.sleep(0.3)
        row = [r for r in c.stats("slow") if r.get("group") == "default"][0]
        assert seen == [1]
        assert row.get("timeout", 0) == 0 and row.get("ack") == 1


def test_at_most_once_and_ephemeral_fanout(broker: Ferryd) -> None:
    with ferry.Client(port=broker.port) as c:
        a = c.subscription("fan", ephemeral=True, mode="at-most-once")
        b = c.subscription("fan", ephemeral=True)
        assert a.group.startswith("~") and b.group != a.group
        c.publish("fan", b"hi")
        ma, mb = a.get(3), b.get(3)
        assert ma is not None and mb is not None
        assert ma.body == mb.body == b"hi"
        assert ma.lease == 0 and mb.lease > 0
        ma.ack()  # nothing to settle at-most-once
        mb.ack()
        a.close()
        b.close()
        with pytest.raises(ValueError):
            c.subscription("fan", mode="exactly-once")


def test_groups_compete_and_fan_out(broker: Ferryd) -> None:
    with ferry.Client(port=broker.port) as c:
        g1a = c.subscription("w", group="g1", prefetch=1)
        g1b = c.subscription("w", group="g1", prefetch=1)
        g2 = c.subscription("w", group="g2")
        for i in range(4):
            c.publish("w", str(i).encode())
        got1: list[bytes] = []
        deadline = time.monotonic() + 5
        while len(got1) < 4 and time.monotonic() < deadline:
            for s in (g1a, g1b):
                m = s.get(0.05)
                if m:
                    got1.append(m.body)
                    m.ack()
        got2 = []
        for _ in range(4):
            m = g2.get(3)
            assert m is not None
            got2.append(m.body)
            m.ack()
        assert sorted(got1) == got2 == [b"0", b"1", b"2", b"3"]
        for s in (g1a, g1b, g2):
            s.close()


def test_request_reply(broker: Ferryd) -> None:
    with ferry.Client(port=broker.port) as server, ferry.Client(port=broker.port) as c:
        with pytest.raises(ferry.NoResponders):
            c.request("rpc.upper", b"x", timeout=5)

        def upper(m: ferry.Message) -> None:
            assert server.reply(m, m.body.upper())

        t0 = time.monotonic()
        with server.subscribe("rpc.upper", upper):
            r = c.request("rpc.upper", b"hello", timeout=5)
            assert r.body == b"HELLO" and r.corr
            assert c.request("rpc.upper", b"again", timeout=5).body == b"AGAIN"
        assert time.monotonic() - t0 < 4

        silent = server.subscription("rpc.silent")
        t0 = time.monotonic()
        with pytest.raises(ferry.Timeout):
            c.request("rpc.silent", b"x", timeout=0.5)
        assert 0.4 < time.monotonic() - t0 < 3
        # The responder got it; its requester has gone: reply() says so.
        m = silent.get(2)
        assert m is not None and m.reply_to.startswith("_inbox.")
        c.close()
        time.sleep(0.2)
        assert server.reply(m, b"late") is False
        m.ack()
        silent.close()


def test_errors(broker: Ferryd) -> None:
    with ferry.Client(port=broker.port) as c:
        with pytest.raises(ferry.BadName) as ei:
            c.publish("bad topic!", b"x")
        assert ei.value.code == 5 and isinstance(ei.value, ferry.FerryError)
        with pytest.raises(ferry.MessageTooBig):
            c.publish("t", b"x" * (c.server["max_msg"] + 1))
        c.subscription("full", group="g", group_options={"max_msgs": 1}).close()
        c.publish("full", b"1")
        with pytest.raises(ferry.QueueFull) as qf:
            c.publish("full", b"2")
        assert qf.value.retryable and qf.value.code == 12
        with pytest.raises(ferry.NotFound):
            c.publish("full", b"x", group="nope")
        with pytest.raises(ferry.NoSubscribers):
            c.publish("nobody", b"x", mandatory=True)
        # Deleting the group ends its subscriptions with Deleted.
        s = c.subscription("gone", group="g")
        c.delete("gone", "g")
        with pytest.raises(ferry.Deleted):
            s.get(3)
        with pytest.raises(ferry.NotFound):
            c.delete("never-existed")
    with pytest.raises(ferry.ClientClosed):
        c.publish("t", b"x")


def test_inspection(broker: Ferryd) -> None:
    with ferry.Client(port=broker.port, name="inspector") as c:
        c.subscription("ins", group="g").close()
        mid = c.publish("ins", b"peeked")
        p = c.peek("ins", "g")
        assert p is not None and p.id == mid and p.body == b"peeked" and p.lease == 0
        s = c.subscription("ins", group="g")
        m = s.get(3)
        assert m is not None
        rows = c.inflight("ins", "g")
        assert len(rows) == 1 and rows[0]["id"] == mid and rows[0]["by"] == "inspector"
        m.ack()
        s.close()
        assert c.peek("ins", "g") is None
        evs = [e["ev"] for e in c.trace(mid)]
        assert evs[:3] == ["published", "delivered", "acked"]
        assert c.ping() < 1
        with pytest.raises(ferry.NotFound):
            c.trace("no-such-id")


def test_connect_refused_is_clear() -> None:
    with pytest.raises(OSError):
        ferry.Client(port=1, connect_timeout=1)


def test_keepalive_against_idle_timeout(tmp_path: Any) -> None:
    d = Ferryd("--fsync", "never", "--idle-timeout", "1", tmp=str(tmp_path))
    d.start()
    try:
        with ferry.Client(port=d.port, keepalive=None) as kept, \
                ferry.Client(port=d.port, keepalive=0, reconnect_base=0.05) as idle:
            s1 = kept.subscription("ka", ephemeral=True)
            s2 = idle.subscription("ka", ephemeral=True)
            time.sleep(2.5)
            assert kept.reconnects == 0
            assert idle.reconnects >= 1  # closed for idleness, came back
            kept.publish("ka", b"x")
            m1, m2 = s1.get(3), s2.get(3)
            assert m1 is not None and m2 is not None  # both subscribed again
            s1.close()
            s2.close()
    finally:
        d.kill()


def test_threads_share_one_client(broker: Ferryd) -> None:
    """Publishes from several threads at once, confirmed and not, each
    message stored once, and a consumer acking from another thread."""
    n, threads = 300, 4
    with ferry.Client(port=broker.port) as c:
        errors: list[BaseException] = []

        def produce(t: int) -> None:
            try:
                for i in range(n):
                    body = f"{t}.{i}".encode()
                    if i % 3 == 0:
                        c.publish("mt", body, confirm=False)
                    elif i % 3 == 1:
                        c.publish("mt", body)
                    else:
                        c.publish_nowait("mt", body)
            except BaseException as e:
                errors.append(e)

        c.subscription("mt", group="g").close()
        ts = [threading.Thread(target=produce, args=(t,)) for t in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        c.flush(30)
        assert not errors
        got = []
        for m in c.messages("mt", group="g", prefetch=200, idle_timeout=2):
            got.append(m.body)
            m.ack(wait=False)
            if len(got) >= n * threads + 10:
                break
        assert sorted(got) == sorted(f"{t}.{i}".encode() for t in range(threads)
                                     for i in range(n))
        # Per producer thread, its messages arrive in the order it sent them.
        for t in range(threads):
            mine = [int(b.split(b".")[1]) for b in got if b.startswith(f"{t}.".encode())]
            assert mine == sorted(mine)


def test_concurrent_requests_share_one_inbox(broker: Ferryd) -> None:
    with ferry.Client(port=broker.port) as server, ferry.Client(port=broker.port) as c:
        server.subscribe("rpc.id", lambda m: server.reply(m, m.body), prefetch=64)
        out: dict[int, bytes] = {}

        def ask(i: int) -> None:
            out[i] = c.request("rpc.id", str(i).encode(), timeout=10).body

        ts = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(20)
        assert out == {i: str(i).encode() for i in range(8)}
        inboxes = [r for r in c.stats() if r.get("topic", "").startswith("_inbox.")
                   and r.get("group")]
        assert len(inboxes) == 1


def test_unsolicited_errors_reach_on_error(broker: Ferryd) -> None:
    # Every ERR without rid goes to on_error; the hook runs without the
    # client's lock, so it may call the client without waiting for a
    # reply (this deadlocked before: the hook ran under the lock).
    seen: list[ferry.FerryError] = []
    futures: list[Any] = []
    called = threading.Event()

    def hook(e: ferry.FerryError) -> None:
        seen.append(e)
        futures.append(c.publish_nowait("unasked.log", str(e).encode()))
        called.set()

    c = ferry.Client(port=broker.port, on_error=hook)
    try:
        s = c.subscription("unasked", group="g")
        sid = s.sid
        assert sid > 0
        c.delete("unasked", "g")
        assert called.wait(5), "on_error not called"
        assert isinstance(seen[0], ferry.Deleted) and seen[0].sid == sid
        assert len(futures[0].result(5)) == 36  # published from the hook
        with pytest.raises(ferry.Deleted):
            s.get(3)
    finally:
        c.close()


def test_idle_timeout_reaches_on_error(tmp_path: Any) -> None:
    d = Ferryd("--fsync", "never", "--idle-timeout", "1", tmp=str(tmp_path))
    d.start()
    seen: list[ferry.FerryError] = []
    try:
        with ferry.Client(port=d.port, keepalive=0, reconnect_base=0.05,
                          on_error=seen.append) as c:
            assert c.server["idle"] == 1000
            deadline = time.monotonic() + 5
            while not seen and time.monotonic() < deadline:
                time.sleep(0.05)
            assert seen and isinstance(seen[0], ferry.IdleTimeout), seen
            assert seen[0].retryable
            c.ping(timeout=5)  # reconnected
    finally:
        d.kill()


def test_restart_reported_by_boot(broker: Ferryd) -> None:
    restarts: list[tuple[str, str]] = []
    with ferry.Client(port=broker.port, reconnect_base=0.05, reconnect_max=0.2,
                      on_restart=lambda b, p: restarts.append((b, p)),
                      on_error=lambda e: None) as c:
        boot0 = c.server["boot"]
        assert len(boot0) == 36
        broker.kill()
        broker.restart()
        c.ping(timeout=10)
        deadline = time.monotonic() + 5
        while not restarts and time.monotonic() < deadline:
            time.sleep(0.05)
        assert restarts == [(c.server["boot"], boot0)]
        assert c.server["boot"] != boot0


def test_stats_broker(broker: Ferryd) -> None:
    with ferry.Client(port=broker.port) as c, ferry.Client(port=broker.port):
        c.publish("sb.a", b"1")
        c.publish("sb.b", b"2")
        b = c.stats_broker()
        assert b["conns"] == 2
        assert b["topics"] >= 2 and b["pub"] >= 2
        assert b["up"] >= 0


def test_stalled_broker_blocks_publisher_soon(broker: Ferryd) -> None:
    """ferryd stopped: a fire-and-forget producer is made to wait after a
    few hundred KiB, not 8 MiB of stamped messages (PROTOCOL.md section 1,
    "Keep the producer's side short")."""
    import os
    import signal

    body = b"s" * 100
    sent = 0
    with ferry.Client(port=broker.port, timeout=0.5, reconnect=False) as c:
        assert broker.proc is not None
        os.kill(broker.proc.pid, signal.SIGSTOP)
        try:
            with pytest.raises(ferry.Timeout):
                while sent < 16 << 20:  # bounded: 16 MB of bodies
                    c.publish("stall", body, confirm=False)
                    sent += len(body)
        finally:
            os.kill(broker.proc.pid, signal.SIGCONT)
    assert sent < 1536 << 10, f"{sent} bytes taken while ferryd read nothing"
