"""Certificates the operator makes itself with ``cryptography``.

Two kinds:

- the webhook serving certificate, when cert-manager is not used: a long-lived CA (its
  certificate goes into the webhook configurations' ``caBundle``) and a shorter-lived leaf
  for the webhook's DNS names / IPs, renewed well before expiry with the same CA so the
  ``caBundle`` does not change on renewal;
- the per-namespace inspection CA the sidecars mint TLS leaves from (key into a Secret that
  only sidecar containers mount, certificate into the bundle ConfigMap agents trust).

All functions here are pure apart from reading the clock (passed in as ``now``).
"""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from haltgate.governance import x509build

CA_VALIDITY = dt.timedelta(days=3650)
LEAF_VALIDITY = dt.timedelta(days=365)
RENEW_BEFORE = dt.timedelta(days=30)
"""A leaf with less than this left is renewed (the operator checks at start and hourly)."""
_BACKDATE = dt.timedelta(minutes=5)  # tolerate clock skew between operator and apiserver


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A certificate and its private key, PEM-encoded."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    @property
    def not_after(self) -> dt.datetime:
        return self.certificate.not_valid_after_utc


@dataclass(frozen=True, slots=True)
class WebhookTLS:
    """What the webhook server serves and what the apiserver must trust."""

    ca: KeyPair
    leaf: KeyPair

    def write(self, directory: Path) -> tuple[Path, Path, Path]:
        """Write tls.crt (leaf + CA chain), tls.key, ca.crt; return their paths."""
        directory.mkdir(parents=True, exist_ok=True)
        crt, key, ca = directory / "tls.crt", directory / "tls.key", directory / "ca.crt"
        _write_private(key, self.leaf.key_pem)
        crt.write_bytes(self.leaf.cert_pem + self.ca.cert_pem)
        ca.write_bytes(self.ca.cert_pem)
        return crt, key, ca


def _write_private(path: Path, data: bytes) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_bytes(data)


def make_ca(common_name: str, *, now: dt.datetime, validity: dt.timedelta = CA_VALIDITY) -> KeyPair:
    """A self-signed CA that may only sign leaves (path length 0)."""
    key = x509build.new_key()
    cert = x509build.build_ca(
        key,
        x509build.name(common_name, ("haltgate",)),
        not_before=now - _BACKDATE,
        not_after=now + validity,
    )
    return KeyPair(x509build.certificate_pem(cert), x509build.private_key_pem(key))


def make_leaf(
    ca: KeyPair, hosts: Sequence[str], *, now: dt.datetime, validity: dt.timedelta = LEAF_VALIDITY
) -> KeyPair:
    """A server certificate for ``hosts`` (DNS names or IP addresses) signed by ``ca``."""
    if not hosts:
        raise ValueError("a webhook certificate needs at least one host")
    ca_cert = ca.certificate
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key must be an EC key")
    key = x509build.new_key()
    cert = x509build.build_leaf(
        key.public_key(),
        x509build.name(hosts[0]),
        issuer=ca_cert.subject,
        issuer_key=ca_key,
        authority_key_id=x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
        not_before=now - _BACKDATE,
        not_after=now + validity,
        usages=[ExtendedKeyUsageOID.SERVER_AUTH],
        sans=[x509build.host_name(h) for h in hosts],
    )
    return KeyPair(x509build.certificate_pem(cert), x509build.private_key_pem(key))


def needs_renewal(
    pair: KeyPair,
    hosts: Sequence[str],
    *,
    now: dt.datetime,
    renew_before: dt.timedelta = RENEW_BEFORE,
) -> bool:
    """Whether a leaf expires soon or does not cover every host any more."""
    cert = pair.certificate
    if cert.not_valid_after_utc - renew_before <= now:
        return True
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return True
    have = {str(n) for n in san.get_values_for_type(x509.DNSName)}
    have |= {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return not set(hosts) <= have


def ensure_webhook_tls(
    current: WebhookTLS | None, hosts: Sequence[str], *, now: dt.datetime
) -> tuple[WebhookTLS, bool]:
    """Keep ``current`` if still good; renew the leaf (same CA) or make everything anew.

    Returns the material and whether it changed.
    """
    if current is not None and current.ca.not_after - LEAF_VALIDITY > now:
        if not needs_renewal(current.leaf, hosts, now=now):
            return current, False
        return WebhookTLS(current.ca, make_leaf(current.ca, hosts, now=now)), True
    ca = make_ca("haltgate webhook CA", now=now)
    return WebhookTLS(ca, make_leaf(ca, hosts, now=now)), True


def server_context(tls: WebhookTLS, directory: Path) -> ssl.SSLContext:
    """A TLS 1.2+ server context for the webhook (writes the files it loads)."""
    crt, key, _ = tls.write(directory)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(crt), str(key))
    return ctx
