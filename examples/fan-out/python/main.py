"""Pub-sub fan-out: every group of a topic receives every message.
Billing and shipping each get all orders; inside a group, members would
compete."""

import os

import ferry

host = os.environ.get("FERRY_HOST", "127.0.0.1")
port = int(os.environ.get("FERRY_PORT", "4470"))

with ferry.Client(host, port) as c:
    # Create both groups before publishing: a group receives what is
    # published after it exists.
    billing = c.subscription("demo.orders", group="billing")
    shipping = c.subscription("demo.orders", group="shipping")

    for n in range(1, 6):
        c.publish("demo.orders", {"order": n, "total": 10 * n})

    for name, sub in (("billing", billing), ("shipping", shipping)):
        got = []
        while len(got) < 5:
            msg = sub.get(timeout=5)
            if msg is None:
                break
            got.append(msg.json()["order"])
            msg.ack()
        print(f"{name} got orders {got}")
        sub.close()
    c.delete("demo.orders")
