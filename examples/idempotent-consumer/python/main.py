"""An idempotent consumer: at-least-once delivery acts exactly once.

Delivery is at-least-once: a worker that dies after doing the work but
before its ack gets the message again.  Recording the message id in the
same transaction as the effect makes the redelivery harmless."""

import os
import sqlite3

import ferry

host = os.environ.get("FERRY_HOST", "127.0.0.1")
port = int(os.environ.get("FERRY_PORT", "4470"))

db = sqlite3.connect(":memory:")
db.execute("CREATE TABLE processed (msg_id TEXT PRIMARY KEY)")
db.execute("CREATE TABLE charges (account TEXT, amount INTEGER)")


def handle(msg):
    """Charge once per message id, however often it is delivered."""
    with db:  # one transaction: the effect and the id, or neither
        if db.execute("SELECT 1 FROM processed WHERE msg_id = ?", (msg.id,)).fetchone():
            return "duplicate, skipped"
        body = msg.json()
        db.execute("INSERT INTO charges VALUES (?, ?)", (body["account"], body["amount"]))
        db.execute("INSERT INTO processed VALUES (?)", (msg.id,))
    return "charged"


with ferry.Client(host, port) as producer:
    producer.subscription("demo.charges", group="billing").close()  # create the group
    for n in range(3):
        # Our own id: a producer retry within the dedup window is not
        # enqueued twice either.
        producer.publish("demo.charges", {"account": "acme", "amount": 10}, id=f"charge-{n}")

    # Worker 1 does the work for charge-0, then "crashes" before acking.
    crashy = ferry.Client(host, port, reconnect=False)
    deliveries = crashy.messages("demo.charges", group="billing", prefetch=1)
    msg = next(deliveries)
    print(msg.id, "->", handle(msg), "(then the worker dies before its ack)")
    crashy.close()  # connection gone: the broker puts the delivery back

    # Worker 2 gets every message, charge-0 again included.
    with ferry.Client(host, port) as worker:
        for msg in worker.messages("demo.charges", group="billing", idle_timeout=3):
            print(msg.id, f"(attempt {msg.attempt}) ->", handle(msg))
            msg.ack()  # waits for the broker: confirmed, durable ack

    total = db.execute("SELECT SUM(amount) FROM charges").fetchone()[0]
    print(f"charged {total} in total for 3 messages of 10")
    producer.delete("demo.charges")
