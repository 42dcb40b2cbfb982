"""The reaper's own process (see ``fulsk_chaos.stack.reaper``): ``python -m fulsk_chaos.host.reaper``.

It reads what to watch from stdin and, once stdin closes, kills and removes whatever is still
registered. One starts beside every stack and exits at every teardown, so this module imports
nothing it does not need: importing the stack package cost each reaper 0.7 s of CPU while the
stack started, and 0.15 s to exit when it stopped.
"""
from __future__ import annotations

import shutil
import signal
import sys
import time
from pathlib import Path

from .procs import service_processes, signal_service


def _remove_docker(containers: list[str], volumes: list[str]) -> None:
    if not containers and not volumes:
        return
    import docker  # only a Docker stack needs it

    from .engine import remove_container, remove_volume

    client = docker.from_env()
    for container_id in containers:
        remove_container(client, container_id)
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
    containers: set[str] = set()
    volumes: set[str] = set()
    for line in sys.stdin:
        verb, _, arg = line.strip().partition(" ")
        if verb == "watch":
            services.add(int(arg))
        elif verb == "forget":
            services.discard(int(arg))
        elif verb == "path":
            paths.append(Path(arg))
        elif verb == "container":
            containers.add(arg)
        elif verb == "forget-container":
            containers.discard(arg)
        elif verb == "volume":
            volumes.add(arg)
        elif verb == "forget-volume":
            volumes.discard(arg)
    reap(services, paths, sorted(containers), sorted(volumes))


if __name__ == "__main__":
    main()
