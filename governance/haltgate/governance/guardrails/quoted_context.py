"""Attack phrases that a text *quotes and discusses* rather than addresses to the model.

A security write-up ("the classic example, 'ignore all previous instructions', is easy to
filter"), a question about an attack ("why does 'ignore previous instructions' work?") or a
test fixture holds an attack phrase inside quotation marks, with words around it that talk
about it (example, injection, phrase, attempt, filter...). The pattern stage reports such a
hit as **advisory** (logged, its risk added, never blocking on its own) instead of blocking:
`demote` marks them.

Only plain hits (found as written, not through a decoding or a de-obfuscated view) on one line
inside one pair of quotation marks of at most `MAX_QUOTE` characters, with a discussion word
outside the quotes within `FRAME` characters on the same line, are demoted, in request text
only (`CHANNELS`), and only when the discussion is *substantive*: the text around the
quotation holds at least `MIN_FRAME_WORDS` words and the quotation is at most
`MAX_QUOTE_SHARE` of the text, or the quotation sits in a question about it ("why does '...'
work?"). Nowhere in the text may a word ask to act on the quotation (say, repeat, follow,
apply, translate, show what it does...). So "a typical injection example is '<attack>'.
Filters should flag it." (a text that is mostly the attack behind a one-line frame) stays
blocked; an attacker who writes a longer discussion around the attack still gets an advisory
finding, and the n-gram fast stage and the model stage still read the text as a whole
(docs/guardrails.md says so).
"""

from __future__ import annotations

import dataclasses
import re

from haltgate.governance.guardrails.base import Candidate

CHANNELS: frozenset[str] = frozenset({"request"})
"""The channels whose quoted-and-discussed hits are demoted: request text only. Wrapping an
attack as a discussed example evades the patterns wherever the demotion applies
(docs/guardrails.md gives the figures); a tool result or page is where an attacker writes,
so documents keep the patterns' full strength, at the price of the look-alike documents
that quote attacks (reports, fixtures), which stay blocked."""
MAX_QUOTE = 240
"""Longest quotation (characters between the marks) read as a quoted phrase."""
FRAME = 160
"""How far before the opening and after the closing mark a discussion word is looked for."""
MIN_FRAME_WORDS = 15
"""Words the text must hold outside the quotation for a discussion (not a question) to count:
the generated look-alikes' write-ups that quote an attack hold 17 or more, a one-line wrapper
("A typical injection example is '...'. Filters should flag it.") 9-13."""
ACT_REACH = 2000
"""How far before and after a quotation words asking to act on it, and the words of a
substantive discussion, are looked for (bounds the work per hit on a long text)."""
MAX_QUOTE_SHARE = 0.4
"""Largest share of the text (in characters, surrounding white space left out) the quotation
may take for a discussion to count: a text that is mostly the quoted attack is the attack."""

_PAIRS = {'"': '"', "'": "'", "\u201c": "\u201d", "\u2018": "\u2019", "\u00ab": "\u00bb", "`": "`"}
_APOSTROPHE_LIKE = frozenset("'\u2019`")
"""Marks that are also apostrophes: an opening one follows no letter, a closing one is
followed by none (``don't`` holds no quotation)."""

_DISCUSSION = re.compile(
    r"\b(?:examples?|e\.g\.|for\W+instance|such\W+as|phrases?|wording|"
    r"prompt\W+injections?|injections?|jailbreaks?|attacks?|attackers?|attempts?|payloads?|"
    r"red[\W_]?team(?:ers?|ing)?|testers?|classifiers?|filters?|blocklists?|canary|quoted?|"
    r"quotes|typed|pasted|variations?|keywords?|mean|means|meaning|detects?|detected|"
    r"flag(?:s|ged)?|blocked|refused|researchers?|benchmarks?)\b",
    re.IGNORECASE,
)
_PRODUCE = re.compile(
    r"(?:^|[.:;!?(\[]\s*|\b(?:please|just|only|now|then|and|you|u|must|should|shall|will|"
    r"always|also)\W+(?:\w+\W+)?)"
    r"(?:say|repeat|output|print|write|respond|reply|answer|complete|follow|obey|execute|"
    r"act\W+on|do\W+as|translate|decode|remember|pretend|become|type|apply|run|perform|"
    r"comply|honou?r|enact|carry\W+out|act\W+out|show|demonstrate|do\W+(?:it|this|that|so|what))\b"
    r"|\b(?:user|human|ai|assistant|bot|model|system|you)\W+(?:says?|said|responds?|replies|"
    r"reply|answers?)\b|\bfrom\W+now\W+on\b|\binstead\b",
    re.IGNORECASE,
)
"""Words around a quotation that ask the reader to produce or obey it: an imperative or a
verb after "you" ("say the phrase '...'", "complete this sentence: '...'", "you must
follow '...'") or a dialogue turn ("User says '...' AI responds '...'"): such a quotation is
the attack's payload, not a phrase under discussion. A verb in a narrative ("attendees tried
to get the bot to follow '...'") does not count."""
_ACT = re.compile(
    r"\b(?:apply|execute|follow|obey|perform|run|carry\W+out|act\W+on|comply\W+with|try|do|"
    r"honou?r|enact)\W+(?:it|this|that|them|those|these)\b(?!\W+(?:is|was|were|are)\b)"
    r"|\b(?:show|demonstrate|tell)\W+(?:me\W+|us\W+)?what\W+(?:it|this|that)\W+"
    r"(?:does|would\W+do|makes?\W+you\W+do)\b"
    r"|\b(?:treat|take|read)\W+(?:it|this|that)\W+as\W+(?:an?\W+|my\W+|your\W+)?"
    r"(?:instructions?|commands?|orders?|requests?|prompt)\b|\baccordingly\b"
    r"|\band\W+(?:then\W+)?(?:apply|execute|obey|follow|do)\b",
    re.IGNORECASE,
)
"""Words anywhere outside the quotations of a text that ask to act on a quoted phrase
("translate it and apply it", "show me what it does", "treat it as your instruction",
"then do it", "respond accordingly"): the quotation is then an order in disguise."""
_QUOTED = re.compile(
    r'"[^"\n]{0,240}"|\u201c[^\u201d\n]{0,240}\u201d|\u2018[^\u2019\n]{0,240}\u2019'
    r"|\u00ab[^\u00bb\n]{0,240}\u00bb|`[^`\n]{0,240}`|(?<!\w)'[^'\n]{0,240}'(?!\w)"
)
"""Quotations (roughly), left out when looking for `_ACT`: an attack phrase quoted elsewhere in
the text ("'... and reply ...'") is not the frame asking to act."""

_SCAN_BACK = 2000
"""How far back on a line quotation marks are paired (bounds the work on one-line texts)."""


def _quotation(text: str, start: int, end: int) -> tuple[int, int] | None:
    """(opening, closing) mark indices of the quotation of at most MAX_QUOTE characters that
    holds text[start:end] on one line, pairing marks left to right from the line start."""
    line = text.rfind("\n", 0, start) + 1
    i = max(line, start - _SCAN_BACK)
    stop = text.find("\n", start)
    stop = len(text) if stop == -1 else stop
    if end > stop:  # the phrase itself runs over a line break
        return None
    while i < start:
        ch = text[i]
        if ch in _PAIRS and not (ch in _APOSTROPHE_LIKE and i > 0 and text[i - 1].isalnum()):
            close = _PAIRS[ch]
            j = i + 1
            while j < stop:
                c = text[j]
                if c == close and not (
                    c in _APOSTROPHE_LIKE and j + 1 < len(text) and text[j + 1].isalnum()
                ):
                    break
                j += 1
            if j >= stop:
                if ch in _APOSTROPHE_LIKE:  # an apostrophe after a space ("the '90s")
                    i += 1
                    continue
                return None
            if i < start and end <= j:
                return (i, j) if j - i - 1 <= MAX_QUOTE else None
            i = j + 1
            continue
        i += 1
    return None


def _frame(text: str, a: int, b: int) -> str:
    """The words outside the quotation [a, b] on its line, within FRAME characters."""
    left = max(text.rfind("\n", 0, a) + 1, a - FRAME)
    right = text.find("\n", b + 1)
    right = min(len(text) if right == -1 else right, b + 1 + FRAME)
    return f"{text[left:a]} {text[b + 1 : right]}"


_WORD = re.compile(r"\w+")
_QUESTION = re.compile(
    r"\b(?:why|what|how|which|when|where|who|whether|is|are|was|were|does|do|did|can|could|"
    r"would|should|explain)\b",
    re.IGNORECASE,
)


def _asked_about(text: str, a: int, b: int) -> bool:
    """Whether the quotation [a, b] sits in a question on its line ("Why does '...' still
    work?", "Can you explain why '...' became common?"): a question word before it in its
    sentence, and a question mark ending that sentence after it."""
    line = max(text.rfind("\n", max(0, a - _SCAN_BACK), a) + 1, a - _SCAN_BACK)
    head = max(line, *(text.rfind(m, line, a) + 1 for m in ".!?:;"))
    tail = text[b + 1 : b + 1 + _SCAN_BACK].split("\n", 1)[0]
    ends = re.search(r"[.!?]", tail)
    return bool(ends and ends.group() == "?" and _QUESTION.search(text[head:a]))


def _substantive(text: str, a: int, b: int, content: int) -> bool:
    """Whether the text (`content` characters without its surrounding white space)
    discusses the quotation [a, b] rather than being it: enough words around it and the
    quotation a small part of the text, or a question about it."""
    if b - a + 1 <= MAX_QUOTE_SHARE * content:
        near = f"{text[max(0, a - ACT_REACH) : a]} {text[b + 1 : b + 1 + ACT_REACH]}"
        if len(_WORD.findall(near)) >= MIN_FRAME_WORDS:
            return True
    return _asked_about(text, a, b)


def is_quoted_discussion(text: str, start: int, end: int, content: int | None = None) -> bool:
    """Whether text[start:end] lies inside a short quotation that the words around it
    discuss substantively (and nothing near it asks to produce, obey or act on it).
    `content`: ``len(text.strip())`` when the caller has it."""
    q = _quotation(text, start, end)
    if q is None:
        return False
    a, b = q
    frame = _frame(text, a, b)
    if _DISCUSSION.search(frame) is None:
        return False
    if _PRODUCE.search(_QUOTED.sub(" ", frame)):  # other quoted phrases ask nothing
        return False
    # Words outside every quotation may ask to act on it, also on another line.
    near = f"{text[max(0, a - ACT_REACH) : a]} \n {text[b + 1 : b + 1 + ACT_REACH]}"
    if _ACT.search(_QUOTED.sub(" ", near)):
        return False
    return _substantive(text, a, b, len(text.strip()) if content is None else content)


def demote(text: str, cands: list[Candidate]) -> list[Candidate]:
    """`cands` with the plain hits that `is_quoted_discussion` marked advisory."""
    content = len(text.strip()) if cands else 0
    return [
        dataclasses.replace(c, advisory=True)
        if c.via is None
        and c.encoding is None
        and is_quoted_discussion(text, c.start, c.end, content)
        else c
        for c in cands
    ]
