"""Exceptions of the ferry client.

Every error the broker can answer (PROTOCOL.md section 7) has a class
named after its code; all derive from FerryError, whose `.code` is the
numeric code and `.retryable` says whether the same request may succeed
later unchanged.  Errors found by the client itself (a broken connection,
a malformed broker frame, a timeout) derive from FerryError too, with
code 0.
"""

from __future__ import annotations


class FerryError(Exception):
    """Base of every ferry error. `code` is PROTOCOL.md's error code (0 for
    errors raised by the client itself), `name` its symbolic name."""

    code: int = 0
    name: str = ""
    retryable: bool = False

    def __init__(self, message: str = "", *, code: int | None = None,
                 sid: int = 0) -> None:
        if code is not None:
            self.code = code
        self.message = message
        self.sid = sid
        label = self.name or type(self).__name__
        super().__init__(f"{label}: {message}" if message else label)


# --- broker error codes ----------------------------------------------------

class ProtocolViolation(FerryError):
    """E_PROTO: the broker found a frame we sent malformed."""
    code, name = 1, "E_PROTO"


class FrameTooBig(FerryError):
    code, name = 2, "E_TOOBIG"


class HandshakeError(FerryError):
    code, name = 3, "E_HANDSHAKE"


class UnknownType(FerryError):
    code, name = 4, "E_UNKNOWN_TYPE"


class BadName(FerryError):
    code, name = 5, "E_BADNAME"


class BadArgument(FerryError):
    code, name = 6, "E_BADARG"


class NoSuchSubscription(FerryError):
    code, name = 7, "E_NOSUB"


class StaleLease(FerryError):
    """E_STALE: the lease timed out, was redelivered or already settled."""
    code, name = 8, "E_STALE"


class MessageTooBig(FerryError):
    code, name = 9, "E_MSGSIZE"


class NotFound(FerryError):
    code, name = 10, "E_NOTFOUND"


class LimitReached(FerryError):
    code, name = 11, "E_LIMIT"


class QueueFull(FerryError):
    """E_FULL: a group of the topic is full; nothing was published."""
    code, name, retryable = 12, "E_FULL", True


class DiskError(FerryError):
    code, name, retryable = 13, "E_DISK", True


class InternalError(FerryError):
    code, name, retryable = 14, "E_INTERNAL", True


class Deleted(FerryError):
    """E_DELETED: the subscription ended because its group was deleted."""
    code, name = 15, "E_DELETED"


class Shutdown(FerryError):
    code, name, retryable = 16, "E_SHUTDOWN", True


class ModeError(FerryError):
    code, name = 17, "E_MODE"


class NoSubscribers(FerryError):
    """E_NOSUBSCRIBERS: mandatory publish and nobody is subscribed."""
    code, name, retryable = 18, "E_NOSUBSCRIBERS", True


class IdleTimeout(FerryError):
    """E_IDLE: the broker closed a connection that sent nothing for its
    idle_timeout (the client reconnects; its keepalive PINGs prevent it)."""
    code, name, retryable = 20, "E_IDLE", True


class SlowConsumer(FerryError):
    """E_SLOW: unsolicited, with sid: messages of the subscription's
    ephemeral group were dropped (it fell ephemeral_max_bytes behind)."""
    code, name = 21, "E_SLOW"


class NoResponders(NoSubscribers):
    """request(): no responder is subscribed to the topic."""


_BY_CODE: dict[int, type[FerryError]] = {
    c.code: c for c in (
        ProtocolViolation, FrameTooBig, HandshakeError, UnknownType, BadName,
        BadArgument, NoSuchSubscription, StaleLease, MessageTooBig, NotFound,
        LimitReached, QueueFull, DiskError, InternalError, Deleted, Shutdown,
        ModeError, NoSubscribers, IdleTimeout, SlowConsumer)
}


def from_code(code: int, message: str = "", sid: int = 0) -> FerryError:
    """The exception for a broker ERR; unknown codes give a plain,
    non-retryable FerryError (PROTOCOL.md: clients MUST treat unknown codes
    as non-retryable)."""
    cls = _BY_CODE.get(code)
    if cls is None:
        err = FerryError(message, code=code, sid=sid)
        err.name = f"E_{code}"
        return err
    return cls(message, sid=sid)


# --- client-side errors ----------------------------------------------------

class ProtocolError(FerryError):
    """The broker sent something this client cannot parse or does not
    expect (bad framing, malformed payload, unknown frame type). The
    connection is closed and not retried: the peer is not a ferry broker
    this client understands."""
    name = "protocol error"


class ConnectionLost(FerryError):
    """The connection dropped and the request cannot be carried over to a
    new one (a settlement of a delivery from the old connection, or the
    client is closed / out of reconnect attempts)."""
    name = "connection lost"
    retryable = True


class Timeout(FerryError, TimeoutError):
    """No reply (or no message) within the given time."""
    name = "timeout"
    retryable = True


class ClientClosed(FerryError):
    name = "client closed"
