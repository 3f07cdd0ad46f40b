"""Credential detection: provider keys and tokens, private keys, passwords in connection
strings, and high-entropy values assigned to secret-sounding names.

Provider patterns come from the `detect-secrets` plugins (their ``denylist`` regular
expressions and, where a plugin has one, its own validity check, e.g. the JWT structure
check), so they follow upstream as providers change formats. Patterns for providers that
`detect-secrets` does not know yet (OpenAI project keys, Anthropic, Google API keys, Hugging
Face, GitHub fine-grained tokens, Stripe test keys) and the assignment/entropy rule are ours.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
from detect_secrets.plugins.base import RegexBasedDetector
from detect_secrets.plugins.basic_auth import BasicAuthDetector
from detect_secrets.plugins.discord import DiscordBotTokenDetector
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.jwt import JwtTokenDetector
from detect_secrets.plugins.mailchimp import MailchimpDetector
from detect_secrets.plugins.npm import NpmDetector
from detect_secrets.plugins.openai import OpenAIDetector
from detect_secrets.plugins.private_key import PrivateKeyDetector
from detect_secrets.plugins.pypi_token import PypiTokenDetector
from detect_secrets.plugins.sendgrid import SendGridDetector
from detect_secrets.plugins.slack import SlackDetector
from detect_secrets.plugins.square_oauth import SquareOAuthDetector
from detect_secrets.plugins.stripe import StripeDetector
from detect_secrets.plugins.telegram_token import TelegramBotTokenDetector
from detect_secrets.plugins.twilio import TwilioKeyDetector

from haltgate.governance.guardrails import decode_prefilter
from haltgate.governance.guardrails.base import Candidate, Channel
from haltgate.governance.guardrails.clean_gate import GateNeeds
from haltgate.governance.guardrails.decoded_rescan import rescan_decoded
from haltgate.governance.guardrails.literal_gate import LiteralGate, Needs

NAME = "secrets"


@dataclass(frozen=True, slots=True)
class _Pattern:
    entity: str
    regex: re.Pattern[str]
    score: float
    check: Callable[[str], bool] | None = None
    hint: str | tuple[str, ...] | None = None
    """Substring(s) one of which the pattern cannot match without (skips the regex scan).
    Looked for in the lower-cased text, so a hint gates case-sensitive patterns too."""


# Plugins whose patterns are specific enough for free text (ArtifactoryDetector's "AP..."
# pattern matches ordinary upper-case words; the keyword and entropy plugins are file-oriented
# and replaced by the assignment rule below).
_PLUGINS: tuple[tuple[type[RegexBasedDetector], str, float, str | tuple[str, ...] | None], ...] = (
    (AWSKeyDetector, "aws_key", 0.95, None),
    (AzureStorageKeyDetector, "azure_storage_key", 0.95, "AccountKey="),
    (BasicAuthDetector, "url_credentials", 0.9, "://"),
    (DiscordBotTokenDetector, "discord_token", 0.85, "."),
    (GitHubTokenDetector, "github_token", 0.95, "_"),
    (GitLabTokenDetector, "gitlab_token", 0.95, ("gl", "gr1348941")),  # runner tokens: GR1348941
    (JwtTokenDetector, "jwt", 0.85, "eyJ"),
    (MailchimpDetector, "mailchimp_key", 0.9, "-us"),
    (NpmDetector, "npm_token", 0.95, "_authToken"),
    (OpenAIDetector, "openai_key", 0.95, "T3BlbkFJ"),
    (PrivateKeyDetector, "private_key", 0.99, None),
    (PypiTokenDetector, "pypi_token", 0.95, "pypi-"),
    (SendGridDetector, "sendgrid_key", 0.95, "SG."),
    (SlackDetector, "slack_token", 0.95, None),
    (SquareOAuthDetector, "square_oauth", 0.95, "sq0csp-"),
    (StripeDetector, "stripe_key", 0.95, "_live_"),
    (TelegramBotTokenDetector, "telegram_token", 0.85, ":"),
    (TwilioKeyDetector, "twilio_key", 0.8, None),
)

_PLACEHOLDER = re.compile(
    r"^(?:<[^>]*>|\[[^\]]*\]|\*+|x{3,}|X{3,}|\.{3}|…|\$\w+|\$\{[^}]*\}|%\w+%?|\{\{[^}]*\}\}|"
    r"(?:your|my|the)?[_-]?(?:password|passwd|pass|secret|token|api[_-]?key|key)s?(?:[_-]?here)?|"
    r"changeme|redacted|null|none|true|false|undefined|example|test|dummy|placeholder)$",
    re.IGNORECASE,
)


def _not_placeholder_password(match: str) -> bool:
    # BasicAuthDetector's group is the password of scheme://user:PASSWORD@host.
    return _PLACEHOLDER.match(match) is None


_CODE_VALUE = re.compile(
    r"^(?:os|process|env|config|self|settings|secrets|vars|params|ctx|request)\.|[\[(]"
)


def _not_placeholder_or_code(match: str) -> bool:
    # ``password=os.environ["DB_PASSWORD"]`` names where the password is, it is none.
    return _not_placeholder_password(match) and _CODE_VALUE.search(match) is None


DOCUMENTED_EXAMPLES = frozenset(
    {
        # AWS IAM user guide's example access key ids and secret keys
        "AKIAIOSFODNN7EXAMPLE",
        "AKIAI44QH8DHBEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY",
        # jwt.io's debugger example
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9l"
        "IiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
        # Stripe API reference's test-mode keys
        "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
        "pk_test_TYooMQauvdEDq54NiTphI7jx",
    }
)
"""Values published in vendor documentation as examples: nobody's credential, and pasted
into code, docs and tickets all the time. AWS marks its examples with an ``EXAMPLE`` /
``EXAMPLEKEY`` suffix, which no issued key has; those count as documented too."""
_AWS_EXAMPLE = re.compile(r"EXAMPLE(?:KEY)?$")
_JWT_SIGNATURE = re.compile(r"[A-Za-z0-9_-]{0,1024}")

_REFERENCE_NAME = re.compile(
    r"(?i)(?:_|-|\b|(?<=[a-z])(?=[A-Z]))(?:id|ids|ref|refs|name|names|hint|type|arn|path|file|"
    r"url|uri|expiry|expires|ttl|count|length|len|version|header|field|env|var|prefix)$"
)
"""Names that say the value refers to a secret rather than being one (``token_id``,
``secret_ref``, ``api_key_name``, ``password_hint``)."""


def _jwt_valid(token: str) -> bool:
    return bool(JwtTokenDetector.is_formally_valid(token))


_OWN: tuple[_Pattern, ...] = (
    _Pattern(
        "openai_key",
        re.compile(r"\bsk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,}"),
        0.95,
        hint="sk-",
    ),
    _Pattern("openai_key", re.compile(r"\bsk-[A-Za-z0-9]{48}\b"), 0.9, hint="sk-"),
    _Pattern(
        "anthropic_key",
        re.compile(r"\bsk-ant-(?:api|admin|oat)\d{2}-[A-Za-z0-9_-]{40,}"),
        0.95,
        hint="sk-ant-",
    ),
    _Pattern("google_api_key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}(?![\w-])"), 0.95, hint="AIza"),
    _Pattern("huggingface_token", re.compile(r"\bhf_[A-Za-z]{34}\b"), 0.9, hint="hf_"),
    _Pattern(
        "github_token", re.compile(r"\bgithub_pat_[A-Za-z0-9_]{60,100}\b"), 0.95, hint="github_pat_"
    ),
    _Pattern("stripe_key", re.compile(r"\b(?:sk|rk)_test_[0-9a-zA-Z]{24,}\b"), 0.8, hint="_test_"),
    _Pattern("stripe_key", re.compile(r"\bwhsec_[0-9a-zA-Z]{24,}\b"), 0.9, hint="whsec_"),
    _Pattern(
        "aws_key",
        re.compile(
            r"(?i)aws_?secret_?(?:access_?)?key\s*[:=]\s*[\"']?([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])"
        ),
        0.95,
        hint="secret",
    ),
    _Pattern("azure_sas", re.compile(r"[?&]sig=[A-Za-z0-9%+/]{40,}={0,2}"), 0.85, hint="sig="),
    # detect-secrets' BasicAuth pattern wants RFC 3986-clean passwords; people paste raw ones
    # ("p@ss&word!") and empty user names (redis://:pw@host).
    _Pattern(
        "url_credentials",
        re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]{1,20}://[^:/@\s]{0,128}:([^@\s/]{1,128})@[\w.-]+"),
        0.9,
        check=_not_placeholder_password,
        hint="://",
    ),
    _Pattern(
        "url_credentials",
        re.compile(r"(?i)\b(?:password|pwd)\s*=\s*([^;'\"\s]{4,})(?=\s*(?:;|$|['\"]))"),
        0.85,
        check=_not_placeholder_or_code,
        hint=("password", "pwd"),
    ),
)

_PRIVATE_KEY_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")
_PRIVATE_KEY_MAX = 16384

# name = value, name: value, "name": "value" where the name says secret.
# Matched on the lower-cased copy (same offsets); the value is then read from the original.
_ASSIGNMENT = re.compile(
    r"(?<![\w])([\w.-]{0,40}(?:secret|token|passw(?:or)?d|passwd|pwd|api[_-]?key|apikey|"
    r"access[_-]?key|auth[_-]?key|client[_-]?secret|private[_-]?key|credentials?|"
    r"signing[_-]?key|encryption[_-]?key|bearer)[\w.-]{0,20})[\"']?\s*(?::=|=>|[:=])\s*"
    r"(?:bearer\s+)?[\"']?([A-Za-z0-9+/=_\-.~!@#$%^&*?]{8,256})"
)
# Matched on the lower-cased text: a plain alternation of literals is scanned fast, and the
# assignment pattern then runs only around its hits.
_ASSIGNMENT_KEY = re.compile(
    r"secret|token|passw|pwd|api[_-]?key|apikey|access[_-]?key|auth|credential|private|"
    r"signing|encryption|bearer"
)
_ASSIGNMENT_WORDS = (
    "secret",
    "token",
    "passw",
    "pwd",
    "apikey",
    "api_key",
    "api-key",
    "access_key",
    "access-key",
    "accesskey",
    "auth",
    "credential",
    "private",
    "signing",
    "encryption",
    "bearer",
)
"""The words `_ASSIGNMENT_KEY` matches, spelt out (the clean gate looks for them with the
other literals; tests/guardrails/test_clean_gate.py holds the two together)."""
_NAME_MAX = 41
_VALUE_REACH = 340
_BEARER = re.compile(
    r"(?i)\bauthorization\s*[:=]\s*[\"']?(?:bearer|token|basic)\s+([A-Za-z0-9+/=_\-.~]{16,})"
)


def shannon_entropy(s: str) -> float:
    """Bits per character of `s`."""
    if not s:
        return 0.0
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values())


def _secret_value(name: str, value: str) -> float | None:
    """Score an assigned value, None when it does not look like a secret."""
    value = value.rstrip(".,;")
    if _PLACEHOLDER.match(value) or value.isdigit():
        return None
    if _REFERENCE_NAME.search(name.rstrip("\"'")):
        return None
    low = value.lower()
    if low.startswith(
        (
            "http://",
            "https://",
            "os.",
            "process.",
            "env.",
            "config.",
            "self.",
            "settings.",
            "vault:",
            "secret:",
            "ref+",
            "arn:",
        )
    ):
        return None
    identifier = re.fullmatch(r"[a-z_][a-z0-9_.]*\(?", low) is not None and "_" in low
    if identifier or re.fullmatch(r"[a-z]+", low):
        # identifiers and plain words (``token = get_token(``, ``password: required``)
        return None
    h = shannon_entropy(value)
    is_password = re.search(r"(?i)pass|pwd", name) is not None
    if is_password:
        # Human passwords are short and low in entropy; require a mix of character classes.
        classes = sum(
            bool(re.search(p, value)) for p in (r"[a-z]", r"[A-Z]", r"\d", r"[^A-Za-z0-9]")
        )
        if len(value) >= 8 and classes >= 2 and h >= 2.5:
            return 0.8
        return None
    if re.fullmatch(r"[0-9a-fA-F-]+", value):
        return 0.75 if len(value) >= 20 and h >= 3.0 else None
    if len(value) >= 16 and h >= 3.5:
        return 0.8
    return None


class SecretsDetector:
    """Provider tokens (via detect-secrets plugins and ours) plus the assignment rule."""

    name = NAME
    deterministic = True
    """The same text always gets the same candidates (see `Guardrails.deterministic`)."""

    def __init__(self, *, prefilter: bool = True) -> None:
        """Compile the pattern table once. `prefilter=False` turns off the literal
        prefilters (`_PREFILTERS`, and the assignment rule's need of ``:`` or ``=``): the
        same findings, slower; the reference of the differential tests."""
        table: list[_Pattern] = []
        for plugin, entity, score, hint in _PLUGINS:
            check: Callable[[str], bool] | None = None
            if plugin is JwtTokenDetector:
                check = _jwt_valid
            elif plugin is BasicAuthDetector:
                check = _not_placeholder_password
            # `denylist` is a class attribute (a tuple or list of compiled patterns).
            regexes: Iterable[re.Pattern[str]] = plugin.denylist  # type: ignore[assignment]
            for regex in regexes:
                table.append(_Pattern(entity, regex, score, check, hint))
        table.extend(_OWN)
        self._patterns = tuple(table)
        self._prefilter = prefilter
        # Each pattern's hints lower-cased once, here (not per pattern on every scan).
        self._gated = tuple((p, _lowered(p.hint)) for p in self._patterns)
        self._run_needs = tuple(_RUN_NEEDS.get(p.regex.pattern, 0) for p in self._patterns)
        self._needs = tuple(_needs(p.hint, p.regex.pattern) for p in self._patterns)
        # With the prefilters: one pass over the text for every pattern's literals.
        self._gate = LiteralGate(self._needs) if prefilter else None

    def gate_needs(self) -> GateNeeds:
        """What an ASCII text must hold for `detect` to find anything (`clean_gate`): per
        pattern of the table, a literal it cannot run without (its prefilter, else its
        hint) or, for the token patterns whose hint says little (`_RUN_NEEDS`), their run
        and the pattern itself; the bearer and assignment rules' key words; or an encoded
        run to rescan."""
        literals: dict[str, None] = dict.fromkeys(("authorization", *_ASSIGNMENT_WORDS))
        runs: list[tuple[int, str]] = []
        for p, needs in zip(self._patterns, self._needs, strict=True):
            run = _RUN_NEEDS.get(p.regex.pattern)
            group = needs.prefilter or needs.hint
            if run is not None:
                runs.append((run, scoped(p.regex)))
            elif group:
                literals.update(dict.fromkeys(group))
            else:
                raise ValueError(f"pattern {p.regex.pattern[:40]!r} needs nothing to run")
        return GateNeeds(literals=tuple(literals), run_patterns=tuple(runs), encoded_runs=True)

    def detect(self, text: str, *, channel: Channel = "request") -> list[Candidate]:
        """All secret candidates in `text`, also inside its encoded runs (`decoded_rescan`);
        the channel does not change what a credential is."""
        out = self._plain(text)
        out.extend(rescan_decoded(text, self._plain))
        return out

    def _plain(self, text: str) -> list[Candidate]:
        out: list[Candidate] = []
        ascii = text.isascii()
        low = text.lower() if ascii else text.translate(_ASCII_LOWER)
        if self._gate is not None:
            indices: Sequence[int] = self._gate.runnable(low, ascii)
            if ascii:
                runs: bytes | None = None
                kept = []
                for i in indices:
                    need = self._run_needs[i]
                    if need:
                        if runs is None:
                            runs = decode_prefilter.alphabet_map(text)
                        if b"a" * need not in runs:
                            continue
                    kept.append(i)
                indices = kept
            patterns = [self._patterns[i] for i in indices]
        else:  # each pattern's hint looked for in turn (the reference of the gate)
            patterns = [
                p
                for p, hint in self._gated
                if hint is None
                or (hint in low if type(hint) is str else any(h in low for h in hint))
            ]
        for p in patterns:
            for m in p.regex.finditer(text):
                start, end = _secret_span(m)
                if p.check is not None and not p.check(text[start:end]):
                    continue
                if p.entity == "private_key":
                    start, end = _private_key_block(text, m.start())
                elif p.entity == "jwt":
                    # detect-secrets' pattern ends lazily before the signature: take it too.
                    sig = _JWT_SIGNATURE.match(text, end)
                    end = sig.end() if sig else end
                if p.entity != "private_key" and _documented(text[start:end]):
                    continue
                out.append(Candidate(p.entity, start, end, p.score))
        out.extend(self._assignments(text, low, self._prefilter))
        return out

    @staticmethod
    def _assignments(text: str, low: str, prefilter: bool = True) -> Iterable[Candidate]:
        if "authorization" in low:
            for m in _BEARER.finditer(text):
                if shannon_entropy(m.group(1)) >= 3.0:
                    yield Candidate("bearer_token", m.start(1), m.end(1), 0.85)
        if prefilter and "=" not in low and ":" not in low:
            return  # the assignment pattern needs one of them after the name
        windows: list[tuple[int, int]] = []
        for k in _ASSIGNMENT_KEY.finditer(low):
            lo, hi = max(0, k.start() - _NAME_MAX), min(len(text), k.end() + _VALUE_REACH)
            if windows and lo <= windows[-1][1]:
                windows[-1] = (windows[-1][0], hi)
            else:
                windows.append((lo, hi))
        for lo, hi in windows:
            if prefilter and low.find("=", lo, hi) < 0 and low.find(":", lo, hi) < 0:
                continue
            for m in _ASSIGNMENT.finditer(low, lo, hi):
                value = text[m.start(2) : m.end(2)].rstrip(".,;")
                score = _secret_value(text[m.start(1) : m.end(1)], value)
                if score is not None and not _documented(value):
                    yield Candidate("generic_secret", m.start(2), m.start(2) + len(value), score)


_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}

_PRIVATE_KEY_HEADS = (
    "DSA PRIVATE KEY",
    "EC PRIVATE KEY",
    "OPENSSH PRIVATE KEY",
    "PGP PRIVATE KEY BLOCK",
    "PRIVATE KEY",
    "RSA PRIVATE KEY",
    "SSH2 ENCRYPTED PRIVATE KEY",
)
_PREFILTERS: dict[str, tuple[tuple[str, ...], bool]] = {
    r"(?:A3T[A-Z0-9]|ABIA|ACCA|AKIA|ASIA)[0-9A-Z]{16}": (
        ("a3t", "abia", "acca", "akia", "asia"),
        False,
    ),
    r"(ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9_]{36}": (("ghp_", "gho_", "ghu_", "ghs_", "ghr_"), False),
    r"(glpat|gldt|glft|glsoat|glrt)-[A-Za-z0-9_\-]{20,50}(?!\w)": (
        ("glpat-", "gldt-", "glft-", "glsoat-", "glrt-"),
        False,
    ),
    r"GR1348941[A-Za-z0-9_\-]{20,50}(?!\w)": (("gr1348941",), False),
    r"glcbt-([0-9a-fA-F]{2}_)?[A-Za-z0-9_\-]{20,50}(?!\w)": (("glcbt-",), False),
    r"glimt-[A-Za-z0-9_\-]{25}(?!\w)": (("glimt-",), False),
    r"glptt-[A-Za-z0-9_\-]{40}(?!\w)": (("glptt-",), False),
    r"glagent-[A-Za-z0-9_\-]{50,1024}(?!\w)": (("glagent-",), False),
    r"gloas-[A-Za-z0-9_\-]{64}(?!\w)": (("gloas-",), False),
    **{f"BEGIN {head}": ((f"begin {head.lower()}",), False) for head in _PRIVATE_KEY_HEADS},
    "PuTTY-User-Key-File-2": (("putty-user-key-file-2",), False),
    # case-insensitive patterns: outside ASCII a letter has more case forms (U+017F is an "s"
    # to the regex engine), so their literal is looked for in ASCII text only
    r"aws.{0,20}?(?:key|pwd|pw|password|pass|token).{0,20}?[\'\"]([0-9a-zA-Z/+]{40})[\'\"]": (
        ("aws",),
        True,
    ),
    r"xox(?:a|b|p|o|s|r)-(?:\d+-)+[a-z0-9]+": (("xox",), True),
    r"https://hooks\.slack\.com/services/T[a-zA-Z0-9_]+/B[a-zA-Z0-9_]+/[a-zA-Z0-9_]+": (
        ("hooks.slack.com",),
        True,
    ),
}
"""Literals (lower-case) one of which a pattern cannot match without, by the pattern's
source: its regex runs only when the lower-cased text holds one. They add to a pattern's
`hint` (which stays as it is: the hint decides what the pattern finds, the prefilter only
saves the regex scans that cannot find anything). A pattern whose source changes upstream
loses its prefilter, never a finding. Checked against the patterns in the differential
tests (tests/guardrails/test_scan_fast_paths.py)."""

_RUN_NEEDS: dict[str, int] = {
    r"[MNO][a-zA-Z\d_-]{23,25}\.[a-zA-Z\d_-]{6}\.[a-zA-Z\d_-]{27}": 27,
    r"AC[a-z0-9]{32}": 34,
    r"SK[a-z0-9]{32}": 34,
    r"\d{8,10}:[0-9A-Za-z_-]{35}": 35,
}
"""Token patterns whose hint says little (``.``, ``:``, none), by source: the run of
base64-alphabet characters (`decode_prefilter.alphabet_map`) an ASCII text must hold for
them to match (Discord's last part, Twilio's 34 characters, Telegram's secret). Outside
ASCII they always run (a digit class there matches other scripts' digits too)."""


def _needs(hint: str | tuple[str, ...] | None, source: str) -> Needs:
    """What a pattern needs in the lower-cased text: its hint and its prefilter."""
    lowered = _lowered(hint)
    prefilter, ascii_only = _PREFILTERS.get(source, (None, False))
    return Needs(
        hint=(lowered,) if isinstance(lowered, str) else lowered,
        prefilter=prefilter,
        prefilter_ascii_only=ascii_only,
    )


_FLAG_LETTERS = ((re.IGNORECASE, "i"), (re.MULTILINE, "m"), (re.DOTALL, "s"), (re.VERBOSE, "x"))
_LEADING_FLAGS = re.compile(r"^\(\?[aiLmsux]+\)")


def scoped(regex: re.Pattern[str]) -> str:
    """`regex`'s source as a group that keeps its flags (``(?i:...)``), to be joined with
    other patterns in one alternation. Raises ValueError for what cannot be joined
    (references to its own groups)."""
    source = _LEADING_FLAGS.sub("", regex.pattern)
    if "(?P=" in source or re.search(r"\\[1-9]", source):
        raise ValueError(f"pattern {regex.pattern[:40]!r} refers to its own groups")
    letters = "".join(c for flag, c in _FLAG_LETTERS if regex.flags & flag)
    return f"(?{letters}:{source})" if letters else f"(?:{source})"


def _documented(value: str) -> bool:
    """A documentation example (`DOCUMENTED_EXAMPLES`, or AWS's ``...EXAMPLE`` suffix)."""
    return value in DOCUMENTED_EXAMPLES or _AWS_EXAMPLE.search(value) is not None


def _lowered(hint: str | tuple[str, ...] | None) -> str | tuple[str, ...] | None:
    """A pattern's hint(s) as the lower-case text looked for (``None``: no hint)."""
    if hint is None or isinstance(hint, str):
        return None if hint is None else hint.lower()
    return tuple(h.lower() for h in hint)


def _secret_span(m: re.Match[str]) -> tuple[int, int]:
    """The secret's own span: the longest group of 8+ characters, else the whole match.

    Some plugin patterns capture the secret (a password, a key), others only a prefix
    (``(ghp|gho|...)_``); a prefix must not shrink the span.
    """
    best = (m.start(), m.end())
    best_len = 0
    for i in range(1, (m.re.groups or 0) + 1):
        g = m.group(i)
        if g and len(g) >= 8 and len(g) > best_len:
            best, best_len = (m.start(i), m.end(i)), len(g)
    return best


def _private_key_block(text: str, start: int) -> tuple[int, int]:
    """Whole PEM block from its BEGIN line to its END line (bounded)."""
    begin = text.rfind("-----", max(0, start - 16), start + 1)
    begin = begin if begin >= 0 else start
    end_m = _PRIVATE_KEY_END.search(text, start, start + _PRIVATE_KEY_MAX)
    end = end_m.end() if end_m else min(len(text), start + _PRIVATE_KEY_MAX)
    return begin, end
