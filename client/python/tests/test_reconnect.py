"""Reconnect after ferryd is killed (-9) and restarted on the same data
dir and port: no confirmed publish lost, none enqueued twice."""

from __future__ import annotations

import signal
import threading
import time

import ferry
from ferryd import Ferryd


def test_kill9_restart_no_loss_no_dup(durable_broker: Ferryd) -> None:
    d = durable_broker
    n = 400
    confirmed: list[int] = []
    errors: list[BaseException] = []
    received: list[bytes] = []
    got_after_restart = threading.Event()

    def on_msg(m: ferry.Message) -> None:
        received.append(m.body)
        got_after_restart.set()

    c = ferry.Client(port=d.port, reconnect_base=0.05, reconnect_max=0.5,
                     reconnect_give_up=20, timeout=20)
    # A live subscription (another topic) must come back by itself.
    listener = ferry.Client(port=d.port, reconnect_base=0.05, reconnect_max=0.5,
                            reconnect_give_up=20)
    sub = listener.subscribe("events", on_msg, group="l")

    def produce() -> None:
        try:
            for i in range(n):
                if i % 4 == 3:
                    futs = [c.publish_nowait("jobs", f"{i}.{k}".encode()) for k in range(3)]
                    for f in futs:
                        f.result(20)
                else:
                    c.publish("jobs", f"{i}".encode())
                confirmed.append(i)
        except BaseException as e:  # reported below
            errors.append(e)

    t = threading.Thread(target=produce)
    t.start()
    try:
        deadline = time.monotonic() + 20
        while len(confirmed) < 100 and time.monotonic() < deadline and t.is_alive():
            time.sleep(0.01)
        assert len(confirmed) >= 100, errors
        d.kill(signal.SIGKILL)
        time.sleep(0.3)
        d.restart(same_port=True)
        t.join(60)
        assert not t.is_alive()
        assert not errors, errors
        assert confirmed == list(range(n))
        assert c.reconnects >= 1
        print(f"publishes sent again after the restart: {c._core.resent}")

        # The durable group keeps it until the listener is back.
        c.publish("events", b"after")
        assert got_after_restart.wait(10)
        assert received == [b"after"]
        assert listener.reconnects >= 1
    finally:
        sub.close(2)
        listener.close()
        c.close()

    expected: list[bytes] = []
    for i in range(n):
        if i % 4 == 3:
            expected += [f"{i}.{k}".encode() for k in range(3)]
        else:
            expected.append(f"{i}".encode())
    with ferry.Client(port=d.port) as r:
        bodies: list[bytes] = []
        for m in r.messages("jobs", prefetch=500, idle_timeout=2):
            bodies.append(m.body)
            m.ack(wait=False)
            if len(bodies) > len(expected) + 10:
                break
    assert len(bodies) == len(set(bodies)), "a message was enqueued twice"
    assert sorted(bodies) == sorted(expected), "a confirmed message was lost"


def test_unacked_delivery_redelivered_after_restart(durable_broker: Ferryd) -> None:
    d = durable_broker
    with ferry.Client(port=d.port, reconnect_base=0.05, reconnect_max=0.5) as c:
        c.publish("r", b"keep")
        s = c.subscription("r")
        m = s.get(3)
        assert m is not None and m.attempt == 1
        d.kill()
        d.restart()
        # The old lease died with the connection: settling it says so.
        m2 = s.get(10)
        assert m2 is not None and m2.id == m.id and m2.lease and m2.gen != m.gen
        try:
            m.ack()
            raise AssertionError("ack of a lease from the old connection succeeded")
        except ferry.StaleLease:
            pass
        m2.ack()
        s.close()


def test_sigterm_shutdown_then_reconnect(broker: Ferryd) -> None:
    with ferry.Client(port=broker.port, reconnect_base=0.05, reconnect_max=0.3) as c:
        c.publish("s", b"1")
        broker.stop()  # SIGTERM: E_SHUTDOWN, then close
        broker.restart()
        assert c.publish("s", b"2", timeout=10)
        assert c.reconnects >= 1


def test_gives_up_when_broker_stays_away(broker: Ferryd) -> None:
    c = ferry.Client(port=broker.port, reconnect_base=0.05, reconnect_max=0.1,
                     reconnect_give_up=0.5)
    broker.kill()
    t0 = time.monotonic()
    try:
        c.publish("x", b"never", timeout=10)
        raise AssertionError("publish succeeded with no broker")
    except ferry.ConnectionLost:
        pass
    assert time.monotonic() - t0 < 5
    c.close()


def test_no_reconnect_option(broker: Ferryd) -> None:
    c = ferry.Client(port=broker.port, reconnect=False)
    broker.kill()
    try:
        c.ping(timeout=5)
        raise AssertionError("ping succeeded with no broker")
    except ferry.ConnectionLost:
        pass
    c.close()


def test_retried_publish_is_a_duplicate(broker: Ferryd) -> None:
    """What a resend after a lost confirm does: the same frame, same pid
    and seq, a second time.  The broker confirms it as a duplicate and
    enqueues nothing."""
    from ferry import codec
    from ferry._core import RESEND, Reply
    with ferry.Client(port=broker.port, pid="test-producer") as c:
        r = Reply(RESEND)
        with c._cv:
            c._core.publish_bytes("retry", b"once", r)
            c._flush_locked()
        first = c._wait(r, 5)
        assert first.get("dups", 0) == 0
        again = Reply(RESEND)
        with c._cv:  # the same message (same pid and seq), under a new rid
            c._core.request(codec.decode_payload(r.frame[4:]), again)
            c._flush_locked()
        second = c._wait(again, 5)
        assert second.get("dups") == 1 and second["ids"] == first["ids"]
        rows = [x for x in c.stats("retry") if not x.get("group")]
        assert rows[0].get("enq") == 1
