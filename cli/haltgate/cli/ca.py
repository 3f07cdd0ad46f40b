"""``haltgate ca``: the inspection CA the sidecar mints TLS leaf certificates with.

Exit codes: 0 done; 1 the CA was not written (it exists already, the directory is not
writable); 2 usage (a bad flag value, an unsupported key type).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from haltgate.sidecar.tlsmint import CA_CERT_FILE, CA_KEY_FILE, CertificateAuthority

KEY_TYPES = ("ec-p256", "rsa")


@click.group(name="ca")
def ca() -> None:
    """The inspection CA (ca.crt, ca.key) the sidecar's --ca-dir points at."""


@ca.command(name="create")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to write ca.crt (0644) and ca.key (0600) into; created if "
    "absent. Mount it as the sidecar's --ca-dir.",
)
@click.option(
    "--key-type",
    type=click.Choice(KEY_TYPES),
    default="ec-p256",
    show_default=True,
    help="CA key algorithm. Only EC P-256: the sidecar signs the leaves it mints "
    "with this key (rsa is refused).",
)
@click.option(
    "--common-name",
    default="haltgate inspection CA",
    show_default=True,
    help="Subject common name (name the scope, e.g. the namespace).",
)
@click.option(
    "--days",
    default=365,
    show_default=True,
    type=click.IntRange(1, 3650),
    help="Validity of the CA certificate, in days.",
)
@click.option("--force", is_flag=True, help="Replace a CA already in --out.")
def create(out_dir: Path, key_type: str, common_name: str, days: int, force: bool) -> None:
    """Create a new inspection CA: an EC P-256 key and a self-signed CA certificate that
    may sign leaf certificates only (path length 0).

    Agents must trust ca.crt (SSL_CERT_FILE, REQUESTS_CA_BUNDLE, NODE_EXTRA_CA_CERTS);
    ca.key stays with the sidecar. In a cluster the operator creates one CA per
    namespace itself; this command is for running the sidecar outside one."""
    if key_type != "ec-p256":
        _fail(
            f"--key-type {key_type}: not supported; the sidecar signs leaves with an EC "
            "P-256 CA key (use --key-type ec-p256)",
            2,
        )
    existing = [n for n in (CA_CERT_FILE, CA_KEY_FILE) if (out_dir / n).exists()]
    if existing and not force:
        _fail(f"--out {out_dir}: already holds {', '.join(existing)} (--force replaces them)", 1)
    authority = CertificateAuthority.create(common_name, dt.timedelta(days=days))
    try:
        authority.write(out_dir)
    except OSError as e:
        _fail(f"--out {out_dir}: cannot write the CA: {e.strerror or e}", 1)
    until = authority.certificate.not_valid_after_utc.strftime("%Y-%m-%d")
    click.echo(
        f"wrote {out_dir / CA_CERT_FILE} and {out_dir / CA_KEY_FILE} "
        f"(EC P-256, valid until {until})"
    )


def _fail(message: str, code: int) -> None:
    click.echo(f"haltgate ca create: {message}", err=True)
    raise SystemExit(code)
