"""Offline image definitions come from the service specs and the host's own apt sources."""
from __future__ import annotations

from pathlib import Path

import pytest

from fulsk_chaos.images.build import dockerfile, host_debian_sources
from fulsk_chaos.services import CATALOGUE, FIXTURES
from fulsk_chaos.services.postgres import Postgres
from fulsk_chaos.services.toxiproxy import Toxiproxy


def test_every_service_has_a_registry_and_an_offline_image():
    for spec in CATALOGUE.specs:
        assert spec.registry_image and spec.offline_image.startswith("fulsk-chaos/")
        for source in spec.image_files(FIXTURES).values():
            assert source.exists(), f"{spec.name}: {source}"


def test_a_dockerfile_installs_the_specs_packages_and_keeps_its_stop_signal():
    text = dockerfile(Postgres(), FIXTURES)
    assert text.startswith("FROM fulsk-chaos/base:bookworm\n")
    assert "--no-install-recommends postgresql-15 " in text
    assert "STOPSIGNAL SIGINT" in text and 'ENTRYPOINT ["docker-entrypoint.sh"]' in text
    assert "COPY toxiproxy-server /usr/local/bin/toxiproxy-server" in dockerfile(Toxiproxy(), FIXTURES)


def test_sources_are_read_from_deb822_and_one_line_files(tmp_path: Path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm bookworm-updates\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        "Types: deb\nURIs: http://mirror.invalid/debian-security\nSuites: bookworm-security\nComponents: main\n")
    (tmp_path / "sources.list.d" / "other.list").write_text("deb http://elsewhere.invalid/apt stable main\n")
    mirror, text = host_debian_sources("bookworm", tmp_path)
    assert mirror == "http://mirror.invalid/debian"
    assert "bookworm-security" in text and "elsewhere" not in text


def test_no_debian_source_is_a_clear_error(tmp_path: Path):
    (tmp_path / "sources.list").write_text("deb http://elsewhere.invalid/apt stable main\n")
    with pytest.raises(RuntimeError, match="no apt source for Debian bookworm"):
        host_debian_sources("bookworm", tmp_path)
