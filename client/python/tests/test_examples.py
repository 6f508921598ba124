"""Run every examples/<pattern>/python/main.py against a real ferryd and
check what it prints."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from ferryd import REPO, Ferryd

EXAMPLES = REPO / "examples"
CLIENT = REPO / "client" / "python"


@pytest.fixture(scope="module")
def example_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ferryd]:
    d = Ferryd("--fsync", "never", "--retry-backoff-base", "0.2",
               tmp=str(tmp_path_factory.mktemp("examples")))
    d.start()
    try:
        yield d
    finally:
        d.kill()


def run_example(name: str, port: int) -> str:
    path = EXAMPLES / name / "python" / "main.py"
    env = dict(os.environ, FERRY_HOST="127.0.0.1", FERRY_PORT=str(port),
               PYTHONPATH=str(CLIENT))
    p = subprocess.run([sys.executable, str(path)], env=env, capture_output=True,
                       text=True, timeout=90)
    assert p.returncode == 0, f"{name} failed:\n{p.stdout}\n{p.stderr}"
    return p.stdout


def test_publish_confirm(example_broker: Ferryd) -> None:
    out = run_example("publish", example_broker.port)
    assert re.search(r"^fire-and-forget: 2000 sent in \d+ ms, 2000 stored$", out, re.M), out
    assert re.search(r"^confirmed one by one: 200 stored in \d+ ms$", out, re.M), out
    assert re.search(r"^confirmed, pipelined: 2000 stored in \d+ ms$", out, re.M), out


def test_work_queue(example_broker: Ferryd) -> None:
    out = run_example("work-queue", example_broker.port)
    assert "30 jobs done by 3 workers\n" in out, out
    assert "every job done exactly once: True\n" in out, out
    counts = re.search(r"jobs per worker: \{0: (\d+), 1: (\d+), 2: (\d+)\}", out)
    assert counts and sum(map(int, counts.groups())) == 30, out


def test_fan_out(example_broker: Ferryd) -> None:
    out = run_example("fan-out", example_broker.port)
    assert out == ("billing got orders [1, 2, 3, 4, 5]\n"
                   "shipping got orders [1, 2, 3, 4, 5]\n"), out


def test_request_reply(example_broker: Ferryd) -> None:
    out = run_example("request-reply", example_broker.port)
    lines = out.splitlines()
    assert lines[0] == "2 + 3 = 5 (correlation id 32 chars)", out
    assert lines[1] == "demo.rpc.nobody: no responder, failed at once", out
    assert re.fullmatch(r"demo\.rpc\.slow: timed out after 0\.[3-9] s", lines[2]), out


def test_retry_dlq(example_broker: Ferryd) -> None:
    out = run_example("retry-dlq", example_broker.port)
    assert "valid card: charged on attempt 1\n" in out, out
    assert "expired card: 3 attempts, waits growing: True\n" in out, out
    assert ("dead letter: {'card': 'expired'} reason nacked after 3 attempts\n") in out, out
    assert "last error: ValueError: card expired\n" in out, out


def test_idempotent_consumer(example_broker: Ferryd) -> None:
    out = run_example("idempotent-consumer", example_broker.port)
    lines = out.splitlines()
    assert lines[0] == "charge-0 -> charged (then the worker dies before its ack)", out
    assert sorted(lines[1:4]) == ["charge-0 (attempt 2) -> duplicate, skipped",
                                  "charge-1 (attempt 1) -> charged",
                                  "charge-2 (attempt 1) -> charged"], out
    assert lines[4] == "charged 30 in total for 3 messages of 10", out
