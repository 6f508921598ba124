"""Request-reply: the request carries reply_to (the requester's private
inbox) and a correlation id; the responder publishes its reply there.
No responder fails at once; a slow one times out."""

import os
import threading
import time

import ferry

host = os.environ.get("FERRY_HOST", "127.0.0.1")
port = int(os.environ.get("FERRY_PORT", "4470"))

server = ferry.Client(host, port, name="adder")


def add(msg):
    args = msg.json()
    server.reply(msg, {"sum": args["a"] + args["b"]})  # same corr, to msg.reply_to


def slow(msg):
    time.sleep(1.0)  # longer than the caller waits


server.subscribe("demo.rpc.add", add)
server.subscribe("demo.rpc.slow", slow)

with ferry.Client(host, port, name="caller") as c:
    r = c.request("demo.rpc.add", {"a": 2, "b": 3}, timeout=5)
    print("2 + 3 =", r.json()["sum"], f"(correlation id {len(r.corr)} chars)")

    try:
        c.request("demo.rpc.nobody", {}, timeout=5)
    except ferry.NoResponders:
        print("demo.rpc.nobody: no responder, failed at once")

    t0 = time.monotonic()
    try:
        c.request("demo.rpc.slow", {}, timeout=0.3)
    except ferry.Timeout:
        print(f"demo.rpc.slow: timed out after {time.monotonic() - t0:.1f} s")

server.close()
