"""The haltgate CA and minted leaves, checked by a real TLS handshake against the CA."""

from __future__ import annotations

import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509

from haltgate.sidecar import tlsmint


@pytest.fixture(scope="module")
def minter() -> tlsmint.LeafMinter:
    return tlsmint.LeafMinter(tlsmint.CertificateAuthority.create(), cache_size=3)


def _handshake(server_ctx: ssl.SSLContext, ca_pem: bytes, server_hostname: str) -> str:
    """Run a TLS handshake over a socketpair; returns the negotiated version."""
    client_ctx = ssl.create_default_context(cadata=ca_pem.decode())
    a, b = socket.socketpair()
    a.settimeout(5)
    b.settimeout(5)
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            with server_ctx.wrap_socket(b, server_side=True) as s:
                s.recv(1)
        except (ssl.SSLError, OSError) as e:
            errors.append(e)

    t = threading.Thread(target=serve)
    t.start()
    try:
        with client_ctx.wrap_socket(a, server_hostname=server_hostname) as c:
            version = c.version() or ""
            c.sendall(b"x")
    finally:
        t.join(5)
    return version


def test_leaf_is_trusted_for_its_host_only(minter: tlsmint.LeafMinter) -> None:
    ca_pem = minter.ca.cert_pem()
    assert _handshake(minter.server_context("api.example.com"), ca_pem, "api.example.com")
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(minter.server_context("api.example.com"), ca_pem, "evil.example.com")


def test_leaf_for_ip_address_uses_ip_san(minter: tlsmint.LeafMinter) -> None:
    leaf = minter.mint("10.0.0.7")
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.7"]
    assert _handshake(minter.server_context("10.0.0.7"), minter.ca.cert_pem(), "10.0.0.7")


def test_leaf_is_not_a_ca_and_expires_before_the_ca(minter: tlsmint.LeafMinter) -> None:
    leaf = minter.mint("api.example.com")
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert leaf.not_valid_after_utc <= minter.ca.certificate.not_valid_after_utc
    assert leaf.issuer == minter.ca.certificate.subject


def test_cache_is_lru_and_case_insensitive() -> None:
    m = tlsmint.LeafMinter(tlsmint.CertificateAuthority.create(), cache_size=2)
    a = m.server_context("a.example")
    assert m.server_context("A.Example.") is a
    m.server_context("b.example")
    m.server_context("a.example")  # a is now most recent
    m.server_context("c.example")  # evicts b
    assert m.cached_hosts() == ["a.example", "c.example"]
    assert m.minted == 3


@pytest.mark.parametrize("bad", ["", " ", "a" * 300, "x..y\udcff"])
def test_bad_host_names_are_refused(minter: tlsmint.LeafMinter, bad: str) -> None:
    with pytest.raises(tlsmint.TLSMintError):
        minter.server_context(bad)


def test_load_or_create_round_trip(tmp_path: Path) -> None:
    created = tlsmint.CertificateAuthority.load_or_create(tmp_path / "ca")
    key_mode = (tmp_path / "ca" / tlsmint.CA_KEY_FILE).stat().st_mode
    assert stat.S_IMODE(key_mode) == 0o600
    loaded = tlsmint.CertificateAuthority.load_or_create(tmp_path / "ca")
    assert loaded.certificate == created.certificate


def test_load_refuses_a_key_of_another_ca(tmp_path: Path) -> None:
    a, b = tlsmint.CertificateAuthority.create(), tlsmint.CertificateAuthority.create()
    a.write(tmp_path / "a")
    b.write(tmp_path / "b")
    with pytest.raises(tlsmint.TLSMintError, match="does not match"):
        tlsmint.CertificateAuthority.load(
            tmp_path / "a" / tlsmint.CA_CERT_FILE, tmp_path / "b" / tlsmint.CA_KEY_FILE
        )


def test_load_refuses_a_leaf_as_ca(tmp_path: Path, minter: tlsmint.LeafMinter) -> None:
    import trustme

    ca = trustme.CA()
    leaf = ca.issue_cert("x.example")
    (tmp_path / "c.pem").write_bytes(leaf.cert_chain_pems[0].bytes())
    (tmp_path / "k.pem").write_bytes(leaf.private_key_pem.bytes())
    with pytest.raises(tlsmint.TLSMintError):
        tlsmint.CertificateAuthority.load(tmp_path / "c.pem", tmp_path / "k.pem")


def test_missing_files_give_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(tlsmint.TLSMintError, match=r"cannot read .*nope.crt: No such file"):
        tlsmint.CertificateAuthority.load(tmp_path / "nope.crt", tmp_path / "nope.key")
