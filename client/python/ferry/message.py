"""Delivered messages and the helpers that turn `data` into a body."""

from __future__ import annotations

import json
from typing import Any, Mapping

JSON_TYPE = "application/json"


def to_body(data: Any, headers: Mapping[str, str] | None) -> tuple[bytes, dict[str, str] | None]:
    """Bodies are bytes; anything else is JSON-encoded and labelled with a
    `content-type: application/json` header."""
    if isinstance(data, bytes):
        return data, dict(headers) if headers else None
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data), dict(headers) if headers else None
    hdr = dict(headers) if headers else {}
    hdr.setdefault("content-type", JSON_TYPE)
    return json.dumps(data, separators=(",", ":")).encode(), hdr


class BaseMessage:
    """A message as delivered by the broker (a MSG frame).

    Attributes: id, topic, body (bytes), headers (dict), attempt (1 on the
    first delivery), timestamp (publish time, Unix ms), reply_to, corr,
    history (dead letters only: list of dicts with c, e, by, at), lease
    (0 on at-most-once subscriptions), sid.
    """

    # The frame is kept as decoded; fields are read from it on access, so
    # a delivery costs no more than the attributes a consumer looks at.
    __slots__ = ("_f", "lease", "sid", "gen", "_sub", "_settled", "__weakref__")

    def __init__(self, frame: Mapping[str, Any], sub: Any = None, gen: int = 0) -> None:
        self._f = frame
        self.lease: int = frame.get("lease", 0)
        self.sid: int = frame.get("sid", 0)
        self.gen = gen
        self._sub = sub
        self._settled = False

    @property
    def id(self) -> str:
        v: str = self._f["id"]
        return v

    @property
    def topic(self) -> str:
        v: str = self._f.get("topic", "")
        return v

    @property
    def body(self) -> bytes:
        b = self._f["body"]
        if type(b) is bytes:
            return b
        return str(b).encode("utf-8", "surrogateescape")

    @property
    def headers(self) -> dict[str, str]:
        return self._f.get("hdr") or {}

    @property
    def attempt(self) -> int:
        return self._f.get("att", 0)

    @property
    def timestamp(self) -> int:
        """Publish time, Unix milliseconds."""
        return self._f.get("ts", 0)

    @property
    def reply_to(self) -> str:
        return self._f.get("reply_to", "")

    @property
    def corr(self) -> str:
        return self._f.get("corr", "")

    @property
    def history(self) -> list[dict[str, Any]]:
        return self._f.get("hist") or []

    def json(self) -> Any:
        """The body decoded as JSON (whatever its content-type says)."""
        return json.loads(self.body)

    def text(self, encoding: str = "utf-8") -> str:
        return self.body.decode(encoding)

    @property
    def settled(self) -> bool:
        return self._settled

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} id={self.id!r} topic={self.topic!r} "
                f"attempt={self.attempt} {len(self.body)} bytes>")
