"""The Prometheus exporters Debian packages for the stack's servers: PostgreSQL, Redis and the
host. Each runs beside its server as a sidecar does (connecting to it directly, not through an
edge's proxy: what it reports is the server's own state). nginx exports nothing: the blackbox
exporter probes the frontend from outside, as users reach it."""
from __future__ import annotations

import shutil
from string import Template

from .postgres import dsn
from .prometheus import HttpService
from .spec import ServiceContext


class Exporter(HttpService):
    health_path = "/metrics"

    def listen(self, ctx: ServiceContext) -> str:
        return f"--web.listen-address=127.0.0.1:{ctx.port}"


class PostgresExporter(Exporter):
    name = "postgres-exporter"
    commands = {"prometheus-postgres-exporter": "prometheus-postgres-exporter"}
    registry_image = "quay.io/prometheuscommunity/postgres-exporter:v0.11.1"

    def env(self, ctx: ServiceContext) -> dict[str, str]:
        return {"DATA_SOURCE_NAME": dsn(ctx.topology, ctx.topology.ports["postgres"]) + "?sslmode=disable"}

    def prepare(self, ctx: ServiceContext) -> None:
        """The Fulsk data as the database sees it (fixtures/monitoring/queries.yml.template), in
        the backend contract's SQL: the newest reading stored, whatever the backend's tables."""
        sql = ctx.contract.ledger.newest.replace("\\", "\\\\").replace('"', '\\"')  # inside YAML's double quotes
        (ctx.workdir / "queries.yml").write_text(Template(
            (ctx.fixtures / "monitoring" / "queries.yml.template").read_text()).substitute(newest_reading_sql=sql))

    def argv(self, ctx: ServiceContext) -> list[str]:
        return [ctx.exe("prometheus-postgres-exporter", "/usr/bin/prometheus-postgres-exporter"), self.listen(ctx),
                f"--extend.query-path={ctx.workdir / 'queries.yml'}", "--log.level=warn"]


class RedisExporter(Exporter):
    name = "redis-exporter"
    commands = {"prometheus-redis-exporter": "prometheus-redis-exporter"}
    registry_image = "oliver006/redis_exporter:v1.45.0"

    def argv(self, ctx: ServiceContext) -> list[str]:
        return [ctx.exe("prometheus-redis-exporter", "/usr/bin/prometheus-redis-exporter"),
                f"--redis.addr=redis://127.0.0.1:{ctx.topology.ports['redis']}",
                self.listen(ctx)]


class NodeExporter(Exporter):
    name = "node-exporter"
    commands = {"prometheus-node-exporter": "prometheus-node-exporter"}
    registry_image = "prom/node-exporter:v1.5.0"

    def argv(self, ctx: ServiceContext) -> list[str]:
        return [ctx.exe("prometheus-node-exporter", "/usr/bin/prometheus-node-exporter"), self.listen(ctx),
                "--collector.disable-defaults", "--collector.cpu", "--collector.meminfo",
                "--collector.filesystem", "--collector.loadavg", "--log.level=warn"]


class BlackboxExporter(Exporter):
    name = "blackbox-exporter"
    commands = {"prometheus-blackbox-exporter": "prometheus-blackbox-exporter"}
    registry_image = "prom/blackbox-exporter:v0.23.0"
    # A probe's timeout is the scrape's less this offset (the exporter's default, 0.5 s, would leave
    # nothing of a drill's 0.5 s scrapes).
    timeout_offset_s = 0.05

    def prepare(self, ctx: ServiceContext) -> None:
        shutil.copyfile(ctx.fixtures / "monitoring" / "blackbox.yml", ctx.workdir / "blackbox.yml")

    def argv(self, ctx: ServiceContext) -> list[str]:
        return [ctx.exe("prometheus-blackbox-exporter", "/usr/bin/prometheus-blackbox-exporter"),
                f"--config.file={ctx.workdir / 'blackbox.yml'}", f"--timeout-offset={self.timeout_offset_s}",
                self.listen(ctx), "--log.level=warn"]


EXPORTERS = SPECS = (PostgresExporter(), RedisExporter(), NodeExporter(), BlackboxExporter())
