"""A work queue: several workers share one group, each job goes to one
of them.  prefetch=1 hands a job only to a worker that is free."""

import collections
import os
import threading
import time

import ferry

host = os.environ.get("FERRY_HOST", "127.0.0.1")
port = int(os.environ.get("FERRY_PORT", "4470"))
JOBS, WORKERS = 30, 3

done = collections.Counter()  # job -> times done
by_worker = collections.Counter()
lock = threading.Lock()
all_done = threading.Event()

clients = []
for w in range(WORKERS):
    c = ferry.Client(host, port, name=f"worker-{w}")

    def work(msg, w=w):
        time.sleep(0.01)  # the "work"
        with lock:
            done[msg.json()["job"]] += 1
            by_worker[w] += 1
            if sum(done.values()) == JOBS:
                all_done.set()
        # returning acks the job; raising would nack it for a retry

    c.subscribe("demo.jobs", work, group="workers", prefetch=1)
    clients.append(c)

with ferry.Client(host, port) as producer:
    for j in range(JOBS):
        producer.publish("demo.jobs", {"job": j})

    finished = all_done.wait(30)
    for c in clients:
        c.close()
    print(f"{sum(done.values())} jobs done by {len(by_worker)} workers")
    print("every job done exactly once:", finished and all(done[j] == 1 for j in range(JOBS)))
    print("jobs per worker:", dict(sorted(by_worker.items())))
    producer.delete("demo.jobs")
