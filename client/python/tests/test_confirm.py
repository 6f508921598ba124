"""The fast paths of a confirmed publish: a confirm (OK {t, rid, ids,
dur}) decoded without the general checks, dispatched without the
general look-ups, read by result() without the lock.  Each must give
exactly what the general path gives, and fall back to it for anything
else."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import msgpack
import pytest

import ferry
import ferry.aio
from ferry import _core, codec
from ferry.client import PublishFuture
from ferry.errors import ProtocolError
from ferryd import Ferryd

UUID = "3f2c5a0e-8f6b-4c1d-9a51-5e6c1f2b7d40"


def confirm(rid: int = 2, ids: Any = (UUID,), dur: Any = 2, **extra: Any) -> bytes:
    """A confirm's payload, in the key order ferryd sends."""
    m: dict[Any, Any] = {"t": 65, "rid": rid, "ids": list(ids), "dur": dur}
    m.update(extra)
    return msgpack.packb(m, use_bin_type=True)


def general(payload: bytes) -> str:
    """What the general path makes of `payload`: decode_payload() and
    check_broker_frame(), as repr (so 1 and True differ, and key order
    counts)."""
    try:
        f = codec.decode_payload(payload)
        codec.check_broker_frame(f)
    except ProtocolError:
        return "ProtocolError"
    return repr(list(f.items()))


def decoded(payload: bytes) -> str:
    """What Decoder.frames(check=True) makes of one frame of `payload`."""
    d = codec.Decoder()
    d.feed(len(payload).to_bytes(4, "big") + payload)
    try:
        fs = d.frames(check=True)
    except ProtocolError:
        return "ProtocolError"
    assert len(fs) == 1
    return repr(list(fs[0].items()))


@pytest.fixture
def general_calls(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Counts the frames that take the general path (_frame_map())."""
    calls: list[Any] = []
    real = codec._frame_map

    def spy(obj: Any) -> dict[str, Any]:
        calls.append(obj)
        return real(obj)
    monkeypatch.setattr(codec, "_frame_map", spy)
    return calls


RIDS = [0, 1, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, 0xffffffff, 1 << 32, codec.UINT64_MAX]
IDS = [[UUID], [""], ["a"], ["x" * 31], ["x" * 32], ["é" * 100], [], [UUID, UUID]]


@pytest.mark.parametrize("rid", RIDS)
@pytest.mark.parametrize("ids", IDS)
@pytest.mark.parametrize("dur", [0, 1, 2, 127, 128, 1 << 40])
def test_confirm_fast_path_same_as_general(rid: int, ids: list[str], dur: int,
                                           general_calls: list[Any]) -> None:
    p = confirm(rid, ids, dur)
    want = general(p)
    general_calls.clear()
    assert decoded(p) == want
    assert want != "ProtocolError"
    assert general_calls == []  # taken without the general path


def test_confirm_every_truncation_falls_back() -> None:
    """A frame holding only the first k bytes of a confirm is what the
    general path says (an error), never read past its end."""
    p = confirm(0x1234)
    for k in range(1, len(p)):
        assert decoded(p[:k]) == general(p[:k]) == "ProtocolError", k
        # The rest of the confirm follows as the next frame's bytes: the
        # first frame must still be decoded from its own k bytes alone.
        d = codec.Decoder()
        d.feed(k.to_bytes(4, "big") + p[:k] + len(p).to_bytes(4, "big") + p)
        with pytest.raises(ProtocolError):
            d.frames(check=True)


def test_confirm_every_byte_changed_same_as_general() -> None:
    for p in (confirm(5), confirm(0x1234), confirm(9, dur=300)):
        for i in range(len(p)):
            for v in {0x00, 0x01, 0x7f, 0x80, 0xa0, 0xc0, 0xc2, 0xc3, 0xcc, 0xd0,
                      0xd9, 0xff, p[i] ^ 1}:
                q = p[:i] + bytes((v,)) + p[i + 1:]
                assert decoded(q) == general(q), (p.hex(), i, v)


@pytest.mark.parametrize("payload", [
    confirm(dups=1),                                   # five keys
    confirm(2, [UUID], None),                          # dur nil
    confirm(2, [UUID], True),                          # dur bool
    confirm(-1),                                       # rid negative
    confirm(True),                                     # rid bool
    msgpack.packb({"t": 65, "rid": 2, "ids": None, "dur": 1}),
    msgpack.packb({"t": 65, "rid": 2, "ids": "x", "dur": 1}),
    msgpack.packb({"t": 65, "x": 2, "ids": [UUID], "dur": 1}),      # no rid
    msgpack.packb({"t": True, "rid": 2, "ids": [UUID], "dur": 1}),
    msgpack.packb({"t": 66, "rid": 2, "code": 3, "msg": "x"}),      # an ERR of 4 keys
    msgpack.packb({"t": 64, "rid": 2, "ids": [UUID], "dur": 1}),
    msgpack.packb({"t": 65, "rid": 2, 7: [UUID], "dur": 1}),        # non-str key
    confirm() + b"\x00",                                            # trailing byte
])
def test_unusual_confirms_take_the_general_path(payload: bytes,
                                                general_calls: list[Any]) -> None:
    want = general(payload)
    general_calls.clear()
    assert decoded(payload) == want
    if want != "ProtocolError":
        assert len(general_calls) == 1


@pytest.mark.parametrize("payload", [
    msgpack.packb({"t": 65, "rid": 2, "ids": [b"\xff"], "dur": 1}),
    b"\x84\xa1tA\xa3rid\x02\xa3ids\x91\xa2\xff\xfe\xa3dur\x01",     # invalid UTF-8 id
    b"\x84\xa1tA\xa3rid\xd0\x02\xa3ids\x90\xa3dur\x01",             # rid as int 8
    confirm(2, [UUID], -1),                                         # dur negative
])
def test_odd_confirms_of_the_usual_shape_same_as_general(payload: bytes) -> None:
    """The fast path checks the shape of the decoded map, not its bytes:
    the values the client does not rely on decode as the general path
    decodes them (ids are checked where read, by message_id())."""
    assert decoded(payload) == general(payload) != "ProtocolError"


def test_several_confirms_and_a_delivery_in_one_read() -> None:
    msg = {"t": 67, "sid": 3, "id": "m1", "topic": "a", "lease": 1, "att": 1,
           "ts": 5, "body": b"x"}
    ps = [confirm(1), msgpack.packb(msg), confirm(300, ["b"], 1), confirm(1 << 33)]
    d = codec.Decoder()
    d.feed(b"".join(len(p).to_bytes(4, "big") + p for p in ps))
    assert [repr(list(f.items())) for f in d.frames(check=True)] == [general(p) for p in ps]


# --- Core.dispatch() and the replies -------------------------------------


def ready_core() -> _core.Core:
    core = _core.Core("t")
    core.connection_made()
    w = msgpack.packb({"t": 64, "v": 1, "max_frame": 1 << 20, "boot": "b"})
    core.feed(len(w).to_bytes(4, "big") + w)
    core.out.clear()
    return core


def frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + payload


def test_confirms_resolve_their_own_publish() -> None:
    core = ready_core()
    rs = [_core.Reply() for _ in range(3)]
    for r in rs:
        core.publish_bytes("a", b"x", r)
    rids = [r.rid for r in rs]
    err = msgpack.packb({"t": 66, "rid": rids[1], "code": 12, "msg": "full"})
    # Out of order, one error, one rid nobody waits for.
    core.feed(frame(confirm(rids[2], ["c"])) + frame(confirm(999, ["z"]))
              + frame(err) + frame(confirm(rids[0], ["a"])))
    assert rs[0].message_id() == "a" and rs[2].message_id() == "c"
    assert isinstance(rs[1].error, ferry.QueueFull) and rs[1].value is None
    assert core.pending == {}


def test_confirm_before_welcome_refused() -> None:
    core = _core.Core("t")
    core.connection_made()
    with pytest.raises(ProtocolError, match="before WELCOME"):
        core.feed(frame(confirm(1)))


def test_publish_bytes_rid_widths_match_generic() -> None:
    """Every width of rid the hot path packs itself."""
    for rid in (1, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, 0xffffffff, 1 << 32):
        core = ready_core()
        core.next_rid = rid
        r = _core.Reply()
        core.publish_bytes("t", b"body", r)
        assert r.rid == rid
        assert bytes(core.out) == codec.encode_pub_simple(
            codec.pack_topic("t"), b"body", rid, core.pid_packed, core.seq)


class Watched(_core.Reply):
    """Records the value and error a reply has when it becomes finished."""

    seen: list[tuple[Any, Any]] = []

    @property  # type: ignore[override]
    def finished(self) -> bool:
        return bool(self.__dict__.get("_fin"))

    @finished.setter
    def finished(self, v: bool) -> None:
        if v:
            Watched.seen.append((self.value, self.error))
        self.__dict__["_fin"] = v


def test_reply_is_finished_only_with_its_value() -> None:
    """PublishFuture.result() reads a finished reply without the lock,
    from another thread: finished must come after the value (or error)."""
    Watched.seen = []
    r = Watched()
    r.resolve({"ids": ["a"]})
    e = ferry.QueueFull("x")
    r2 = Watched()
    r2.fail(e)
    assert Watched.seen == [({"ids": ["a"]}, None), (None, e)]


# --- through the real daemon ---------------------------------------------


def test_pipelined_confirms_from_ferryd(broker: Ferryd, general_calls: list[Any]) -> None:
    """ferryd's confirms take the fast path; an error reaches its own
    future among them."""
    with ferry.Client("127.0.0.1", broker.port) as c:
        c.ping()
        general_calls.clear()
        futs = [c.publish_nowait("a", b"%d" % i) for i in range(500)]
        bad = c.publish_nowait("nobody", b"x", mandatory=True)
        futs += [c.publish_nowait("a", b"x") for _ in range(200)]
        mine = c.publish_nowait("a", b"y", id="my-id")
        ids = [f.result(10) for f in futs]
        assert all(len(i) == 36 for i in ids) and len(set(ids)) == len(ids)
        assert mine.result(10) == "my-id"
        with pytest.raises(ferry.NoSubscribers):
            bad.result(10)
        assert [f for f in general_calls if f.get("t") == codec.OK] == []


def test_pipelined_confirms_from_ferryd_aio(broker: Ferryd, general_calls: list[Any]) -> None:
    async def main() -> None:
        async with await ferry.aio.connect("127.0.0.1", broker.port) as c:
            await c.ping()
            general_calls.clear()
            futs = [c.publish_nowait("a", b"%d" % i) for i in range(500)]
            bad = c.publish_nowait("nobody", b"x", mandatory=True)
            futs += [c.publish_nowait("a", b"x") for _ in range(200)]
            mine = c.publish_nowait("a", b"y", id="my-id")
            ids = [await f for f in futs]
            assert all(len(i) == 36 for i in ids) and len(set(ids)) == len(ids)
            assert await mine == "my-id"
            with pytest.raises(ferry.NoSubscribers):
                await bad
            assert [f for f in general_calls if f.get("t") == codec.OK] == []
            # flush() still hears of confirms resolved by the fast path.
            more = [c.publish_nowait("a", b"z") for _ in range(50)]
            await c.flush(10)
            assert all(f.done() and len(f.result()) == 36 for f in more)
    asyncio.run(asyncio.wait_for(main(), 30))


def test_result_of_resolved_future_needs_no_lock(broker: Ferryd) -> None:
    with ferry.Client("127.0.0.1", broker.port) as c:
        f = c.publish_nowait("a", b"x")
        mid = f.result(10)
        assert isinstance(f, PublishFuture)
        with c._lock:  # held by this thread: result() must not need it
            assert f.result(0) == mid
        assert uuid.UUID(mid)
