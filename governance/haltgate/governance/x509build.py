"""Building X.509 certificates: the one CA shape and the one leaf shape every haltgate
certificate has (the operator's webhook and inspection CAs, the sidecar's minted leaves,
the test control plane's certificates). EC P-256 keys, SHA-256 signatures.

Pure functions of their arguments (the caller passes the validity window), no files.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def new_key() -> ec.EllipticCurvePrivateKey:
    """A fresh EC P-256 private key (milliseconds to make)."""
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The key as unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def certificate_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def name(common_name: str, organizations: Sequence[str] = ()) -> x509.Name:
    """A distinguished name: the organizations (if any), then the common name."""
    parts = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    return x509.Name([*parts, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def host_name(host: str) -> x509.GeneralName:
    """A subjectAltName entry for ``host``: an IP address if it parses as one, else DNS."""
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )


def build_ca(
    key: ec.EllipticCurvePrivateKey,
    subject: x509.Name,
    *,
    not_before: dt.datetime,
    not_after: dt.datetime,
    path_length: int | None = 0,
) -> x509.Certificate:
    """A self-signed CA certificate for ``key`` (keyCertSign, cRLSign; path length 0 by
    default: it may sign leaves only)."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def build_leaf(
    public_key: ec.EllipticCurvePublicKey,
    subject: x509.Name,
    *,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    authority_key_id: x509.AuthorityKeyIdentifier,
    not_before: dt.datetime,
    not_after: dt.datetime,
    usages: Sequence[x509.ObjectIdentifier],
    sans: Sequence[x509.GeneralName] = (),
    digital_signature_only: bool = False,
) -> x509.Certificate:
    """An end-entity certificate for ``public_key`` signed by the issuer's key: extended key
    usages ``usages``, subjectAltNames ``sans`` (if any), and a keyUsage of
    digitalSignature alone when ``digital_signature_only``."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    builder = builder.add_extension(
        x509.BasicConstraints(ca=False, path_length=None), critical=True
    )
    if digital_signature_only:
        builder = builder.add_extension(_key_usage(signs_certificates=False), critical=True)
    return (
        builder.add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
        .add_extension(authority_key_id, critical=False)
        .sign(issuer_key, hashes.SHA256())
    )
