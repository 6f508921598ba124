#!/usr/bin/python3
"""Throughput of the Python client: one producer and one consumer (each a
process of its own, with its own connection), 128-byte bodies, acked.

    /usr/bin/python3 client/python/bench.py --port 4470 --msgs 100000
    /usr/bin/python3 client/python/bench.py --port 4470 --confirm

Compare with `build/client/ferry --port 4470 bench TOPIC` (same defaults:
fire-and-forget publishes, acked deliveries, prefetch 1000).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ferry  # noqa: E402


def produce(a: argparse.Namespace, ready: mp.synchronize.Event, out: mp.Queue) -> None:  # type: ignore[name-defined]
    body = os.urandom(a.size)
    with ferry.Client(a.host, a.port, name="bench-pub") as c:
        ready.wait(30)
        t0 = time.perf_counter()
        c0 = time.process_time()
        if a.confirm:
            futs: list[ferry.PublishFuture] = []
            for _ in range(a.msgs):
                futs.append(c.publish_nowait(a.topic, body))
                if len(futs) >= a.window:
                    # At most `window` unconfirmed: wait for the oldest half
                    # (waiting for each in turn trickles publishes to the
                    # broker and measured a third slower).
                    for f in futs[: a.window // 2]:
                        f.result(60)
                    del futs[: a.window // 2]
            for f in futs:
                f.result(60)
        elif a.batch:
            for i in range(0, a.msgs, a.batch):
                c.publish_batch(a.topic, [body] * min(a.batch, a.msgs - i), confirm=False)
            c.flush(60)
        else:
            publish = c.publish
            for _ in range(a.msgs):
                publish(a.topic, body, confirm=False)
            c.flush(60)
        # flush() waits for the socket to take the bytes; a ping round
        # trip shows the broker has read them all.
        c.ping(60)
        out.put(("pub", time.perf_counter() - t0, time.process_time() - c0))


def consume(a: argparse.Namespace, ready: mp.synchronize.Event, out: mp.Queue) -> None:  # type: ignore[name-defined]
    with ferry.Client(a.host, a.port, name="bench-sub") as c:
        s = c.subscription(a.topic, group="bench", prefetch=a.prefetch,
                           mode="at-most-once" if a.no_ack else "at-least-once")
        ready.set()
        n = 0
        t0 = c0 = 0.0
        get = s.get
        while n < a.msgs:
            m = get(a.timeout)
            if m is None:
                break
            if n == 0:
                t0 = time.perf_counter()
                c0 = time.process_time()
            n += 1
            if not a.no_ack:
                m.ack(wait=False)
        c.flush(30)
        out.put(("sub", time.perf_counter() - t0, time.process_time() - c0, n))
        s.close()


def produce_aio(a: argparse.Namespace, ready: mp.synchronize.Event, out: mp.Queue) -> None:  # type: ignore[name-defined]
    import asyncio

    import ferry.aio

    async def run() -> None:
        body = os.urandom(a.size)
        c = await ferry.aio.connect(a.host, a.port, name="bench-pub")
        await asyncio.to_thread(ready.wait, 30)
        t0 = time.perf_counter()
        c0 = time.process_time()
        if a.confirm:
            futs: list[asyncio.Future[str]] = []
            for _ in range(a.msgs):
                futs.append(c.publish_nowait(a.topic, body))
                if len(futs) >= a.window:
                    # Awaited in turn, as the blocking loop does: a future
                    # already confirmed costs nothing to await, where
                    # asyncio.gather() costs a callback and a loop turn
                    # for each (about a fifth more CPU per message).
                    for f in futs[: a.window // 2]:
                        await f
                    del futs[: a.window // 2]
            for f in futs:
                await f
        else:
            for i in range(a.msgs):
                await c.publish(a.topic, body, confirm=False)
                if i % 1000 == 999:
                    await asyncio.sleep(0)  # let the loop write
        await c.ping(60)
        out.put(("pub", time.perf_counter() - t0, time.process_time() - c0))
        await c.close()

    asyncio.run(run())


def consume_aio(a: argparse.Namespace, ready: mp.synchronize.Event, out: mp.Queue) -> None:  # type: ignore[name-defined]
    import asyncio

    import ferry.aio

    async def run() -> None:
        c = await ferry.aio.connect(a.host, a.port, name="bench-sub")
        s = await c.subscription(a.topic, group="bench", prefetch=a.prefetch,
                                 mode="at-most-once" if a.no_ack else "at-least-once")
        ready.set()
        n = 0
        t0 = c0 = 0.0
        while n < a.msgs:
            m = await s.get(a.timeout)
            if m is None:
                break
            if n == 0:
                t0 = time.perf_counter()
                c0 = time.process_time()
            n += 1
            if not a.no_ack:
                await m.ack(wait=False)
        await c.flush(30)
        out.put(("sub", time.perf_counter() - t0, time.process_time() - c0, n))
        await s.close()
        await c.close()

    asyncio.run(run())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default=os.environ.get("FERRY_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("FERRY_PORT", "4470")))
    p.add_argument("--topic", default="pybench")
    p.add_argument("--msgs", type=int, default=100000)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--confirm", action="store_true", help="confirmed publishes, pipelined")
    p.add_argument("--window", type=int, default=1000, help="with --confirm: most unconfirmed")
    p.add_argument("--batch", type=int, default=0, help="publish_batch() of this many")
    p.add_argument("--prefetch", type=int, default=1000)
    p.add_argument("--no-ack", action="store_true", help="subscribe at-most-once")
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--aio", action="store_true", help="use the asyncio client")
    a = p.parse_args()

    with ferry.Client(a.host, a.port) as c:
        try:
            c.delete(a.topic)
        except ferry.NotFound:
            pass
    ctx = mp.get_context("fork")
    ready = ctx.Event()
    out: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    procs = [ctx.Process(target=consume_aio if a.aio else consume, args=(a, ready, out)),
             ctx.Process(target=produce_aio if a.aio else produce, args=(a, ready, out))]
    for pr in procs:
        pr.start()
    res = {}
    for _ in procs:
        r = out.get(timeout=600)
        res[r[0]] = r[1:]
    for pr in procs:
        pr.join(30)
    with ferry.Client(a.host, a.port) as c:
        c.delete(a.topic)
    mode = "confirmed" if a.confirm else (f"batches of {a.batch}" if a.batch else "fire-and-forget")
    print(f"python bench{' (asyncio)' if a.aio else ''}: 1 pub, 1 sub, {a.msgs} msgs x {a.size} B, {mode}, "
          f"{'at-most-once' if a.no_ack else 'acked'}, prefetch {a.prefetch}")
    pt, pc = res["pub"]
    st, sc, n = res["sub"]
    # CPU time per message (both threads of a blocking client): what
    # decides throughput on a machine whose cores are busy anyway.
    print(f"Pub: {a.msgs / pt:10.0f} msgs/s  ({a.msgs} msgs in {pt:.3f} s, "
          f"CPU {pc * 1e6 / a.msgs:.2f} us/msg)")
    print(f"Sub: {n / st if st else 0:10.0f} msgs/s  ({n} deliveries in {st:.3f} s, "
          f"CPU {sc * 1e6 / max(n, 1):.2f} us/msg)")
    return 0 if n == a.msgs else 1


if __name__ == "__main__":
    sys.exit(main())
