"""Run the real ferryd for tests: 127.0.0.1, port 0 (it writes the bound
port to --port-file), a temporary data dir; stopped by PID."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def ferryd_path() -> str:
    return os.environ.get("FERRYD") or str(REPO / "build" / "broker" / "ferryd")


class Ferryd:
    def __init__(self, *args: str, tmp: str | None = None) -> None:
        self.dir = Path(tmp or tempfile.mkdtemp(prefix="ferry-py-"))
        self.data = self.dir / "data"
        self.portfile = self.dir / "port"
        self.log = self.dir / "ferryd.log"
        self.args = list(args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self, port: int = 0) -> Ferryd:
        assert self.proc is None
        if self.portfile.exists():
            self.portfile.unlink()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [ferryd_path(), "--listen", "127.0.0.1", "--port", str(port),
                 "--port-file", str(self.portfile), "--data-dir", str(self.data),
                 *self.args],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                text = self.portfile.read_text().strip()
                if text and int(text) > 0:
                    self.port = int(text)
                    return self
            except (FileNotFoundError, ValueError):
                pass
            if self.proc.poll() is not None:
                self.proc = None
                raise RuntimeError(f"ferryd exited at start-up, see {self.log}:\n"
                                   + self.log.read_text()[-2000:])
            time.sleep(0.005)
        self.kill()
        raise RuntimeError("ferryd did not report its port within 10 s")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Stop this ferryd (by its PID) and reap it."""
        if self.proc is None:
            return
        try:
            os.kill(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def restart(self, same_port: bool = True) -> None:
        """Start again on the same data dir (and port)."""
        port = self.port if same_port else 0
        deadline = time.monotonic() + 10
        while True:
            try:
                self.start(port)
                return
            except RuntimeError:
                # The port may still be held for a moment.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
