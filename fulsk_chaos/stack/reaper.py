"""The stack's reaper: a watchdog that outlives the test process if it must (as Ryuk does).

The stack registers every service process and directory it creates by writing lines to the
reaper's stdin. When that pipe closes - a clean teardown, an exception, Ctrl-C, or the test
process being SIGKILLed - the reaper kills whatever is still registered and removes the
directories. It runs in a session of its own, so a signal to the test's process group spares it.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from ..host.procs import service_processes, signal_service


class Reaper:
    """The stack's side of the pipe."""

    def __init__(self) -> None:
        package_root = str(Path(__file__).resolve().parents[2])
        self._proc = subprocess.Popen(
            [sys.executable, "-c", "from fulsk_chaos.stack.reaper import main; main()"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, start_new_session=True, text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))})
        assert self._proc.stdin is not None
        self._pipe: IO[str] = self._proc.stdin

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _send(self, verb: str, arg: object) -> None:
        self._pipe.write(f"{verb} {arg}\n")
        self._pipe.flush()

    def watch(self, pid: int) -> None:
        """Watch a service's main process (and so its group and descendants)."""
        self._send("watch", pid)

    def forget(self, pid: int) -> None:
        self._send("forget", pid)

    def watch_container(self, container_id: str) -> None:
        self._send("container", container_id)

    def watch_volume(self, name: str) -> None:
        self._send("volume", name)

    def watch_path(self, path: Path) -> None:
        self._send("path", path)

    def close(self, timeout_s: float = 30.0) -> None:
        """Hand over: the reaper cleans up whatever is still registered, then exits."""
        if not self._pipe.closed:
            self._pipe.close()
        self._proc.wait(timeout=timeout_s)


def _remove_docker(containers: list[str], volumes: list[str]) -> None:
    if not containers and not volumes:
        return
    import docker  # only a Docker stack needs it
    from docker.errors import NotFound

    from ..host.engine import remove_volume

    client = docker.from_env()
    for container_id in containers:
        try:
            client.containers.get(container_id).remove(force=True, v=True)
        except NotFound:
            pass
    for name in volumes:
        remove_volume(client, name)


def reap(services: set[int], paths: list[Path], containers: list[str] = (), volumes: list[str] = (),
         deadline_s: float = 20.0) -> None:
    try:
        _remove_docker(list(containers), list(volumes))
    except Exception as exc:  # noqa: BLE001 - still kill the processes and remove the paths
        print(f"fulsk-chaos reaper: {exc}", file=sys.stderr)
    end = time.monotonic() + deadline_s
    while any(service_processes(pid) for pid in services) and time.monotonic() < end:
        for pid in services:
            signal_service(pid, signal.SIGKILL)
        time.sleep(0.05)
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    services: set[int] = set()
    paths: list[Path] = []
    containers: list[str] = []
    volumes: list[str] = []
    for line in sys.stdin:
        verb, _, arg = line.strip().partition(" ")
        if verb == "watch":
            services.add(int(arg))
        elif verb == "forget":
            services.discard(int(arg))
        elif verb == "path":
            paths.append(Path(arg))
        elif verb == "container":
            containers.append(arg)
        elif verb == "volume":
            volumes.append(arg)
    reap(services, paths, containers, volumes)

