"""The sans-I/O core on its own: broker bytes in, deliveries and frames
out (what both clients build on).  The clients' tests run the same paths
against the real ferryd; these pin down the cases a broker rarely sends."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from ferry import _core, codec
from ferry.errors import ProtocolError, StaleLease


def frame_of(payload: dict[str, Any]) -> bytes:
    p = msgpack.packb(payload, use_bin_type=True)
    return len(p).to_bytes(4, "big") + p


WELCOME = frame_of({"t": 64, "v": 1, "max_frame": 1 << 20, "max_msg": 1 << 16, "boot": "b1"})
MSG = {"t": 67, "sid": 3, "id": "0000000000000001-00000001", "topic": "orders",
       "lease": 9, "att": 1, "ts": 1733362000000, "body": b"hello"}


def ready_core() -> tuple[_core.Core, _core.SubState, list[dict[str, Any]]]:
    core = _core.Core("t")
    core.connection_made()
    core.feed(WELCOME)
    core.out.clear()
    got: list[dict[str, Any]] = []
    s = _core.SubState("orders", {}, _core.Reply(_core.FAIL),
                       lambda f, gen: got.append(f), lambda e: None)
    s.sid = 3
    core.subs.append(s)
    core.by_sid[3] = s
    return core, s, got


def sent(core: _core.Core) -> list[dict[str, Any]]:
    d = codec.Decoder()
    d.feed(bytes(core.out))
    core.out.clear()
    return d.frames()


def test_delivery_before_welcome_refused() -> None:
    core = _core.Core("t")
    core.connection_made()
    with pytest.raises(ProtocolError, match="before WELCOME"):
        core.feed(frame_of(MSG))


def test_delivery_with_rid_0_is_a_delivery() -> None:
    core, _, got = ready_core()
    core.feed(frame_of(dict(MSG, rid=0)) + frame_of(MSG))
    assert got == [dict(MSG, rid=0), MSG]


def test_delivery_with_rid_answers_the_request() -> None:
    """A MSG with a rid is the reply to a PEEK, not a delivery."""
    core, _, got = ready_core()
    r = core.request({"t": codec.PEEK, "topic": "orders"}, _core.Reply())
    core.feed(frame_of(dict(MSG, rid=r.rid)))
    assert got == []
    assert r.finished and r.value is not None and r.value["rid"] == r.rid


def test_delivery_for_unknown_sid_dropped() -> None:
    core, _, got = ready_core()
    core.feed(frame_of(dict(MSG, sid=4)) + frame_of(MSG))
    assert got == [MSG]


def test_queued_acks_one_frame_per_write() -> None:
    core, s, _ = ready_core()
    for lease in (5, 6, 7):
        core.queue_ack(s, lease, core.gen)
    core.collect_acks()
    assert sent(core) == [{"t": codec.ACK, "sid": 3, "leases": [5, 6, 7]}]
    # After a write, the next ack starts a new frame.
    core.queue_ack(s, 8, core.gen)
    core.collect_acks()
    assert sent(core) == [{"t": codec.ACK, "sid": 3, "lease": 8}]
    core.collect_acks()
    assert sent(core) == []


def test_acks_of_an_old_connection_not_sent() -> None:
    core, s, _ = ready_core()
    core.queue_ack(s, 5, core.gen)
    old = core.gen
    core.connection_lost()
    core.connection_made()
    core.feed(WELCOME)
    core.out.clear()
    with pytest.raises(StaleLease):
        core.queue_ack(s, 6, old)
    s.sid = 3
    core.by_sid[3] = s
    core.queue_ack(s, 7, core.gen)
    core.collect_acks()
    assert sent(core) == [{"t": codec.ACK, "sid": 3, "lease": 7}]
