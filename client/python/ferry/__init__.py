"""Python client for the ferry message broker (PROTOCOL.md, version 1)."""

from .client import Client, Message, PublishFuture, Subscription, connect
from .errors import (BadArgument, BadName, ClientClosed, ConnectionLost, Deleted,
                     DiskError, FerryError, FrameTooBig, HandshakeError, IdleTimeout,
                     InternalError, LimitReached, MessageTooBig, ModeError,
                     NoResponders, NoSubscribers, NoSuchSubscription, NotFound,
                     ProtocolError, ProtocolViolation, QueueFull, Shutdown,
                     StaleLease, Timeout, UnknownType)

__version__ = "0.1.0"

__all__ = [
    "Client", "Message", "PublishFuture", "Subscription", "connect",
    "BadArgument", "BadName", "ClientClosed", "ConnectionLost", "Deleted",
    "DiskError", "FerryError", "FrameTooBig", "HandshakeError", "IdleTimeout",
    "InternalError",
    "LimitReached", "MessageTooBig", "ModeError", "NoResponders", "NoSubscribers",
    "NoSuchSubscription", "NotFound", "ProtocolError", "ProtocolViolation",
    "QueueFull", "Shutdown", "StaleLease", "Timeout", "UnknownType",
]
