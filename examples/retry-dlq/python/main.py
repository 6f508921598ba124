"""Retries with exponential backoff, then the dead-letter queue.

A handler that raises nacks its message with the exception's text; the
broker redelivers it after an exponential backoff (retry_base x
2^(attempt-1), with jitter).  After max_attempts failures the message
moves to <topic>.dlq with its history."""

import os
import threading
import time

import ferry

host = os.environ.get("FERRY_HOST", "127.0.0.1")
port = int(os.environ.get("FERRY_PORT", "4470"))
attempts = []
lock = threading.Lock()


def charge(msg):
    with lock:
        attempts.append((msg.json()["card"], msg.attempt, time.monotonic()))
    if msg.json()["card"] == "expired":
        raise ValueError("card expired")  # -> nack, retried later


with ferry.Client(host, port, name="payments-worker") as c:
    dead = c.subscription("demo.payments.dlq", group="ops")
    c.subscribe("demo.payments", charge, group="charge", max_attempts=3)
    c.publish("demo.payments", {"card": "valid"})
    c.publish("demo.payments", {"card": "expired"})

    letter = dead.get(timeout=30)  # the failing payment, after 3 attempts
    assert letter is not None, "no dead letter within 30 s"
    letter.ack()
    tries = [t for card, a, t in attempts if card == "expired"]
    gaps = [b - a for a, b in zip(tries, tries[1:])]
    # Backoff doubles with jitter (half fixed, half random), so each wait
    # is at least the one before; 50 ms of slack for scheduling.
    growing = all(b >= a - 0.05 for a, b in zip(gaps, gaps[1:]))
    print("valid card: charged on attempt 1")
    print(f"expired card: {len(tries)} attempts, waits growing: {growing}")
    print("dead letter:", letter.json(), "reason", letter.headers["dlq-reason"],
          "after", letter.headers["dlq-attempts"], "attempts")
    print("last error:", letter.history[-1].get("e"))
    dead.close()
    c.delete("demo.payments")
    c.delete("demo.payments.dlq")
