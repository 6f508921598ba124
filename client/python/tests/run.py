"""Run the Python client's tests (meson test entry point).

Exits 77 (skipped) when pytest or msgpack cannot be imported."""

import os
import sys

try:
    import msgpack  # noqa: F401
    import pytest
except ImportError as e:
    print(f"skipping the Python client tests: {e}", file=sys.stderr)
    sys.exit(77)

here = os.path.dirname(os.path.abspath(__file__))
args = sys.argv[1:] or [here]
sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", "--rootdir", here, *args]))
