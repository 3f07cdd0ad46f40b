"""``haltgate ca create`` and the start-up errors of ``haltgate sidecar``, as real processes:
each error is one line naming the flag, with the documented exit code, no traceback."""

from __future__ import annotations

import re
import socket
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from haltgate.sidecar.tlsmint import CertificateAuthority
from haltgate.testbed.cli_processes import explicit_sidecar_argv
from tests.sidecar.cli_process import haltgate

POLICY = {
    "apiVersion": "haltgate.dev/v1alpha1",
    "kind": "GovernancePolicy",
    "metadata": {"name": "p", "namespace": "agents"},
    "spec": {"selector": {"matchLabels": {"app": "agent"}}},
}


LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (DEBUG|INFO) ")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(haltgate(*args), capture_output=True, text=True, timeout=60)


def one_line(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    assert proc.returncode == code, proc.stderr
    # Log lines of what started before the failure (timestamped) are not the error.
    lines = [line for line in proc.stderr.strip().splitlines() if not LOG_LINE.match(line)]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_ca_create_writes_an_ec_ca_the_sidecar_loads(tmp_path: Path) -> None:
    out = tmp_path / "ca"
    proc = run("ca", "create", "--out", str(out), "--common-name", "agents CA", "--days", "30")
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE((out / "ca.key").stat().st_mode) == 0o600
    ca = CertificateAuthority.load(out / "ca.crt", out / "ca.key")
    assert isinstance(ca.key, ec.EllipticCurvePrivateKey)
    assert isinstance(ca.key.curve, ec.SECP256R1)
    cert = x509.load_pem_x509_certificate((out / "ca.crt").read_bytes())
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    # Not replaced by accident; replaced with --force.
    one_line(run("ca", "create", "--out", str(out)), 1, "--out", "--force")
    assert run("ca", "create", "--out", str(out), "--force").returncode == 0
    assert CertificateAuthority.load(out / "ca.crt", out / "ca.key").certificate != cert


def test_ca_create_refuses_rsa_in_one_line(tmp_path: Path) -> None:
    one_line(
        run("ca", "create", "--out", str(tmp_path / "ca"), "--key-type", "rsa"),
        2,
        "--key-type rsa",
        "EC P-256",
    )
    assert not (tmp_path / "ca").exists()


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(POLICY))
    return path


def sidecar(policy: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``haltgate sidecar`` in explicit mode on any free ports (``args`` last: they win)."""
    argv = explicit_sidecar_argv(policy, 0, "--audit-sink", "memory", *args, log_level="info")
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def rsa_ca(directory: Path) -> None:
    directory.mkdir()
    ca = CertificateAuthority.create()
    (directory / "ca.crt").write_bytes(ca.cert_pem())
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (directory / "ca.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def test_sidecar_with_rsa_ca_says_so_in_one_line(policy: Path, tmp_path: Path) -> None:
    rsa_ca(tmp_path / "ca")
    one_line(
        sidecar(policy, "--ca-dir", str(tmp_path / "ca")),
        1,
        "--ca-dir",
        "RSA",
        "haltgate ca create",
    )


def test_sidecar_with_missing_or_unreadable_ca(policy: Path, tmp_path: Path) -> None:
    one_line(
        sidecar(policy, "--ca-dir", str(tmp_path / "nowhere")),
        1,
        "--ca-dir",
        "ca.crt",
        "No such file",
    )
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "ca.crt").write_text("not a certificate")
    (bad / "ca.key").write_text("not a key")
    one_line(sidecar(policy, "--ca-dir", str(bad)), 1, "--ca-dir", "not a PEM certificate")


def test_sidecar_on_a_busy_port(policy: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for flag in ("--listen", "--admin-listen", "--metrics-listen"):
            line = one_line(
                sidecar(policy, flag, f"127.0.0.1:{port}"), 1, flag, f"127.0.0.1:{port}"
            )
            assert "in use" in line


def test_sidecar_with_a_bad_policy_file(policy: Path, tmp_path: Path) -> None:
    policy.write_text("spec: [unclosed")
    one_line(sidecar(policy), 1, "--policy")
    one_line(sidecar(tmp_path / "missing.yaml"), 1, "--policy", "missing.yaml")


@pytest.mark.parametrize(
    ("flag", "needle"),
    [
        ("--upstream-ca-file", "upstream CA bundle"),
        ("--state-dir", "Not a directory"),
        ("--audit-dir", "audit spool"),
    ],
)
def test_sidecar_with_an_unusable_file_or_directory(
    policy: Path, tmp_path: Path, flag: str, needle: str
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory, not a CA bundle")
    target = blocker if flag == "--upstream-ca-file" else blocker / "below"
    args = ["--audit-sink", "spool"] if flag != "--upstream-ca-file" else []
    one_line(sidecar(policy, flag, str(target), *args), 1, flag, needle)


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--listen", "127.0.0.1:99999"),
        ("--admin-listen", "127.0.0.1:http"),
        ("--max-connections", "0"),
        ("--idle-timeout", "x"),
        ("--mode", "sideways"),
        ("--reload-interval", "-1"),
    ],
)
def test_sidecar_with_a_bad_flag_value(policy: Path, flag: str, value: str) -> None:
    one_line(sidecar(policy, flag, value), 2, flag)
