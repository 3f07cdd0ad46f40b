"""Certificates of the test control plane, made with ``cryptography``.

One CA signs the apiserver's serving certificate and the client certificates (an admin in
``system:masters``, the controller-manager). A separate key signs service-account tokens.
ECDSA P-256 throughout: generating it costs milliseconds, and Kubernetes accepts it.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from haltgate.governance import x509build

_VALIDITY = datetime.timedelta(days=365)


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, PEM-encoded, with the files they were written to."""

    cert_pem: bytes
    key_pem: bytes
    cert_path: Path
    key_path: Path


def _write(
    directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> KeyPair:
    cert_pem = x509build.certificate_pem(cert)
    key_pem = x509build.private_key_pem(key)
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_path.write_bytes(cert_pem)
    key_path.write_bytes(key_pem)
    key_path.chmod(0o600)
    return KeyPair(cert_pem, key_pem, cert_path, key_path)


@dataclass(frozen=True)
class ControlPlaneCerts:
    """Every certificate and key file the control plane and its clients need."""

    ca: KeyPair
    apiserver: KeyPair
    admin: KeyPair
    controller_manager: KeyPair
    front_proxy_client: KeyPair
    service_account_key: Path
    service_account_pub: Path


def generate(directory: Path, *, service_ip: str = "10.0.0.1") -> ControlPlaneCerts:
    """Write a fresh CA, serving and client certificates and the service-account key pair."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)

    ca_key = x509build.new_key()
    ca_name = x509build.name("haltgate-testbed-ca")
    ca_cert = x509build.build_ca(
        ca_key, ca_name, not_before=now, not_after=now + _VALIDITY, path_length=None
    )
    ca = _write(directory, "ca", ca_cert, ca_key)

    def leaf(
        stem: str,
        subject: x509.Name,
        usage: x509.ObjectIdentifier,
        sans: list[x509.GeneralName] | None = None,
    ) -> KeyPair:
        key = x509build.new_key()
        cert = x509build.build_leaf(
            key.public_key(),
            subject,
            issuer=ca_name,
            issuer_key=ca_key,
            authority_key_id=x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()
            ),
            not_before=now,
            not_after=now + _VALIDITY,
            usages=[usage],
            sans=sans or (),
            digital_signature_only=True,
        )
        return _write(directory, stem, cert, key)

    dns = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    ips = ["127.0.0.1", "::1", service_ip]
    apiserver = leaf(
        "apiserver",
        x509build.name("kube-apiserver"),
        ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips],
    )
    admin = leaf(
        "admin",
        x509build.name("haltgate-admin", ("system:masters",)),
        ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    controller_manager = leaf(
        "controller-manager",
        x509build.name("system:kube-controller-manager"),
        ExtendedKeyUsageOID.CLIENT_AUTH,
    )

    # The aggregation layer's client; also fills the requestheader CA that delegated
    # authentication (controller-manager, extension apiservers) expects to find.
    front_proxy_client = leaf(
        "front-proxy-client", x509build.name("front-proxy-client"), ExtendedKeyUsageOID.CLIENT_AUTH
    )

    sa_key = x509build.new_key()
    sa_key_path, sa_pub_path = directory / "sa.key", directory / "sa.pub"
    sa_key_path.write_bytes(x509build.private_key_pem(sa_key))
    sa_key_path.chmod(0o600)
    sa_pub_path.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return ControlPlaneCerts(
        ca, apiserver, admin, controller_manager, front_proxy_client, sa_key_path, sa_pub_path
    )
