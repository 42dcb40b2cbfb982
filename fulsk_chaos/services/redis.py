"""Redis 7: the cache."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .spec import ServiceContext, ServiceSpec, hand_over

if TYPE_CHECKING:  # imported where used: bootstrap.sh reads the catalogue before pip installs them
    import redis

# Its runtime-settable memory limits: the start values, and what a memory-pressure fault must restore.
MEMORY = {"maxmemory": str(256 * 1024 * 1024), "maxmemory-policy": "allkeys-lru"}


class Redis(ServiceSpec):
    name = "redis"
    registry_image = "redis:7"
    offline_image = "fulsk-chaos/redis:7"
    packages = ("redis-server",)
    serves = ("redis",)
    compose_service = "redis"
    commands = {"redis-server": "redis-server", "redis-cli": "redis-tools"}

    def image_lines(self, fixtures: Path) -> list[str]:
        return ["COPY redis-cli.sh /usr/local/bin/redis-cli", "RUN chmod 0755 /usr/local/bin/redis-cli"]

    def image_files(self, fixtures: Path) -> dict[str, Path]:
        return {"redis-cli.sh": fixtures / "images" / "redis-cli.sh"}

    def env(self, ctx: ServiceContext) -> dict[str, str]:
        return {"REDIS_PORT": str(ctx.port)}  # for the image's redis-cli (the guide's commands)

    def prepare(self, ctx: ServiceContext) -> None:
        hand_over(ctx.workdir, None, ctx.in_container)  # the image's redis user writes its snapshots here

    def snapshot_path(self, ctx: ServiceContext):
        return ctx.workdir / "dump.rdb"

    def argv(self, ctx: ServiceContext) -> list[str]:
        return [ctx.exe("redis-server", "/usr/bin/redis-server"),
                "--port", str(ctx.port), "--bind", "127.0.0.1", "--dir", str(ctx.workdir),
                "--daemonize", "no", "--save", "300 10", "--dbfilename", self.snapshot_path(ctx).name,
                "--appendonly", "no", "--maxmemory", MEMORY["maxmemory"],
                "--maxmemory-policy", MEMORY["maxmemory-policy"], "--loglevel", "warning", "--logfile", ""]

    def client(self, ctx: ServiceContext) -> redis.Redis:
        import redis
        return redis.Redis(host="127.0.0.1", port=ctx.port, socket_timeout=2, socket_connect_timeout=2)

    def address(self, ctx: ServiceContext) -> str:
        return f"redis://127.0.0.1:{ctx.port}/0"

    def check(self, ctx: ServiceContext) -> None:
        client = self.client(ctx)
        try:
            if not client.ping():
                raise RuntimeError("PING not answered with PONG")
        finally:
            client.close()

    def drift(self, ctx: ServiceContext) -> list[str]:
        client = self.client(ctx)
        try:
            now = {key: client.config_get(key)[key] for key in MEMORY}
        finally:
            client.close()
        return [f"redis {key} is {now[key]}, started as {value}" for key, value in MEMORY.items() if now[key] != value]


SPEC = Redis()
