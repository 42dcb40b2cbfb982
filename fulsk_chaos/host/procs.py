"""What is running, read from /proc: the ground truth for 'left nothing behind'."""
from __future__ import annotations

import os
import select
import subprocess
from pathlib import Path


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state, ppid, pgrp, ...); None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()


def _live_processes() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, pgrp) of every live process. A zombie holds no port, file or memory: skipped."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) and fields[0] not in ("Z", "X"):
            table[int(entry.name)] = (int(fields[1]), int(fields[2]))
    return table


def service_processes(pid: int) -> list[int]:
    """A service's processes: its process group and every descendant of its main process.

    Both are needed: PostgreSQL's backends each call setsid(), so they leave the group but stay
    children of the postmaster; a worker re-parented after its parent died stays in the group.
    """
    table = _live_processes()
    members = {p for p, (_, pgrp) in table.items() if pgrp == pid}
    if pid in table:
        members.add(pid)
    frontier = set(members)
    while frontier:
        frontier = {p for p, (ppid, _) in table.items() if ppid in frontier and p not in members}
        members |= frontier
    return sorted(members)


def signal_service(pid: int, sig: int) -> list[int]:
    """Send ``sig`` to every process of the service, main process first (so it forks no more)."""
    members = service_processes(pid)
    for target in sorted(members, key=lambda p: p != pid):
        try:
            os.kill(target, sig)
        except (ProcessLookupError, PermissionError):
            pass
    return members


def _socket_inodes(pids: list[int]) -> set[str]:
    inodes = set()
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    return inodes


def listening_ports(pids: list[int] | None = None) -> set[int]:
    """TCP ports in LISTEN state on this host (IPv4 and IPv6); with ``pids``, only those these
    processes listen on (instances sharing a port with SO_REUSEPORT each have a socket of their own)."""
    owned = None if pids is None else _socket_inodes(pids)
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[3] == "0A" and (owned is None or parts[9] in owned):  # TCP_LISTEN
                ports.add(int(parts[1].rsplit(":", 1)[1], 16))
    return ports


def identity(pid: int) -> tuple[int, int] | None:
    """(pid, start time): names a process even after its pid is reused. None if it is gone or a zombie."""
    fields = _stat(pid)
    return None if fields is None or fields[0] in ("Z", "X") else (pid, int(fields[19]))


def survivors(identities: set[tuple[int, int]]) -> list[int]:
    """Which of these processes still run."""
    return sorted(pid for pid, start in identities if identity(pid) == (pid, start))


def state(pid: int) -> str | None:
    """The process state letter (R, S, D, T, ...), None if it is gone."""
    fields = _stat(pid)
    return fields[0] if fields else None


def wait_exited(proc: subprocess.Popen, timeout_s: float) -> int:
    """``proc.wait(timeout_s)``, returning the moment the child exits: Popen.wait polls, up to
    50 ms late each time, and a teardown waits for a dozen processes. Raises TimeoutExpired."""
    if proc.poll() is None:
        try:
            pidfd = os.pidfd_open(proc.pid)
        except OSError:  # no pidfd on this kernel: Popen's own polling
            return proc.wait(timeout=timeout_s)
        try:
            poller = select.poll()  # not select(): a busy test process may hold fds past 1024
            poller.register(pidfd, select.POLLIN)  # readable once the process has exited
            poller.poll(max(timeout_s, 0) * 1000)
        finally:
            os.close(pidfd)
        if proc.poll() is None:
            raise subprocess.TimeoutExpired(proc.args, timeout_s)
    return proc.wait()
