"""The stack's control socket: stop, start, restart, kill, wipe, scale or reload one of its services from
another process.

Operators' tools (``disaster-recovery.sh``) stop and start the database as ``docker-compose stop
postgres`` would. The stack's services belong to the process that started them (a local process
is its child; a container carries its labels and volume), so other processes ask that process,
through a Unix socket in the stack's directory: ``fulsk-chaos ctl --socket PATH stop postgres``.
One JSON line per request, one JSON line per answer.
"""
from __future__ import annotations

import json
import signal
import socket
import socketserver
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import StackError

# As docker-compose's verbs: restart = stop (grace, then SIGKILL) and start; kill = SIGKILL now.
# reload = SIGHUP to every instance (as `docker-compose kill -s HUP`): nginx re-reads its configuration
# and renews its pooled upstream connections.
ACTIONS = ("status", "stop", "start", "restart", "kill", "wipe", "scale", "reload")
# How often the server looks for a shutdown: close() waits for that look (socketserver's default,
# 0.5 s, was a third of every teardown).
POLL_S = 0.02


class ControlServer:
    """Serves one stack's control socket in a thread; requests are handled one at a time."""

    def __init__(self, stack: Any, path: Path) -> None:
        """``stack``: a Stack (its ``service(name)``), which owns this server."""
        self.stack = stack
        self.path = path
        self.log: list[tuple[float, str, str]] = []  # (time.monotonic(), action, service) of each done
        self._lock = threading.Lock()
        control = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                line = self.rfile.readline()
                try:
                    request = json.loads(line)
                    answer = {"ok": True, **control.act(str(request.get("action")), str(request.get("service")),
                                                        request.get("count"))}
                except Exception as exc:  # noqa: BLE001 - every failure is an answer, not a dead server
                    answer = {"ok": False, "error": str(exc)}
                self.wfile.write(json.dumps(answer).encode() + b"\n")

        self._server = socketserver.ThreadingUnixStreamServer(str(path), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(POLL_S,), name="stack-control",
                                        daemon=True)

    def start(self) -> "ControlServer":
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.path.unlink(missing_ok=True)

    def act(self, action: str, name: str, count: Any = None) -> dict[str, Any]:
        if action not in ACTIONS:
            raise StackError(f"unknown action {action!r}: one of {', '.join(ACTIONS)}")
        with self._lock:
            service = self.stack.service(name)
            if action == "scale":
                if not isinstance(count, int):
                    raise StackError(f"scale {name}: how many instances? (`scale {name} N`)")
                self.stack.scale(name, count)
                self.log.append((time.monotonic(), f"scale {count}", name))
                return {"service": name, "state": service.state(), "instances": self.stack.instances(name)}
            # stop and start, as docker-compose's, act on every instance of a scaled service
            instances = [service, *self.stack.replicas.get(name, [])]
            if action == "stop":
                for instance in instances:
                    instance.stop()
            elif action == "start":
                for instance in instances:
                    if not instance.running:
                        instance.start_healthy()
            elif action == "restart":
                service.restart()
            elif action == "kill":
                if service.running:
                    service.kill(signal.SIGKILL)
            elif action == "reload":
                for instance in instances:
                    if instance.running:
                        instance.kill(signal.SIGHUP)
            elif action == "wipe":
                service.lose_data()
            if action != "status":
                self.log.append((time.monotonic(), action, name))
            return {"service": name, "state": service.state(), "instances": self.stack.instances(name)}


def request(path: Path | str, action: str, service: str, timeout_s: float = 900.0,
            count: int | None = None) -> dict[str, Any]:
    """Ask a stack's control socket; raise StackError with its reason when it refuses."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout_s)
        try:
            conn.connect(str(path))
        except OSError as exc:
            raise StackError(f"no stack answers on {path} ({exc.strerror or exc}): is it still running?") from None
        conn.sendall(json.dumps({"action": action, "service": service, "count": count}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    answer = json.loads(data or b"{}")
    if not answer.get("ok"):
        raise StackError(f"{action} {service}: {answer.get('error', 'no answer')}")
    return answer
