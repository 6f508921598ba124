from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ferryd import Ferryd, ferryd_path  # noqa: E402


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Ferryd]:
    if not Path(ferryd_path()).exists():
        pytest.fail(f"ferryd not found at {ferryd_path()} (set FERRYD)")
    d = Ferryd("--fsync", "never", tmp=str(tmp_path))
    d.start()
    try:
        yield d
    finally:
        d.kill()


@pytest.fixture
def durable_broker(tmp_path: Path) -> Iterator[Ferryd]:
    """fsync=always (the default): confirms mean on disk."""
    d = Ferryd(tmp=str(tmp_path))
    d.start()
    try:
        yield d
    finally:
        d.kill()
