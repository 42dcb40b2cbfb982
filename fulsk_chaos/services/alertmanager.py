"""Alertmanager: routes every alert Prometheus fires by its severity to the channels the ops
guide escalates to, each a webhook the framework runs (the stack's AlertReceiver, one path per
channel), resolved ones included, so each notification is recorded with its channel and time."""
from __future__ import annotations

from string import Template

from .prometheus import HttpService, seconds
from .spec import ServiceContext

RECEIVER = "alert-receiver"  # the topology's name for the framework's webhook


class Alertmanager(HttpService):
    name = "alertmanager"
    commands = {"prometheus-alertmanager": "prometheus-alertmanager", "amtool": "prometheus-alertmanager"}
    host_ports = (RECEIVER,)  # its webhook: the framework's, on the host
    registry_image = "prom/alertmanager:v0.25.0"

    def prepare(self, ctx: ServiceContext) -> None:
        m = ctx.settings.monitoring
        config = Template((ctx.fixtures / "monitoring" / "alertmanager.yml.template").read_text()).substitute(
            group_wait=seconds(m.group_wait_s), group_interval=seconds(m.group_interval_s),
            repeat_interval=seconds(m.repeat_interval_s),
            webhook=f"http://127.0.0.1:{ctx.topology.ports[RECEIVER]}/alerts")
        (ctx.workdir / "alertmanager.yml").write_text(config)
        (ctx.workdir / "data").mkdir(exist_ok=True)

    def argv(self, ctx: ServiceContext) -> list[str]:
        return [ctx.exe("prometheus-alertmanager", "/usr/bin/prometheus-alertmanager"),
                f"--config.file={ctx.workdir / 'alertmanager.yml'}", f"--storage.path={ctx.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{ctx.port}",
                "--cluster.listen-address=", "--log.level=warn"]  # no gossip port: one instance, loopback only


ALERTMANAGER = SPEC = Alertmanager()
