"""The Dockerfile cannot be built here: check by reading it that it stays consistent with
the code (the sidecar UID, the files the wheel needs, the tools the init step calls)."""

from __future__ import annotations

import re

from haltgate.operator.injection import InjectionConfig
from tests.chart.conftest import REPO

DOCKERFILE = (REPO / "Dockerfile").read_text()


def test_runs_as_the_sidecar_uid_by_default() -> None:
    uid = re.search(r"^ARG HALTGATE_UID=(\d+)$", DOCKERFILE, re.M)
    assert uid and int(uid.group(1)) == InjectionConfig().proxy_uid
    users = re.findall(r"^USER (\S+)$", DOCKERFILE, re.M)
    assert users == ["${HALTGATE_UID}:${HALTGATE_UID}"]  # last and only USER: non-root


def test_copies_exist() -> None:
    for src in re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE, re.M):
        for path in src.split():
            assert (REPO / path).exists(), f"Dockerfile copies {path}, which does not exist"


def test_has_iptables_and_opa() -> None:
    assert re.search(r"apt-get install .*\biptables\b", DOCKERFILE)
    assert "COPY --from=opa /opa /usr/local/bin/opa" in DOCKERFILE
    # The wheel build needs the injection template force-included by pyproject.toml.
    assert "charts/haltgate/files/injection-template.yaml" in (REPO / "pyproject.toml").read_text()
