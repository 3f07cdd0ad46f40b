"""Generated development set for the secrets detector (issue 17 item 7): random credentials
of every supported kind in realistic contexts, and look-alikes that are not secrets (hashes,
commit ids, UUIDs, base64 blobs, documented example keys, test fixtures, lockfile and log
checksums). Everything is generated from a fixed seed: no real credential is in here.

    from haltgate.testbed.secret_corpus import generate
    positives, lookalikes = generate(seed=7)     # lists of Sample(text, label, kind)

It is a development set: the secrets rules were changed while looking at it (docs/guardrails.md
section 6 says so next to its figures).
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass

SEED = 7
_ALNUM = string.ascii_letters + string.digits
_UPPER_DIGITS = string.ascii_uppercase + string.digits
_B64 = _ALNUM + "+/"
_URLSAFE = _ALNUM + "-_"
_HEX = "0123456789abcdef"


@dataclass(frozen=True, slots=True)
class Sample:
    text: str
    label: bool
    kind: str
    """The entity a positive must be found as; the look-alike family for a negative."""


def _r(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# --- positives: one generator per kind ---------------------------------------------------------


def _aws_id(rng: random.Random) -> str:
    return rng.choice(["AKIA", "ASIA"]) + _r(rng, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)


def _jwt(rng: random.Random) -> str:
    head = _b64url(json.dumps({"alg": rng.choice(["HS256", "RS256"]), "typ": "JWT"}).encode())
    body = {
        "sub": str(rng.randrange(10**6, 10**9)),
        "iat": rng.randrange(1_600_000_000, 1_800_000_000),
        "scope": rng.choice(["read", "admin", "repo write"]),
    }
    sig = _b64url(rng.randbytes(32))
    return f"{head}.{_b64url(json.dumps(body).encode())}.{sig}"


def _private_key(rng: random.Random) -> str:
    kind = rng.choice(["RSA ", "EC ", "OPENSSH ", ""])
    body = base64.b64encode(rng.randbytes(rng.randrange(180, 400))).decode()
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN {kind}PRIVATE KEY-----\n{lines}\n-----END {kind}PRIVATE KEY-----"


def _password(rng: random.Random) -> str:
    return _r(rng, string.ascii_letters, 5) + _r(rng, string.digits, 3) + rng.choice("!#%*-_")


_TOKENS: dict[str, Callable[[random.Random], str]] = {
    "aws_key": _aws_id,
    "github_token": lambda r: (
        rng_choice(r, ["ghp_", "gho_", "ghu_", "ghs_", "ghr_"]) + _r(r, _ALNUM, 36)
    ),
    "gitlab_token": lambda r: "glpat-" + _r(r, _URLSAFE, 20),
    "jwt": _jwt,
    "slack_token": lambda r: (
        rng_choice(r, ["xoxb-", "xoxp-"])
        + "-".join(_r(r, string.digits, 12) for _ in range(2))
        + "-"
        + _r(r, _ALNUM, 24)
    ),
    "stripe_key": lambda r: rng_choice(r, ["sk_live_", "rk_live_", "sk_test_"]) + _r(r, _ALNUM, 24),
    "openai_key": lambda r: "sk-proj-" + _r(r, _URLSAFE, 40) + "T3BlbkFJ" + _r(r, _ALNUM, 20),
    "anthropic_key": lambda r: "sk-ant-api03-" + _r(r, _URLSAFE, 93) + "AA",
    "google_api_key": lambda r: "AIza" + _r(r, _URLSAFE, 35),
    "huggingface_token": lambda r: "hf_" + _r(r, string.ascii_letters, 34),
    "sendgrid_key": lambda r: "SG." + _r(r, _URLSAFE, 22) + "." + _r(r, _URLSAFE, 43),
    "pypi_token": lambda r: "pypi-AgEIcHlwaS5vcmc" + _r(r, _URLSAFE, 80),
    "twilio_key": lambda r: "SK" + _r(r, _HEX, 32),
    "telegram_token": lambda r: str(r.randrange(10**8, 10**10)) + ":AA" + _r(r, _URLSAFE, 33),
    "mailchimp_key": lambda r: _r(r, _HEX, 32) + "-us" + str(r.randrange(1, 21)),
    "square_oauth": lambda r: "sq0csp-" + _r(r, _URLSAFE, 43),
    "private_key": _private_key,
}


def rng_choice(rng: random.Random, items: list[str]) -> str:
    return items[rng.randrange(len(items))]


_CONTEXTS = (
    "export {NAME}={v}",
    '{name}: "{v}"',
    '{{"{name}": "{v}", "region": "eu-west-1"}}',
    '{name} = "{v}"  # do not commit',
    "2026-11-03T10:14:22Z DEBUG client init with {v}",
    "curl -H 'X-Token: {v}' https://api.internal.example/v1/items",
    "docker run -e {NAME}={v} registry.example/app:1.4",
    "Here is the key you asked for: {v}",
    "config.set('{name}', '{v}')",
    "- name: {NAME}\n  value: {v}",
)
_NAMES = {
    "aws_key": "aws_access_key_id",
    "google_api_key": "maps_key",
    "jwt": "session",
    "private_key": "deploy_key",
}


def _positives(rng: random.Random, per_kind: int) -> list[Sample]:
    out: list[Sample] = []
    for kind, make in _TOKENS.items():
        for _ in range(per_kind):
            v = make(rng)
            name = _NAMES.get(kind, kind.replace("_key", "") + "_token")
            ctx = rng.choice(_CONTEXTS)
            if kind == "private_key":
                ctx = rng.choice(["{v}", "key file contents:\n{v}\n", '"""\n{v}\n"""'])
            out.append(Sample(ctx.format(v=v, name=name, NAME=name.upper()), True, kind))
    for _ in range(per_kind):  # credentials that are not one provider's token
        pw = _password(rng)
        host = rng.choice(["db.internal", "10.2.0.7", "redis.svc.cluster.local"])
        scheme = rng.choice(["postgres", "mysql", "redis", "amqp", "mongodb"])
        out.append(
            Sample(
                rng.choice(
                    [
                        f"DATABASE_URL={scheme}://app:{pw}@{host}:5432/main",
                        f"connecting to {scheme}://svc_user:{pw}@{host}/jobs",
                    ]
                ),
                True,
                "url_credentials",
            )
        )
        secret = _r(rng, _ALNUM, rng.randrange(24, 48))
        name = rng.choice(["client_secret", "api_key", "SIGNING_KEY", "webhookSecret", "apiKey"])
        out.append(
            Sample(
                rng.choice([f'{name} = "{secret}"', f"{name}: {secret}", f'"{name}": "{secret}"']),
                True,
                "generic_secret",
            )
        )
        out.append(
            Sample(
                f"Authorization: Bearer {_r(rng, _URLSAFE, rng.randrange(32, 64))}",
                True,
                "bearer_token",
            )
        )
        sas = _r(rng, _B64, 43) + "%3D"
        out.append(
            Sample(
                "https://acct.blob.core.windows.net/c/f.csv?sv=2022-11-02&se=2026-12-01"
                f"&sr=b&sp=r&sig={sas}",
                True,
                "azure_sas",
            )
        )
    return out


# --- look-alikes -------------------------------------------------------------------------------

# Published example values from vendor documentation (AWS IAM user guide, jwt.io's debugger,
# Stripe's API reference): not anyone's credential.
DOCUMENTED_EXAMPLES = (
    "AKIAIOSFODNN7EXAMPLE",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "AKIAI44QH8DHBEXAMPLE",
    "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY",
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0"
    "IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
    "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
    "pk_test_TYooMQauvdEDq54NiTphI7jx",
)


def _hexd(rng: random.Random, n: int) -> str:
    return rng.randbytes(n).hex()


def _lookalike_makers() -> dict[str, Callable[[random.Random], str]]:
    def sha1(r: random.Random) -> str:
        h = _hexd(r, 20)
        return rng_choice(
            r,
            [
                f"commit {h}\nAuthor: Dev <dev@example.org>",
                f"git checkout {h}",
                f"Merge: {h[:7]} {_hexd(r, 4)[:7]}",
                f"fixed in {h} (backport of {_hexd(r, 20)})",
                f'"sha": "{h}", "node_id": "C_kwDOA{_r(r, _ALNUM, 20)}"',
                f"revision = {h}",
            ],
        )

    def sha256(r: random.Random) -> str:
        h = _hexd(r, 32)
        return rng_choice(
            r,
            [
                f"image: registry.example/app@sha256:{h}",
                f"SHA256 (release-1.4.2.tar.gz) = {h}",
                f'checksum = "{h}"',
                f"{h}  dist/app-linux-amd64",
                f'"digest": "sha256:{h}"',
                f"--hash=sha256:{h}",
                f"sha256_checksum: {h}",
                f'ETag: W/"{h[:32]}"',
            ],
        )

    def md5(r: random.Random) -> str:
        h = _hexd(r, 16)
        return rng_choice(
            r,
            [
                f"{h}  backup-2026-11-01.sql.gz",
                f"md5sum: {h}",
                f'ETag: "{h}"',
                f"Content-MD5 mismatch: expected {h}, got {_hexd(r, 16)}",
                f"cache key {h} evicted",
            ],
        )

    def lockfile(r: random.Random) -> str:
        b = base64.b64encode(r.randbytes(64)).decode()
        return rng_choice(
            r,
            [
                f'"integrity": "sha512-{b}"',
                f"github.com/pkg/errors v0.9.1 h1:{base64.b64encode(r.randbytes(32)).decode()}",
                f'checksum = "{_hexd(r, 32)}"',
                f'hash = "sha256:{_hexd(r, 32)}"',
                f'resolved "https://registry.yarnpkg.com/a/-/a-1.0.0.tgz#{_hexd(r, 20)}"',
            ],
        )

    def uuid_(r: random.Random) -> str:
        u = str(uuid.UUID(int=r.getrandbits(128), version=4))
        return rng_choice(
            r,
            [
                f"request_id={u} status=200 duration_ms=41",
                f'{{"id": "{u}", "name": "invoice"}}',
                f"X-Request-Id: {u}",
                f"trace {u} span {_hexd(r, 8)}",
                f"api_key_id: {u}",
                f"token_id = {u}",
                f"secret_ref: {u}",
                f"session {u} expired",
            ],
        )

    def blob(r: random.Random) -> str:
        raw = r.randbytes(r.randrange(48, 600))
        b = base64.b64encode(raw).decode()
        png = base64.b64encode(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + raw).decode()
        return rng_choice(
            r,
            [
                f"data:image/png;base64,{png}",
                f'{{"thumbnail": "{png}"}}',
                f'"payload": "{b}"',
                f"attachment (base64): {b}",
                f'<img src="data:image/jpeg;base64,{b}">',
                f"nonce={base64.b64encode(r.randbytes(16)).decode()}",
                f'"salt": "{b[:24]}"',
            ],
        )

    def fixture(r: random.Random) -> str:
        s = _r(r, _ALNUM, r.randrange(24, 48))
        return rng_choice(
            r,
            [
                f'TEST_SEED = "{s}"',
                f'fake_id = "{s}"',
                f"assert digest == '{_hexd(r, 32)}'",
                f'EXPECTED_HASH = "{_hexd(r, 20)}"',
                f"random_state: {s}",
                f'idempotency_key = "{s}"',
                f"font-family: x; /* build {s} */",
                f"{r.choice(['secret_name', 'token_type', 'password_hint'])}: {s.lower()[:12]}",
                'password = os.environ["DB_PASSWORD"]',
                "api_key = settings.API_KEY",
                "token = get_token(session)",
                f'jwt = "header.payload.signature"  # {s[:8]}',
                "Authorization: Bearer <token>",
                "aws_secret_access_key = YOUR_SECRET_KEY_HERE",
                "client_secret: ${CLIENT_SECRET}",
                f"session_token_expiry = {r.randrange(1_600_000_000, 1_800_000_000)}",
            ],
        )

    def documented(r: random.Random) -> str:
        v = rng_choice(r, list(DOCUMENTED_EXAMPLES))
        return rng_choice(
            r,
            [
                f"For example, `{v}` (from the documentation).",
                f"export EXAMPLE_KEY={v}",
                f'example: "{v}"',
                f"# sample value: {v}",
            ],
        )

    def ids(r: random.Random) -> str:
        return rng_choice(
            r,
            [
                f"order ORD-{_r(r, _UPPER_DIGITS, 16)} shipped",
                f"pi_{_r(r, _ALNUM, 24)}",
                f"cus_{_r(r, _ALNUM, 14)} updated",
                f"video id {_r(r, _URLSAFE, 11)}",
                f"build {_r(r, _UPPER_DIGITS, 26)} finished (ULID)",
                f"ssh-ed25519 {base64.b64encode(r.randbytes(51)).decode()} dev@laptop",
                f"-----BEGIN CERTIFICATE-----\n{base64.b64encode(r.randbytes(96)).decode()}\n"
                "-----END CERTIFICATE-----",
                f"AKIA is the prefix of an AWS access key id; ours is stored in {_r(r, _ALNUM, 6)}",
                f"object key uploads/{_hexd(r, 16)}/{_r(r, _ALNUM, 10)}.pdf",
            ],
        )

    def cloud(r: random.Random) -> str:
        u = str(uuid.UUID(int=r.getrandbits(128), version=4))
        acct = r.randrange(10**11, 10**12)
        return rng_choice(
            r,
            [
                f"arn:aws:iam::{acct}:role/deploy-{_r(r, string.ascii_lowercase, 6)}",
                f"x-amz-request-id: {_r(r, '0123456789ABCDEF', 16)}",
                f"x-amz-id-2: {base64.b64encode(r.randbytes(48)).decode()}",
                f"/subscriptions/{u}/resourceGroups/rg-app/providers/Microsoft.Web/sites/app",
                f"secret_version: projects/{acct}/secrets/db-password/versions/{r.randrange(1, 9)}",
                f'  uid: {u}\n  resourceVersion: "{r.randrange(10**5, 10**7)}"',
                f"Host key fingerprint is SHA256:{_b64url(r.randbytes(32))}",
                f"oid sha256:{_hexd(r, 32)}\nsize {r.randrange(1000, 10**7)}",
                f"kid: {_b64url(r.randbytes(24))}",
                f"-----BEGIN PGP SIGNATURE-----\n\n{base64.b64encode(r.randbytes(90)).decode()}\n"
                "-----END PGP SIGNATURE-----",
            ],
        )

    return {
        "cloud_id": cloud,
        "sha1": sha1,
        "sha256": sha256,
        "md5": md5,
        "lockfile": lockfile,
        "uuid": uuid_,
        "base64_blob": blob,
        "fixture": fixture,
        "documented_example": documented,
        "identifier": ids,
    }


def _lookalikes(rng: random.Random, per_family: int) -> list[Sample]:
    """Up to `per_family` distinct texts per family (fewer where a family has few forms)."""
    out: list[Sample] = []
    for family, make in _lookalike_makers().items():
        seen: set[str] = set()
        for _ in range(per_family * 4):
            if len(seen) >= per_family:
                break
            text = make(rng)
            if text not in seen:
                seen.add(text)
                out.append(Sample(text, False, family))
    return out


def generate(
    seed: int = SEED, *, per_kind: int = 24, per_family: int = 130
) -> tuple[list[Sample], list[Sample]]:
    """(positives, look-alikes): with the defaults 24 per kind over 17 token kinds and 4
    kinds of plain credentials (504 positives), and up to 130 distinct texts per family over
    10 families (the documented examples have fewer forms)."""
    rng = random.Random(seed)
    pos = _positives(rng, per_kind)
    neg = _lookalikes(rng, per_family)
    return pos, neg


def digest(samples: list[Sample]) -> str:
    """sha256 of the set (to tell two generations apart in a report)."""
    h = hashlib.sha256()
    for s in samples:
        h.update(f"{s.label}\t{s.kind}\t{s.text}\n".encode())
    return h.hexdigest()[:16]
