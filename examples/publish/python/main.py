"""Fire-and-forget vs confirmed publishing.

Fire-and-forget returns at once and is fastest, but a message still in
the socket when the connection drops is lost.  A confirmed publish
returns once the broker has stored the message (on disk with the default
fsync=always); publish_nowait() pipelines many confirms at once.
"""

import os
import time

import ferry

N = 2000
host = os.environ.get("FERRY_HOST", "127.0.0.1")
port = int(os.environ.get("FERRY_PORT", "4470"))

with ferry.Client(host, port) as c:
    t0 = time.perf_counter()
    for i in range(N):
        c.publish("demo.fire", b"event %d" % i, confirm=False)
    c.flush()  # wait until it is all written
    t_fire = time.perf_counter() - t0

    t0 = time.perf_counter()
    for i in range(N // 10):
        c.publish("demo.confirmed", b"order %d" % i)  # waits for its confirm
    t_one = time.perf_counter() - t0

    t0 = time.perf_counter()
    futures = [c.publish_nowait("demo.pipelined", b"order %d" % i) for i in range(N)]
    ids = [f.result() for f in futures]  # every id, once stored
    t_pipe = time.perf_counter() - t0

    stored = {row["topic"]: row.get("enq", 0) for row in c.stats() if not row.get("group")}
    print(f"fire-and-forget: {N} sent in {t_fire * 1000:.0f} ms, "
          f"{stored['demo.fire']} stored")
    print(f"confirmed one by one: {N // 10} stored in {t_one * 1000:.0f} ms")
    print(f"confirmed, pipelined: {len(set(ids))} stored in {t_pipe * 1000:.0f} ms")
    for topic in ("demo.fire", "demo.confirmed", "demo.pipelined"):
        c.delete(topic)
