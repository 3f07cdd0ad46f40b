"""Personal data detection: email, phone, payment card, IBAN, national id, IP address, DOB.

Candidates come from precompiled patterns; every number-shaped candidate is then validated
(Luhn, IBAN mod-97, national id checksums via `python-stdnum`, phone numbering plans via
`phonenumbers`), which is what keeps order ids, version strings, timestamps and numbers with a
wrong check digit out. Formats whose checksum is weak (9 and 11 digit ids) count only with a
keyword nearby ("BSN", "PESEL", "Steuer-ID"...).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Collection, Iterable

import phonenumbers
from stdnum import iban as std_iban
from stdnum import luhn
from stdnum.de import idnr as de_idnr
from stdnum.es import dni as es_dni
from stdnum.es import nie as es_nie
from stdnum.fi import hetu as fi_hetu
from stdnum.fr import nir as fr_nir
from stdnum.it import codicefiscale as it_cf
from stdnum.nl import bsn as nl_bsn
from stdnum.pl import pesel as pl_pesel
from stdnum.se import personnummer as se_pnr
from stdnum.us import ssn as us_ssn

from haltgate.governance.guardrails.base import Candidate, Channel
from haltgate.governance.guardrails.clean_gate import GateNeeds
from haltgate.governance.guardrails.decoded_rescan import rescan_decoded

NAME = "pii"

ENTITIES = ("email", "phone", "credit_card", "iban", "national_id", "ip_address", "dob")

_CONTEXT_WINDOW = 48

_EMAIL = re.compile(
    r"(?<![\w.+%-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
    r"[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.([A-Za-z]{2,24})"
    r"(?![\w-])(?!:[\w/])"
)
# "@2x.png", "logo@3x.webp": file names that look like addresses.
_FILE_TLDS = frozenset(
    "png jpg jpeg gif svg webp ico js mjs ts tsx jsx css scss py json yaml yml txt lock "
    "map wasm".split()
)

# Patterns start with a character class and check their left boundary right after it
# (``\d(?<![\d-]\d)``): CPython's regex engine then skips non-candidate positions in C, where
# a leading look-behind would be tried at every position (three times slower on prose).
_PHONE = re.compile(r"[+(\d](?<![\w+.:/-][+(\d])\(?\d?[\d \t().-]{5,21}\d(?![\w.:/-]|\.\d)")
_PHONE_CONTEXT = re.compile(
    r"\b(?:phone|tel|telephone|mobile|cell|call|fax|whatsapp|sms|text\s+me|contact|"
    r"number|reach|dial|telefon|handy|tél|téléphone|telefono|móvil)\b",
    re.IGNORECASE,
)
_ID_CONTEXT = re.compile(
    r"\b(?:order|invoice|id|ref|reference|ticket|tracking|case|account|acct|build|job|"
    r"request|txn|transaction|sku|serial|no\.?)\W{0,3}(?:#|no\.?|number|id)?\W{0,3}$|#\s*$",
    re.IGNORECASE,
)
_PHONE_WINDOW = 24
_DATE_LIKE = re.compile(r"^\(?(?:19|20)\d\d[ ./-]\d\d?[ ./-]\d\d?|^\d\d?[./-]\d\d?[./-]\d{2,4}$")

_CARD = re.compile(r"\d(?<![\d.-]\d)(?:[ -]?\d){12,18}(?![\d]|[.-]\d)")
_CARD_PREFIX = re.compile(
    r"^(?:4|5[1-5]|2(?:2[2-9][1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720)|3[47]|3(?:0[0-5]|[689])"
    r"|6(?:011|5|4[4-9]|22)|35(?:2[89]|[3-8]\d)|62|8[1-8])"
)

_IBAN = re.compile(r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z]\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])")

_SSN_DASHED = re.compile(r"\d(?<![\d-]\d)\d{2}-\d{2}-\d{4}(?![\d-])")
_SSN_PLAIN = re.compile(r"\d(?<![\d-]\d)\d{2}[ ]?\d{2}[ ]?\d{4}(?![\d-])")
_SSN_CONTEXT = re.compile(r"\b(?:ssn|social\s+security|soc\.?\s*sec)", re.IGNORECASE)

_ES_DNI = re.compile(r"\d(?<![\w-]\d)\d{7}-?[A-Za-z](?!\w)")
_ES_NIE = re.compile(r"[XYZxyz](?<![\w-][XYZxyz])-?\d{7}-?[A-Za-z](?!\w)")
# Codice fiscale in capitals, as it is printed and typed.
_IT_CF = re.compile(
    r"[A-Z](?<![\w][A-Z])[A-Z]{5}[0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{2}[A-Z]"
    r"[0-9LMNPQRSTUV]{3}[A-Z](?!\w)"
)
_FR_NIR = re.compile(r"[12](?<!\d[12]) ?\d{2} ?\d{2} ?(?:\d{2}|2[ABab]) ?\d{3} ?\d{3} ?\d{2}(?!\d)")
_SE_PNR = re.compile(r"\d(?<![\d-]\d)\d{5}(?:\d\d)?[-+]\d{4}(?![\d-])")
_FI_HETU = re.compile(r"\d(?<![\w-]\d)\d{5}[-+AYXWVUBaxywvub]\d{3}[0-9A-Ya-y](?!\w)")
_DIGITS_9_11 = re.compile(r"\d(?<![\d-]\d)(?:[ .]?\d){8,10}(?![\d-])")
# (keywords looked for in the lower-cased text, pattern for the context window, check, digits)
_KEYWORD_IDS: tuple[tuple[tuple[str, ...], re.Pattern[str], Callable[[str], bool], int], ...] = (
    (
        ("bsn", "burgerservicenummer"),
        re.compile(r"\b(?:bsn|burgerservicenummer)\b", re.I),
        nl_bsn.is_valid,
        9,
    ),
    (("pesel",), re.compile(r"\bpesel\b", re.I), pl_pesel.is_valid, 11),
    (
        ("steuer", "idnr", "tax id", "identifikationsnummer"),
        re.compile(
            r"\b(?:steuer-?id|steueridentifikationsnummer|idnr|tax\s+id|"
            r"identifikationsnummer)\b",
            re.I,
        ),
        de_idnr.is_valid,
        11,
    ),
)

# Shape only; ipaddress validates octets (and refuses leading zeros).
_IPV4 = re.compile(r"\d(?<![\w.]\d)\d{0,2}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?![\w]|\.\d)")
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{0,4}|\d+(?:\.\d+){3})"
    r"(?![\w:])"
)
_VERSION_CONTEXT = re.compile(
    r"(?:\bv|\bversion|\bver|\brelease|\bbuild|\brev|\bpkg|\btag|==|>=|<=|~=|@)\s*[:=]?\s*$",
    re.IGNORECASE,
)

_MONTHS = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_DOB = re.compile(
    r"\b(?:date[\W_]+of[\W_]+birth|d\.?o\.?b\.?|born(?:\s+on)?|birth[\W_]*date|birthday|"
    r"geburtsdatum|geboren(?:\s+am)?|date\s+de\s+naissance|n[ée]e?\s+le|"
    r"fecha\s+de\s+nacimiento)\W{0,4}(?:(?:is|was|:)\s*)?"
    r"(?P<date>(?:19|20)\d\d[-/.]\d\d?[-/.]\d\d?|\d\d?[./-]\d\d?[./-](?:19|20)?\d\d"
    rf"|\d\d?(?:st|nd|rd|th)?\.?\s+{_MONTHS}\.?,?\s+(?:19|20)\d\d"
    rf"|{_MONTHS}\.?\s+\d\d?(?:st|nd|rd|th)?,?\s+(?:19|20)\d\d)",
    re.IGNORECASE,
)


_DIGIT_CLUSTER = re.compile(r"\d(?:[ \t().+/-]{0,2}\d){6,}")
_ANY_DIGIT = re.compile(r"\d")  # compiled once: re.search(str) is a cache look-up in Python
_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


def _digits(s: str) -> str:
    return "".join(ch for ch in s if ch.isdigit())


def _context_before(text: str, start: int, pattern: re.Pattern[str]) -> bool:
    return pattern.search(text, max(0, start - _CONTEXT_WINDOW), start) is not None


_MAX_AT_WINDOWS = 512
"""More "@" than this in one text: one scan of the whole text instead of windows."""
_MAX_PHONE_CANDIDATES = 256
"""Phone-shaped runs parsed per text at most (each costs a phonenumbers parse)."""


def _emails(text: str) -> Iterable[Candidate]:
    if text.count("@") > _MAX_AT_WINDOWS:
        for m in _EMAIL.finditer(text):
            if m.group(1).lower() not in _FILE_TLDS:
                yield Candidate("email", m.start(), m.end(), 0.95)
        return
    # Only around each "@": the pattern's left part would otherwise be tried on every word.
    at = text.find("@")
    seen_until = -1
    while at != -1:
        lo = max(seen_until, at - 65, 0)
        for m in _EMAIL.finditer(text, lo, min(len(text), at + 260)):
            if m.start() < seen_until:
                continue
            seen_until = m.end()
            if m.group(1).lower() not in _FILE_TLDS:
                yield Candidate("email", m.start(), m.end(), 0.95)
        at = text.find("@", max(at + 1, seen_until))


def _cards(text: str) -> Iterable[Candidate]:
    for m in _CARD.finditer(text):
        raw = m.group()
        seps = {c for c in raw if not c.isdigit()}
        if len(seps) > 1:
            continue
        d = _digits(raw)
        if not 13 <= len(d) <= 19 or not _CARD_PREFIX.match(d):
            continue
        if luhn.is_valid(d):
            yield Candidate("credit_card", m.start(), m.end(), 0.95)


def _ibans(text: str) -> Iterable[Candidate]:
    for m in _IBAN.finditer(text):
        raw = m.group().rstrip()
        if std_iban.is_valid(raw):
            yield Candidate("iban", m.start(), m.start() + len(raw), 0.95)


def _national_ids(text: str, low: str, numeric: bool) -> Iterable[Candidate]:
    for m in _IT_CF.finditer(text):
        if it_cf.is_valid(m.group()):
            yield Candidate("national_id", m.start(), m.end(), 0.9)
    if not numeric:
        return
    for m in _SSN_DASHED.finditer(text):
        if us_ssn.is_valid(m.group()):
            ctx = _context_before(text, m.start(), _SSN_CONTEXT)
            yield Candidate("national_id", m.start(), m.end(), 0.95 if ctx else 0.7)
    if "ssn" in low or "soc" in low:
        for m in _SSN_PLAIN.finditer(text):
            ctx = _context_before(text, m.start(), _SSN_CONTEXT)
            if ctx and us_ssn.is_valid(_digits(m.group())):
                yield Candidate("national_id", m.start(), m.end(), 0.9)
    for pattern, valid, score in (
        (_ES_DNI, es_dni.is_valid, 0.85),
        (_ES_NIE, es_nie.is_valid, 0.85),
        (_FR_NIR, fr_nir.is_valid, 0.85),
        (_SE_PNR, se_pnr.is_valid, 0.8),
        (_FI_HETU, fi_hetu.is_valid, 0.85),
    ):
        for m in pattern.finditer(text):
            if valid(m.group()):
                yield Candidate("national_id", m.start(), m.end(), score)
    for words, keyword, check, ndigits in _KEYWORD_IDS:
        if not any(w in low for w in words):
            continue
        for m in _DIGITS_9_11.finditer(text):
            d = _digits(m.group())
            if len(d) == ndigits and _context_before(text, m.start(), keyword) and check(d):
                yield Candidate("national_id", m.start(), m.end(), 0.85)


def _phones(text: str, region: str) -> Iterable[Candidate]:
    for n, m in enumerate(_PHONE.finditer(text)):
        if n >= _MAX_PHONE_CANDIDATES:
            break
        raw = m.group().strip()
        d = _digits(raw)
        if not 7 <= len(d) <= 15:
            continue
        international = raw.startswith(("+", "00"))
        if not international:
            if _DATE_LIKE.match(raw) or _ID_CONTEXT.search(text, max(0, m.start() - 16), m.start()):
                continue
            groups = [g for g in re.split(r"[\s().-]+", raw) if g]
            ctx = (
                _PHONE_CONTEXT.search(text, max(0, m.start() - _PHONE_WINDOW), m.start())
                is not None
            )
            # Unformatted digit runs are ids far more often than phone numbers: only with
            # a keyword nearby.
            if len(groups) < 2 and not ctx:
                continue
        else:
            ctx = True
        try:
            if raw.startswith("00"):
                raw = "+" + raw[2:]
            num = phonenumbers.parse(raw, None if raw.startswith("+") else region)
        except phonenumbers.NumberParseException:
            continue
        if not phonenumbers.is_valid_number(num):
            continue
        score = 0.9 if (international or ctx) else 0.6
        yield Candidate("phone", m.start(), m.start() + len(m.group().rstrip()), score)


def _ips(text: str) -> Iterable[Candidate]:
    if "." in text:
        for m in _IPV4.finditer(text):
            if _VERSION_CONTEXT.search(text, max(0, m.start() - 16), m.start()):
                continue
            try:
                addr = ipaddress.IPv4Address(m.group())
            except ValueError:
                continue
            yield Candidate("ip_address", m.start(), m.end(), 0.8 if addr.is_global else 0.4)
    if "::" in text or text.count(":") >= 7:
        for m in _IPV6.finditer(text):
            raw = m.group()
            if raw.count(":") < 7 and "::" not in raw:
                continue
            try:
                addr6 = ipaddress.IPv6Address(raw)
            except ValueError:
                continue
            if raw.strip(":") == "" or addr6.is_unspecified:
                continue
            yield Candidate("ip_address", m.start(), m.end(), 0.8 if addr6.is_global else 0.4)


_DOB_WORDS = (
    "birth",
    "dob",
    "d.o.b",
    "born",
    "geboren",
    "geburtsdatum",
    "naissance",
    "né",
    "nacimiento",
)


def _dobs(text: str, low: str) -> Iterable[Candidate]:
    if not any(w in low for w in _DOB_WORDS):
        return
    for m in _DOB.finditer(text):
        yield Candidate("dob", m.start("date"), m.end("date"), 0.9)


class PIIDetector:
    """Detects the entities in `entities` (all when empty)."""

    name = NAME
    deterministic = True
    """The same text always gets the same candidates (see `Guardrails.deterministic`)."""

    def __init__(self, entities: Collection[str] = (), *, region: str = "US") -> None:
        """`region` is the numbering plan assumed for phone numbers without a ``+`` prefix."""
        unknown = set(entities) - set(ENTITIES)
        if unknown:
            raise ValueError(f"unknown PII entities: {sorted(unknown)}")
        self.entities = frozenset(entities or ENTITIES)
        self.region = region

    def gate_needs(self) -> GateNeeds:
        """What an ASCII text must hold for `detect` to find anything (`clean_gate`): the
        gates `_plain` itself applies (an ``@`` for addresses; a digit, and then a digit
        cluster, a codice fiscale or an address shape for the rest; a date-of-birth
        word), or an encoded run to rescan."""
        e = self.entities
        digit: list[str] = []
        if not e.isdisjoint({"credit_card", "iban", "phone", "national_id"}):
            digit.append(_DIGIT_CLUSTER.pattern)
        if "national_id" in e:
            digit.append(_IT_CF.pattern)  # the one id that needs no cluster
        if "ip_address" in e:
            # IPv4: digits around a dot; IPv6: "::" or two colons around a hex group
            digit.append(r"\d\.\d|::|[0-9A-Fa-f]:[0-9A-Fa-f]{1,4}:")
        return GateNeeds(
            literals=_DOB_WORDS if "dob" in e else (),
            chars="@" if "email" in e else "",
            digit_patterns=tuple(digit),
            encoded_runs=True,
        )

    def detect(self, text: str, *, channel: Channel = "request") -> list[Candidate]:
        """All PII candidates in `text`, also inside its encoded runs (`decoded_rescan`);
        the channel does not change what PII is."""
        out = self._plain(text)
        out.extend(rescan_decoded(text, self._plain))
        return out

    def _plain(self, text: str) -> list[Candidate]:
        out: list[Candidate] = []
        e = self.entities
        # Keyword gates look in a lower-cased copy of the same length (ASCII-only mapping
        # keeps offsets).
        low = text.lower() if text.isascii() else text.translate(_ASCII_LOWER)
        if "email" in e:
            out.extend(_emails(text))
        has_digit = (
            any(ch.isdigit() for ch in text)
            if len(text) < 64
            else (_ANY_DIGIT.search(text) is not None)
        )
        if not has_digit:
            return out
        # Cards, IBANs, phones and numeric ids all hold 7+ digits close together: one cheap
        # scan decides whether their patterns need to run at all.
        numeric = _DIGIT_CLUSTER.search(text) is not None
        if numeric and "credit_card" in e:
            out.extend(_cards(text))
        if numeric and "iban" in e:
            out.extend(_ibans(text))
        if "national_id" in e:
            out.extend(_national_ids(text, low, numeric))
        if "ip_address" in e:
            out.extend(_ips(text))
        if "dob" in e:
            out.extend(_dobs(text, low))
        if numeric and "phone" in e:
            taken = [(c.start, c.end) for c in out]
            out.extend(
                c
                for c in _phones(text, self.region)
                if not any(a < c.end and c.start < b for a, b in taken)
            )
        return out
