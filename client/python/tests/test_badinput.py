"""Bad input from the broker side: a tiny fake server on 127.0.0.1 that
answers HELLO with garbage.  The client must raise a clear error, never
hang."""

from __future__ import annotations

import socket
import threading
import time
from typing import Callable, Iterator

import msgpack
import pytest

import ferry

WELCOME = msgpack.packb({"t": 64, "v": 1, "server": "fake", "max_frame": 1 << 20,
                         "max_msg": 1 << 16})


def frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + payload


class FakeServer:
    """Accepts one connection, reads its HELLO, runs `script(conn)`."""

    def __init__(self, script: Callable[[socket.socket], None]) -> None:
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(4)
        self.lsock.settimeout(10)
        self.port = self.lsock.getsockname()[1]
        self.script = script
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        try:
            conn, _ = self.lsock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            hdr = conn.recv(4, socket.MSG_WAITALL)
            n = int.from_bytes(hdr, "big")
            hello = msgpack.unpackb(conn.recv(n, socket.MSG_WAITALL))
            assert hello["t"] == 1 and hello["v"] == 1
            self.script(conn)

    def close(self) -> None:
        self.lsock.close()
        self.thread.join(5)


@pytest.fixture
def fake() -> Iterator[Callable[[Callable[[socket.socket], None]], FakeServer]]:
    servers: list[FakeServer] = []

    def make(script: Callable[[socket.socket], None]) -> FakeServer:
        s = FakeServer(script)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


def test_truncated_welcome_then_close(fake) -> None:  # type: ignore[no-untyped-def]
    srv = fake(lambda c: c.sendall(frame(WELCOME)[:10]))
    t0 = time.monotonic()
    with pytest.raises(ferry.ProtocolError, match="closed inside a frame"):
        ferry.Client(port=srv.port, connect_timeout=5)
    assert time.monotonic() - t0 < 3


def test_truncated_welcome_kept_open_times_out(fake) -> None:  # type: ignore[no-untyped-def]
    gate = threading.Event()

    def script(c: socket.socket) -> None:
        c.sendall(frame(WELCOME)[:10])
        gate.wait(10)

    srv = fake(script)
    t0 = time.monotonic()
    with pytest.raises(ferry.Timeout):
        ferry.Client(port=srv.port, connect_timeout=0.5)
    assert time.monotonic() - t0 < 3
    gate.set()


def test_unknown_frame_type_after_welcome(fake) -> None:  # type: ignore[no-untyped-def]
    def script(c: socket.socket) -> None:
        c.sendall(frame(WELCOME))
        c.recv(4096)  # the PING
        c.sendall(frame(msgpack.packb({"t": 99, "rid": 1})))
        time.sleep(1)

    srv = fake(script)
    c = ferry.Client(port=srv.port)
    t0 = time.monotonic()
    with pytest.raises(ferry.ProtocolError, match="unknown type t=99"):
        c.ping(timeout=5)
    assert time.monotonic() - t0 < 3
    # The client is unusable now, and says why.
    with pytest.raises(ferry.ProtocolError):
        c.publish("x", b"y")
    c.close()


def test_truncated_frame_mid_session(fake) -> None:  # type: ignore[no-untyped-def]
    def script(c: socket.socket) -> None:
        c.sendall(frame(WELCOME))
        c.recv(4096)
        c.sendall(frame(msgpack.packb({"t": 65, "rid": 1}))[:-2])

    srv = fake(script)
    c = ferry.Client(port=srv.port)
    with pytest.raises(ferry.ProtocolError, match="closed inside a frame"):
        c.ping(timeout=5)
    c.close()


@pytest.mark.parametrize("junk,match", [
    (b"\0\0\0\0", "length 0"),
    (b"\x7f\xff\xff\xff", "above max_frame"),
    (frame(b"\x92\x01\x02"), "not a map"),
    (frame(b"\x81\xa1t\x41\x00"), "trailing"),
    (frame(msgpack.packb({"t": 67, "sid": 1, "body": b""})), "'id' is missing"),
    (frame(msgpack.packb({"t": 66})), "'code' is missing"),
])
def test_malformed_frames(fake, junk: bytes, match: str) -> None:  # type: ignore[no-untyped-def]
    def script(c: socket.socket) -> None:
        c.sendall(frame(WELCOME))
        c.recv(4096)
        c.sendall(junk)
        time.sleep(1)

    srv = fake(script)
    c = ferry.Client(port=srv.port)
    with pytest.raises(ferry.ProtocolError, match=match):
        c.ping(timeout=5)
    c.close()


def test_handshake_error_from_broker(fake) -> None:  # type: ignore[no-untyped-def]
    srv = fake(lambda c: c.sendall(frame(msgpack.packb({"t": 66, "code": 3, "msg": "v2 only"}))))
    with pytest.raises(ferry.HandshakeError, match="v2 only"):
        ferry.Client(port=srv.port)


def test_silent_server_request_timeout(fake) -> None:  # type: ignore[no-untyped-def]
    gate = threading.Event()

    def script(c: socket.socket) -> None:
        c.sendall(frame(WELCOME))
        gate.wait(10)

    srv = fake(script)
    c = ferry.Client(port=srv.port)
    t0 = time.monotonic()
    with pytest.raises(ferry.Timeout):
        c.publish("x", b"y", timeout=0.3)
    assert time.monotonic() - t0 < 2
    gate.set()
    c.close()


def test_producer_waits_for_a_server_that_does_not_read(fake) -> None:  # type: ignore[no-untyped-def]
    gate = threading.Event()

    def script(c: socket.socket) -> None:
        c.sendall(frame(WELCOME))
        gate.wait(20)  # and never read again

    srv = fake(script)
    c = ferry.Client(port=srv.port, timeout=1, keepalive=0)
    body = b"x" * 1024
    t0 = time.monotonic()
    sent = 0
    with pytest.raises(ferry.Timeout, match="does not read"):
        while sent < 200_000:  # 200 MB if nothing held it back
            c.publish("t", body, confirm=False)
            sent += 1
    assert time.monotonic() - t0 < 10
    assert sent < 50_000, sent
    # What waits (up to 8 MiB) plus what the I/O thread holds to write:
    # less than 256 KiB when it took the queue, plus that queue.
    assert len(c._core.out) + len(c._sending) < (16 << 20) + (320 << 10)
    gate.set()
    c.close()


def _answer_peek_with_ok(c: socket.socket) -> None:
    """WELCOME, then answer the PEEK (rid 1) with a plain OK: no message."""
    c.sendall(frame(WELCOME))
    n = int.from_bytes(c.recv(4, socket.MSG_WAITALL), "big")
    req = msgpack.unpackb(c.recv(n, socket.MSG_WAITALL))
    assert req["t"] == 12
    c.sendall(frame(msgpack.packb({"t": 65, "rid": req["rid"]})))
    time.sleep(1)


def test_peek_answered_without_a_message(fake) -> None:  # type: ignore[no-untyped-def]
    srv = fake(_answer_peek_with_ok)
    with ferry.Client(port=srv.port, reconnect=False, timeout=5) as c:
        with pytest.raises(ferry.ProtocolError, match="PEEK is not a MSG"):
            c.peek("t")


def test_peek_answered_without_a_message_aio(fake) -> None:  # type: ignore[no-untyped-def]
    """The asyncio client made a Message of the OK frame (and failed later,
    on msg.id, with a KeyError)."""
    import asyncio

    import ferry.aio

    srv = fake(_answer_peek_with_ok)

    async def run() -> None:
        c = await ferry.aio.connect(port=srv.port, reconnect=False, timeout=5)
        try:
            with pytest.raises(ferry.ProtocolError, match="PEEK is not a MSG"):
                await c.peek("t")
        finally:
            await c.close()

    asyncio.run(run())
