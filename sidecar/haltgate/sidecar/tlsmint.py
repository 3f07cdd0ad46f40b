"""The haltgate CA and the leaf certificates it mints, one per inspected host, on the fly.

Agents in an injected pod trust the haltgate CA (``SSL_CERT_FILE`` and friends point at its
certificate). When the sidecar inspects a TLS connection (transparent mode with
``tls: inspect``, or a CONNECT in explicit mode), it presents a leaf certificate for the host
the client asked for, signed by that CA. Leaves are short-lived, share one key per minter
(key generation is the slow part; the key never leaves the sidecar's memory) and are kept in
an LRU cache of ready ``ssl.SSLContext`` objects.

The CA key is the sensitive part: it is mounted into the sidecar container only and is scoped
per namespace or workload by the operator, so a leaked key cannot impersonate hosts elsewhere.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from haltgate.governance import x509build

CA_CERT_FILE = "ca.crt"
CA_KEY_FILE = "ca.key"

CA_VALIDITY = dt.timedelta(days=365)
"""Lifetime of a CA this module creates (the operator rotates scoped CAs before expiry)."""
LEAF_VALIDITY = dt.timedelta(days=2)
"""Lifetime of a minted leaf; the cache is far shorter-lived than this in practice."""
LEAF_BACKDATE = dt.timedelta(hours=1)
"""Leaves start an hour in the past so a client with a slightly slow clock accepts them."""
DEFAULT_CACHE_SIZE = 1024
"""Distinct hosts whose contexts are kept; an agent talks to a handful of upstreams."""


class TLSMintError(Exception):
    """The CA cannot be loaded or a certificate cannot be minted."""

    code = "tls_mint_failed"


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    """A CA certificate with its private key."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(
        cls, common_name: str = "haltgate inspection CA", validity: dt.timedelta = CA_VALIDITY
    ) -> CertificateAuthority:
        """A new self-signed CA (EC P-256) that may sign leaves only (path length 0)."""
        key = x509build.new_key()
        now = dt.datetime.now(dt.UTC)
        cert = x509build.build_ca(
            key,
            x509build.name(common_name, ("haltgate",)),
            not_before=now - LEAF_BACKDATE,
            not_after=now + validity,
        )
        return cls(cert, key)

    @classmethod
    def load(cls, cert_path: Path, key_path: Path) -> CertificateAuthority:
        """Load a PEM certificate and its unencrypted PEM private key (EC)."""
        pem: list[bytes] = []
        for path in (cert_path, key_path):
            try:
                pem.append(path.read_bytes())
            except OSError as e:
                raise TLSMintError(f"cannot read {path}: {e.strerror or e}") from e
        try:
            cert = x509.load_pem_x509_certificate(pem[0])
        except ValueError as e:
            raise TLSMintError(f"{cert_path} is not a PEM certificate") from e
        try:
            key = serialization.load_pem_private_key(pem[1], password=None)
        except (ValueError, TypeError) as e:
            raise TLSMintError(f"{key_path} is not an unencrypted PEM private key") from e
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            kind = type(key).__name__.removeprefix("_").replace("PrivateKey", "")
            raise TLSMintError(
                f"{key_path}: {kind or 'non-EC'} key; the CA key must be "
                "EC (P-256): create one with `haltgate ca create`"
            )
        if key.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
            raise TLSMintError("the CA key does not match the CA certificate")
        try:
            basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound as e:
            raise TLSMintError("the CA certificate has no basicConstraints") from e
        if not basic.ca:
            raise TLSMintError("the CA certificate is not a CA (basicConstraints ca=false)")
        return cls(cert, key)

    @classmethod
    def load_or_create(cls, directory: Path) -> CertificateAuthority:
        """Load ``ca.crt``/``ca.key`` from ``directory``, creating them (0600 key) if absent."""
        cert_path, key_path = directory / CA_CERT_FILE, directory / CA_KEY_FILE
        if cert_path.exists() or key_path.exists():
            return cls.load(cert_path, key_path)
        ca = cls.create()
        ca.write(directory)
        return ca

    def write(self, directory: Path) -> None:
        """Write ``ca.crt`` (0644) and ``ca.key`` (0600, created with that mode)."""
        directory.mkdir(parents=True, exist_ok=True)
        key_pem = x509build.private_key_pem(self.key)
        fd = os.open(directory / CA_KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem)
        (directory / CA_CERT_FILE).write_bytes(self.cert_pem())

    def cert_pem(self) -> bytes:
        return x509build.certificate_pem(self.certificate)


def normalize_host(host: str) -> str:
    """Lower-case, no trailing dot, IDNA-encoded: one cache key per name a client may send."""
    host = host.strip().rstrip(".").lower()
    if not host or len(host) > 253:
        raise TLSMintError(f"not a host name: {host!r}")
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError as e:
        raise TLSMintError(f"not a host name: {host!r}") from e


class LeafMinter:
    """Mints leaf certificates for host names and caches server-side ``SSLContext``s.

    Thread-safe (a lock around the cache), so it may be used from the event loop and from
    executor threads alike.
    """

    def __init__(self, ca: CertificateAuthority, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        if cache_size < 1:
            raise ValueError("cache_size must be at least 1")
        self._ca = ca
        self._key = x509build.new_key()
        self._key_pem = x509build.private_key_pem(self._key)
        self._cache: OrderedDict[str, ssl.SSLContext] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self.minted = 0
        """How many leaves were minted (cache misses), for metrics and tests."""

    @property
    def ca(self) -> CertificateAuthority:
        return self._ca

    def mint(self, host: str) -> x509.Certificate:
        """A new leaf for ``host`` (DNS name or IP address), signed by the CA."""
        host = normalize_host(host)
        now = dt.datetime.now(dt.UTC)
        not_after = min(now + LEAF_VALIDITY, self._ca.certificate.not_valid_after_utc)
        ca_ski = self._ca.certificate.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier
        ).value
        return x509build.build_leaf(
            self._key.public_key(),
            x509build.name(host[:64]),
            issuer=self._ca.certificate.subject,
            issuer_key=self._ca.key,
            authority_key_id=x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            not_before=now - LEAF_BACKDATE,
            not_after=not_after,
            usages=[ExtendedKeyUsageOID.SERVER_AUTH],
            sans=[x509build.host_name(host)],
        )

    def server_context(self, host: str) -> ssl.SSLContext:
        """A server-side TLS context presenting a leaf for ``host`` (cached, LRU)."""
        key = normalize_host(host)
        with self._lock:
            ctx = self._cache.get(key)
            if ctx is not None:
                self._cache.move_to_end(key)
                return ctx
        ctx = self._build_context(key)
        with self._lock:
            self._cache[key] = ctx
            self._cache.move_to_end(key)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return ctx

    def _build_context(self, host: str) -> ssl.SSLContext:
        leaf = self.mint(host)
        self.minted += 1
        chain = leaf.public_bytes(serialization.Encoding.PEM) + self._ca.cert_pem()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        # HTTP/1.1 only: the sidecar's HTTP server does not speak h2.
        ctx.set_alpn_protocols(["http/1.1"])
        # ssl loads certificates from files only: a private temp dir, removed at once.
        with tempfile.TemporaryDirectory(prefix="haltgate-leaf-") as tmp:
            path = Path(tmp) / "leaf.pem"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(chain + self._key_pem)
            ctx.load_cert_chain(path)
        return ctx

    def cached_hosts(self) -> list[str]:
        """Hosts currently cached, least recently used first."""
        with self._lock:
            return list(self._cache)
