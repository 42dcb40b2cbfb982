"""Offline images: a Debian base made with debootstrap and ``docker import``, then one image per
service, with Debian's packages fetched through this host's own apt sources (no mirror is named
in the project). The Dockerfile of each image comes from the same ServiceSpec the local provider
runs. Building is incremental: an image whose inputs have not changed is not rebuilt.
"""
from __future__ import annotations

import hashlib
import io
import re
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import docker
from docker.errors import BuildError, ImageNotFound

from ..errors import FulskChaosError
from ..host.engine import LABEL, engine
from ..services import CATALOGUE, Catalogue, ServiceSpec

BASE_IMAGE = "fulsk-chaos/base:bookworm"


class ImageBuildError(FulskChaosError, RuntimeError):
    """An offline image could not be built; the message says which and why."""
INPUTS_LABEL = "org.fulsk-chaos.inputs"
SOURCES_IN_IMAGE = "/etc/apt/sources.list.d/host.sources"


@dataclass(frozen=True)
class BuildResult:
    image: str
    id: str
    built: bool       # False: it was up to date
    seconds: float


def image_for(spec: ServiceSpec, offline: bool, overrides: dict[str, str]) -> str:
    return overrides.get(spec.name) or (spec.offline_image if offline else spec.registry_image)


def _codename() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip('"')
    raise ImageBuildError("cannot tell this host's Debian release (no VERSION_CODENAME in /etc/os-release)")


def host_debian_sources(codename: str, apt: Path = Path("/etc/apt")) -> tuple[str, str]:
    """This host's Debian apt sources, as (mirror URI for ``codename``, deb822 text for the image)."""
    entries: list[dict[str, str]] = []
    for path in sorted(apt.glob("sources.list.d/*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields = dict(re.findall(r"^(\w[\w-]*):\s*(.+)$", stanza, re.M))
            if fields.get("Types", "").split()[:1] == ["deb"] and fields.get("Enabled", "yes") != "no":
                entries.append(fields)
    for path in [apt / "sources.list", *sorted(apt.glob("sources.list.d/*.list"))]:
        if path.is_file():
            for line in path.read_text().splitlines():
                m = re.match(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)\s+(.+)$", line.strip())
                if m:
                    entries.append({"Types": "deb", "URIs": m[1], "Suites": m[2], "Components": m[3]})
    debian = [e for e in entries if any(s.startswith(codename) for s in e.get("Suites", "").split())]
    main = [e for e in debian if codename in e.get("Suites", "").split()]
    if not main:
        raise ImageBuildError(f"no apt source for Debian {codename} on this host: the offline build uses the "
                           f"host's apt sources (/etc/apt/sources.list*)")
    keep = ("Types", "URIs", "Suites", "Components", "Signed-By")
    text = "\n\n".join("\n".join(f"{k}: {e[k]}" for k in keep if k in e) for e in debian) + "\n"
    return main[0]["URIs"].split()[0], text


def _existing(client: docker.DockerClient, tag: str, inputs: str) -> str | None:
    try:
        image = client.images.get(tag)
    except ImageNotFound:
        return None
    return image.id if image.labels.get(INPUTS_LABEL) == inputs else None


def build_base(client: docker.DockerClient, log: Callable[[str], None]) -> BuildResult:
    start = time.monotonic()
    codename = _codename()
    mirror, sources = host_debian_sources(codename)
    inputs = hashlib.sha256(f"{codename}\n{sources}\nminbase".encode()).hexdigest()[:16]
    if found := _existing(client, BASE_IMAGE, inputs):
        return BuildResult(BASE_IMAGE, found, False, time.monotonic() - start)
    if shutil.which("debootstrap") is None:
        raise ImageBuildError("debootstrap not found: run `bash scripts/bootstrap.sh --docker`")
    with tempfile.TemporaryDirectory(prefix="fulsk-chaos-base-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        log(f"debootstrap {codename} (minbase) from the host's apt sources")
        done = subprocess.run(["debootstrap", "--variant=minbase", codename, str(rootfs), mirror],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            raise ImageBuildError(f"debootstrap {codename} from {mirror} failed ({done.returncode}): "
                                  f"{done.stderr.strip()[-300:]}")
        (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
        (rootfs / SOURCES_IN_IMAGE.lstrip("/")).write_text(sources)
        policy = rootfs / "usr/sbin/policy-rc.d"  # packages must not try to start their daemons
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True)
        log(f"docker import -> {BASE_IMAGE}")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            ["docker", "import", "-c", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "-c", f"LABEL {LABEL}=true {INPUTS_LABEL}={inputs}", "-", BASE_IMAGE],
            stdin=tar.stdout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if tar.wait() != 0 or imported.returncode != 0:
            raise ImageBuildError(f"docker import of the debootstrap'd root failed: {imported.stderr.strip()[-300:]}")
    return BuildResult(BASE_IMAGE, client.images.get(BASE_IMAGE).id, True, time.monotonic() - start)


def dockerfile(spec: ServiceSpec, fixtures: Path, base: str = BASE_IMAGE) -> str:
    lines = [f"FROM {base}"]
    if spec.packages:
        lines.append("RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
                     f"--no-install-recommends {' '.join(spec.packages)} && rm -rf /var/lib/apt/lists/*")
    lines += spec.image_lines(fixtures)
    lines.append(f"STOPSIGNAL {signal.Signals(spec.stop_signal).name}")
    return "\n".join(lines) + "\n"


def _context(spec: ServiceSpec, fixtures: Path, text: str) -> tuple[bytes, str]:
    """The build context as a tar, and a digest of everything in it."""
    digest = hashlib.sha256(text.encode())
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        data = text.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        for name, source in sorted(spec.image_files(fixtures).items()):
            paths = [source] if source.is_file() else sorted(
                p for p in source.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
            for path in paths:
                arcname = name if path == source else f"{name}/{path.relative_to(source)}"
                digest.update(arcname.encode() + path.read_bytes())
                tar.add(path, arcname=arcname)
    return buffer.getvalue(), digest.hexdigest()[:16]


def build_service(client: docker.DockerClient, spec: ServiceSpec, fixtures: Path, base_id: str,
                  log: Callable[[str], None]) -> BuildResult:
    start = time.monotonic()
    context, digest = _context(spec, fixtures, dockerfile(spec, fixtures))
    inputs = hashlib.sha256(f"{base_id}\n{digest}".encode()).hexdigest()[:16]
    if found := _existing(client, spec.offline_image, inputs):
        return BuildResult(spec.offline_image, found, False, time.monotonic() - start)
    log(f"building {spec.offline_image}")
    try:
        image, _ = client.images.build(
            fileobj=io.BytesIO(context), custom_context=True, tag=spec.offline_image, network_mode="host",
            labels={LABEL: "true", INPUTS_LABEL: inputs}, rm=True, forcerm=True)
    except BuildError as exc:
        tail = " | ".join(str(line.get("stream", line.get("error", ""))).strip()
                          for line in list(exc.build_log)[-5:] if isinstance(line, dict))
        raise ImageBuildError(f"building {spec.offline_image} failed: {exc.msg} ({tail})") from None
    return BuildResult(spec.offline_image, image.id, True, time.monotonic() - start)


def build_images(fixtures: Path, log: Callable[[str], None] = print,
                 client: docker.DockerClient | None = None, catalogue: Catalogue = CATALOGUE) -> list[BuildResult]:
    """Build the base and every service's offline image; return what was built and what was current.
    One build at a time on this host (parallel drills' workers each check their images at start):
    the others wait, then find them current."""
    import fcntl
    client = client or engine()
    with open(Path(tempfile.gettempdir()) / "fulsk-chaos-images.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        base = build_base(client, log)
        results = [base]
        built: set[str] = set()
        for spec in catalogue.specs:  # every profile's too
            if spec.offline_image not in built:  # monitoring's servers share one image, the standby the primary's
                built.add(spec.offline_image)
                results.append(build_service(client, spec, fixtures, base.id, log))
    return results
