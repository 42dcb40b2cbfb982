"""The stack's reaper: a watchdog that outlives the test process if it must (as Ryuk does).

The stack registers every service process and directory it creates by writing lines to the
reaper's stdin. When that pipe closes - a clean teardown, an exception, Ctrl-C, or the test
process being SIGKILLed - the reaper kills whatever is still registered and removes the
directories. It runs in a session of its own, so a signal to the test's process group spares it.
Its process is ``fulsk_chaos.host.reaper``.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

from ..host.procs import wait_exited


class Reaper:
    """The stack's side of the pipe."""

    def __init__(self) -> None:
        package_root = str(Path(__file__).resolve().parents[2])
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "fulsk_chaos.host.reaper"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, start_new_session=True, text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))})
        assert self._proc.stdin is not None
        self._pipe: IO[str] = self._proc.stdin
        self._lock = threading.Lock()  # services stop in parallel: one line at a time

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _send(self, verb: str, arg: object) -> None:
        with self._lock:
            self._pipe.write(f"{verb} {arg}\n")
            self._pipe.flush()

    def watch(self, pid: int) -> None:
        """Watch a service's main process (and so its group and descendants)."""
        self._send("watch", pid)

    def forget(self, pid: int) -> None:
        self._send("forget", pid)

    def watch_container(self, container_id: str) -> None:
        self._send("container", container_id)

    def forget_container(self, container_id: str) -> None:
        """Removed already: the reaper need not ask the engine about it (nor import its client)."""
        self._send("forget-container", container_id)

    def watch_volume(self, name: str) -> None:
        self._send("volume", name)

    def forget_volume(self, name: str) -> None:
        self._send("forget-volume", name)

    def watch_path(self, path: Path) -> None:
        self._send("path", path)

    def close(self, timeout_s: float = 30.0) -> None:
        """Hand over: the reaper cleans up whatever is still registered, then exits."""
        with self._lock:
            if not self._pipe.closed:
                self._pipe.close()
        wait_exited(self._proc, timeout_s)

