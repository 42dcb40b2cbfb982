"""Prometheus, with the ops guide's alert rules (fixtures/monitoring): scrapes the backend's
/metrics and the exporters, and sends what fires to Alertmanager. Not in every stack:
``stack.monitoring = true`` adds it, Alertmanager and the exporters."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from urllib.parse import parse_qsl, urlsplit

from ..errors import ConfigError
from .spec import HttpClient, ServiceContext, ServiceSpec

NAME = "prometheus"


def seconds(value: float) -> str:
    """A Prometheus duration: whole milliseconds."""
    return f"{round(value * 1000)}ms"


def rules_template(rules: str, fixtures: Path) -> Path:
    """The alert rules' template: ``monitoring.rules``, else the stack's own."""
    template = Path(rules) if rules else fixtures / "monitoring" / "alerts.yml.template"
    if not template.is_file():
        raise ConfigError(f"monitoring.rules: {template} is not a file (a Prometheus rules template; empty: the "
                          f"stack's own, fixtures/monitoring/alerts.yml.template)")
    return template


@dataclass(frozen=True)
class AlertRule:
    """One alerting rule as an operator reads it: its name, severity and annotations."""
    alert: str
    severity: str
    summary: str = ""
    runbook_url: str = ""  # a runbook file, relative to the project (``?name=value``: the guide's placeholders)
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def runbook_path(self) -> str:
        return urlsplit(self.runbook_url).path

    @property
    def runbook_params(self) -> dict[str, str]:
        """The runbook's placeholders as the link fills them in (``service-restart.yml?service_name=redis``)."""
        return dict(parse_qsl(urlsplit(self.runbook_url).query))


def alert_rules(template_text: str) -> list[AlertRule]:
    """The alerting rules of a rules template (its ``$window`` and such left as written)."""
    import yaml  # not at the top: bootstrap reads this package with the standard library alone
    data = yaml.safe_load(Template(template_text).safe_substitute()) or {}
    found = []
    for group in data.get("groups") or []:
        for rule in group.get("rules") or []:
            if "alert" not in rule:
                continue
            notes = {str(k): str(v) for k, v in (rule.get("annotations") or {}).items()}
            found.append(AlertRule(str(rule["alert"]), str((rule.get("labels") or {}).get("severity", "")),
                                   notes.get("summary", ""), notes.get("runbook_url", ""), notes))
    return found


def render_rules(ctx: ServiceContext) -> str:
    m = ctx.settings.monitoring
    return Template(rules_template(m.rules, ctx.fixtures).read_text()).substitute(
        window=seconds(m.window_s), **{"for": seconds(m.for_s)}, for_sustained=seconds(m.for_sustained_s),
        stale_after=f"{m.stale_after_s:g}", behind_after=f"{m.behind_after_s:g}", backlog=str(m.backlog_max))


def check_ready(client: HttpClient, path: str = "/-/ready") -> None:
    try:
        response = client.get(path, timeout=3)
        if response.status_code != 200:
            raise RuntimeError(f"{path} answered {response.status_code} {response.text[:200]}")
    finally:
        client.close()


# One offline image for all of monitoring (Debian's packages): one build, not five.
MONITORING_IMAGE = "fulsk-chaos/monitoring:bookworm"
MONITORING_PACKAGES = ("prometheus", "prometheus-alertmanager", "prometheus-postgres-exporter",
                       "prometheus-redis-exporter", "prometheus-node-exporter", "prometheus-blackbox-exporter")


class HttpService(ServiceSpec):
    """A monitoring server: reached over HTTP, healthy when ``health_path`` answers 200."""
    health_path = "/-/ready"
    offline_image = MONITORING_IMAGE
    packages = MONITORING_PACKAGES
    profile = "monitoring"
    instrument = True
    serves = ("http",)

    def address(self, ctx: ServiceContext) -> str:
        return f"http://127.0.0.1:{ctx.port}"

    def client(self, ctx: ServiceContext) -> HttpClient:
        return HttpClient(self.address(ctx))

    def check(self, ctx: ServiceContext) -> None:
        check_ready(self.client(ctx), self.health_path)


class Prometheus(HttpService):
    name = NAME
    commands = {"prometheus": "prometheus", "promtool": "prometheus"}
    registry_image = "prom/prometheus:v2.42.0"

    def prepare(self, ctx: ServiceContext) -> None:
        m, ports = ctx.settings.monitoring, ctx.topology.ports
        contract = ctx.contract
        config = Template((ctx.fixtures / "monitoring" / "prometheus.yml.template").read_text()).substitute(
            scrape_interval=seconds(m.scrape_interval_s), scrape_timeout=seconds(m.scrape_interval_s),
            evaluation_interval=seconds(m.evaluation_interval_s), rules=ctx.workdir / "alerts.yml",
            alertmanager=f"127.0.0.1:{ports['alertmanager']}", backend=f"127.0.0.1:{ports['backend']}",
            frontend=f"http://127.0.0.1:{ports['frontend']}",
            # what the backend's contract says of its metrics and of the API users read
            metrics_path=contract.capabilities.metrics or "/metrics", api_path=contract.reads.listing.path,
            **{f"{name.replace('-', '_')}": f"127.0.0.1:{ports[name]}"
               for name in ("postgres-exporter", "redis-exporter", "node-exporter", "blackbox-exporter")})
        (ctx.workdir / "prometheus.yml").write_text(config)
        (ctx.workdir / "alerts.yml").write_text(render_rules(ctx))
        (ctx.workdir / "data").mkdir(exist_ok=True)

    def argv(self, ctx: ServiceContext) -> list[str]:
        return [ctx.exe("prometheus", "/usr/bin/prometheus"), f"--config.file={ctx.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={ctx.workdir / 'data'}", f"--web.listen-address=127.0.0.1:{ctx.port}",
                "--storage.tsdb.retention.time=1d", "--log.level=warn"]

    def ready(self, ctx: ServiceContext) -> None:
        """Every target scraped, and up: a monitored stack is not ready before its monitoring sees
        it (Prometheus takes its first targets some seconds after it starts)."""
        self.check(ctx)
        client = self.client(ctx)
        try:
            targets = client.get("/api/v1/targets", timeout=3).json()["data"]["activeTargets"]
        finally:
            client.close()
        down = [f"{t['labels']['job']}: {t['health']} {t.get('lastError', '')}".rstrip()
                for t in targets if t.get("health") != "up"]
        if not targets or down:
            raise RuntimeError(f"targets not scraped yet: {'; '.join(down) or 'none known'}")


PROMETHEUS = SPEC = Prometheus()
