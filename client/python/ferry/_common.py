"""Argument handling shared by the blocking and the asyncio client."""

from __future__ import annotations

import random
import socket
from typing import Any, Iterable, Mapping

from . import codec
from .message import to_body

# Unsent bytes the kernel may hold for us: past them a write waits.  Every
# byte queued on this host is latency once ferryd slows a producer, so the
# kernel's own autotuned megabytes are bounded too (PROTOCOL.md section 1,
# "Keep the producer's side short").  Only unsent bytes count, so a long
# network path still fills its window.
NOTSENT_LOWAT = 128 * 1024


def tune_socket(sock: Any) -> None:
    """Options for a freshly connected socket, either client's."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    lowat = getattr(socket, "TCP_NOTSENT_LOWAT", None)
    if lowat is not None:  # Linux; elsewhere the kernel's default
        try:
            sock.setsockopt(socket.IPPROTO_TCP, lowat, NOTSENT_LOWAT)
        except OSError:
            pass


MODES = {"at-least-once": codec.MODE_AT_LEAST_ONCE,
         "at-most-once": codec.MODE_AT_MOST_ONCE}


def ms(seconds: float | None, what: str, limit: int = codec.MAX_DELAY_MS) -> int | None:
    """Seconds (float) to whole milliseconds, None staying None."""
    if seconds is None:
        return None
    v = int(round(seconds * 1000))
    if v < 0 or v > limit:
        raise ValueError(f"{what} out of range: {seconds} s")
    return v


def message_opts(*, id: str | None = None, headers: Mapping[str, str] | None = None,
                 delay: float | None = None, ttl: float | None = None,
                 reply_to: str | None = None, corr: str | None = None
                 ) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if id is not None:
        opts["id"] = id
    if headers:
        opts["hdr"] = dict(headers)
    d = ms(delay, "delay")
    if d:
        opts["delay"] = d
    t = ms(ttl, "ttl")
    if t:
        opts["ttl"] = t
    if reply_to:
        opts["reply_to"] = reply_to
    if corr:
        opts["corr"] = corr
    return opts


def prepare(data: Any, opts: dict[str, Any]) -> bytes:
    """Body of `data`; a JSON body adds its content-type to opts["hdr"]."""
    body, hdr = to_body(data, opts.get("hdr"))
    if hdr:
        opts["hdr"] = hdr
    return body


def frame_opts(group: str | None, mandatory: bool) -> dict[str, Any] | None:
    if not group and not mandatory:
        return None
    fo: dict[str, Any] = {}
    if group:
        fo["group"] = group
    if mandatory:
        fo["mandatory"] = True
    return fo


def batch_items(items: Iterable[Any]) -> list[tuple[Any, dict[str, Any]]]:
    """publish_batch() items: each is data, or (data, {id, headers, delay,
    ttl, reply_to, corr})."""
    out = []
    for it in items:
        if isinstance(it, tuple):
            data, kw = it
            out.append((data, message_opts(**kw)))
        else:
            out.append((it, {}))
    return out


def sub_opts(group: str | None, prefetch: int, ack_timeout: float | None,
             mode: str, ephemeral: bool, max_attempts: int | None,
             extra: Mapping[str, Any] | None) -> dict[str, Any]:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {sorted(MODES)}, not {mode!r}")
    opts: dict[str, Any] = {}
    if ephemeral:
        opts["ephemeral"] = True
    elif group:
        opts["group"] = group
    if prefetch:
        opts["prefetch"] = int(prefetch)
    if MODES[mode]:
        opts["mode"] = MODES[mode]
    a = ms(ack_timeout, "ack_timeout", 0xFFFFFFFF)
    if a:
        opts["ack_timeout"] = a
    if max_attempts:
        opts["max_attempts"] = int(max_attempts)
    if extra:
        # Group settings (ttl in seconds, ttl_drop, max_msgs, max_bytes,
        # overflow) for the SUB that creates the group.
        for k, v in extra.items():
            if k == "ttl":
                v = ms(v, "ttl")
            opts[k] = v
    return opts


def backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter: half fixed, half random."""
    d = min(cap, base * (2 ** min(attempt, 30)))
    return float(d / 2 + random.uniform(0, d / 2))
