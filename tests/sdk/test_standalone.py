"""haltgate-sdk stands alone: `pip install ./sdk` into an empty virtualenv, no package index,
and importing it loads nothing of haltgate's engine, pydantic, kopf or psycopg."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("pydantic", "kopf", "psycopg", "kubernetes", "aiohttp", "orjson", "yaml", "boto3")
"""Top-level modules an agent image must not need for the SDK."""
OURS = (
    "haltgate.governance",
    "haltgate.sidecar",
    "haltgate.operator",
    "haltgate.cli",
    "haltgate.testbed",
)
PROBE = f"""
import json, sys
import haltgate.sdk, haltgate.sdk.client, haltgate.sdk.errors, haltgate.sdk.wire
import haltgate.sdk.tracking, haltgate.sdk.http_hooks
loaded = sorted(sys.modules)
print(json.dumps({{
    "heavy": [m for m in loaded if m.split(".")[0] in {HEAVY!r}],
    "ours": [m for m in loaded if m.startswith({OURS!r})],
    "file": haltgate.sdk.__file__,
}}))
"""
COMMAND_TIMEOUT = 300


def _probe(python: str) -> dict[str, object]:
    out = subprocess.run(
        [python, "-c", PROBE],
        capture_output=True,
        text=True,
        check=True,
        timeout=COMMAND_TIMEOUT,
        cwd="/",
    )
    return dict(json.loads(out.stdout))


def test_importing_the_sdk_loads_nothing_heavy() -> None:
    # In this environment everything is installed: the imports alone must not pull it in.
    seen = _probe(sys.executable)
    assert seen["heavy"] == [] and seen["ours"] == []


def test_pip_install_sdk_alone(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    try:  # hatchling is in the dev extra: the wheel builds without a package index
        import hatchling  # noqa: F401
    except ImportError:  # pragma: no cover
        pytest.fail("hatchling is missing: `make install` installs the dev extra")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(wheels),
            str(REPO / "sdk"),
        ],
        check=True,
        timeout=COMMAND_TIMEOUT,
    )
    env_dir = tmp_path / "agent-env"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    subprocess.run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-index",
            "--find-links",
            str(wheels),
            "haltgate-sdk",
        ],
        check=True,
        timeout=COMMAND_TIMEOUT,
    )
    listed = subprocess.run(
        [python, "-m", "pip", "list", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=COMMAND_TIMEOUT,
    ).stdout
    names = {p["name"].lower() for p in json.loads(listed)}
    assert names - {"pip", "setuptools"} == {"haltgate-sdk"}  # no dependency at all
    seen = _probe(python)
    assert seen["heavy"] == [] and seen["ours"] == []
    assert str(seen["file"]).startswith(str(env_dir))  # the installed copy, not the checkout
