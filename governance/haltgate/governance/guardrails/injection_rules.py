"""The prompt-injection rule tables: the phrase patterns of each attack family.

One row per rule: family, weight, lead, where the regex is tried, trigger words, pattern.
`RULES` run on the folded (lower-case) views of a text, `SQUASHED_RULES` on the squashed view
(letters only, no separators). How the rules are matched is in `rule_matching`, how their hits
are scored in `injection`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Rule:
    family: str
    weight: float
    triggers: tuple[str, ...]
    """Substrings of which one must be in the (folded) text for the rule to run at all:
    a C-speed `in` test that skips most rules on most texts."""
    pattern: str
    lead: int = 120
    """How far before a trigger occurrence a match can start, in characters."""
    anchored: bool = False
    """The trigger is part of the match's first word: the regex is tried only at the start
    of each word holding a trigger (``re.match``), no window is scanned."""


_AT_WORD: Final = True
"""Row mode: the regex is tried only at the start of each word holding a trigger."""
_NEAR: Final = False
"""Row mode: the regex is scanned over a window around each trigger occurrence."""

_IGNORE = "ignore_instructions"
_NEW = "new_instructions"
_ROLE = "role_override"
_PROMPT = "prompt_exfiltration"
_TEMPLATE = "chat_template"
_ADDRESSED = "addressed_to_ai"
_DATA = "data_exfiltration"
_SAFETY = "safety_bypass"
_CONCEAL = "concealment"
_TOOL = "tool_coercion"

_Row = tuple[str, float, int, bool, tuple[str, ...], str]


def _w(words: str) -> tuple[str, ...]:
    """Trigger words written as one space-separated string."""
    return tuple(words.split())


def _table(*rows: _Row) -> tuple[Rule, ...]:
    return tuple(
        Rule(family, weight, triggers, pattern, lead=lead, anchored=anchored)
        for family, weight, lead, anchored, triggers, pattern in rows
    )


_S = r"[\s\W_]+"  # separator between words: whitespace and punctuation, at least one
# separator inside one phrase: no sentence end ("Updated.\n  * rules:" is two of them)
_S_PHRASE = r"[\s_\-*~|/>#\"'`]+"
_F = r"(?:[a-z'\u2019]+[\s\W_]+){0,3}?"  # up to three filler words ("all of the", "your")

_VERB_IGNORE = (
    r"(?:ignore|ignoring|disregard|disregarding|forget|forgetting|override|bypass|neglect|"
    r"abandon|discard|cancel)"
)
_QUAL = (
    r"(?:previous|previously|prior|above|earlier|preceding|former|initial|original|old|"
    r"existing|system|developer|safety|all|any|every)"
)
_RULE_NOUN = (
    r"(?:instructions?|directions?|directives?|rules|prompts?|guidelines|guidance|commands?|"
    r"constraints|restrictions|polic(?:y|ies)|programming|guardrails|safeguards|orders|"
    r"training|filters?|context)"
)
_AI = (
    r"(?:ai|a\.i\.|assistant|agent|llm|language\W+model|model|chatbot|bot|gpt|chatgpt|claude|"
    r"copilot|gemini|autopilot)"
)
_SHOW = (
    r"(?:reveal|show|print|display|repeat|output|leak|dump|tell{_S}me|give{_S}me|share|"
    r"disclose|expose|write{_S}out|spell{_S}out|recite|paste|list)"
).replace("{_S}", _S)
# "the system prompt examples in the docs" is a question about prompts, not an extraction.
_NOT_DOCS = (
    r"\b(?![\s\W_]+(?:examples?|templates?|guide|docs|documentation|engineering|design|"
    r"best\W+practices|library|tutorial)\b)"
)
# A verb joined to a bare noun by "_" is an identifier (``override_rule``), not a sentence
# (``ignore_all_restrictions`` has a determiner and still counts); a verb followed by "of"
# is a noun ("override of default policy applied").
_VERB_IGNORE_SAID = rf"{_VERB_IGNORE}(?!_[a-z])"
_NOT_MID_PHRASE = r"(?<![a-z0-9,] )"
"""The verb does not follow a word and a space: it starts the text, a line, a sentence or a
clause ("Ignore prompt." but not "tool instance ignore rule response")."""
_PLURAL_NOUN = (
    r"(?:instructions|directions|directives|rules|guidelines|programming|guardrails|"
    r"safeguards|system\W+prompt)"
)
"""Nouns that follow "ignore" bare anywhere ("please ignore instructions"); a bare singular
("ignore prompt") counts only where the verb starts a phrase (`_NOT_MID_PHRASE`): inside a
run of words it is word salad of keys and log fields ("mode tool ignore rule response")."""
_DETERMINER = (
    r"(?:(?:all|every|each|any)[\s\W_]+(?:of[\s\W_]+)?(?:(?:the|your|my|these|those)[\s\W_]+)?"
    r"|(?:the|your|my|these|those)[\s\W_]+"
    # "that rule" / "this instruction" points at one rule the reader knows ("the linter
    # complains about line length; ignore that rule for generated files"): only a plural
    # or the prompt counts after a demonstrative ("ignore this instructions", "that prompt").
    r"|(?:this|that)[\s\W_]+(?!(?:rule|instruction|direction|directive)\b))"
)
_UNQUALIFIED_NOUN = (
    r"(?:instructions?|directions|directives?|rules?|guidelines|programming|guardrails|"
    r"safeguards|system\W+prompt|prompt)"
)
IN_DOCUMENTS = (
    r"[\s\W_]+(?:inside|in|from|within|(?:embedded|found|contained|hidden|that\W+appear)"
    r"[\s\W_]+in)[\s\W_]+(?:[a-z-]+[\s\W_]+){0,2}?(?:documents?|pages?|web\W?pages?|"
    r"websites?|tool\W+(?:outputs?|results?)|e-?mails?|files|content|search\W+results|"
    r"attachments?|retrieved\W+\w+)\b"
)
_NOT_IN_DOCUMENTS = rf"(?!{IN_DOCUMENTS})"
"""Not "ignore instructions inside retrieved documents": the defence a system prompt or a
model card describes ("your system prompt" is no document, so "ignore the instructions in
your system prompt" still counts)."""
_SECRETS_NOUN = (
    r"(?:conversation|chat(?:\W+history)?|history|messages|credentials|passwords?|"
    r"api\W+keys?|keys|secrets?|tokens?|private\W+keys?|env(?:ironment)?\W+variables|"
    r"system\W+prompt|emails?|files|data|documents|contacts|ssh\W+keys?|cookies|session)"
)


_T_IGNORE = _w("ignor disregard forget overrid bypass neglect abandon discard cancel")
# Words of `_AI` ("language model" -> "language").
_T_AI = _w(
    "ai a.i assistant agent llm language model chatbot bot gpt chatgpt claude copilot gemini"
    " autopilot"
)
# First words of `_SHOW` ("tell me" -> "tell").
_T_SHOW = _w(
    "reveal show print display repeat output leak dump tell give share disclose expose write spell"
    " recite paste list"
)

# Regular-view rules, matched on folded (lower-case) text.
# fmt: off
RULES: tuple[Rule, ...] = _table(
    (_IGNORE, 0.95, 0, _AT_WORD, _T_IGNORE,
     rf"\b{_VERB_IGNORE}{_S}(?!of\b){_F}{_QUAL}{_S}{_F}{_RULE_NOUN}\b"),
    (_IGNORE, 0.9, 0, _AT_WORD, _T_IGNORE,
     rf"\b{_VERB_IGNORE}{_S}(?:all{_S}|everything{_S})?(?:of{_S})?(?:the{_S}|that{_S})?"
     rf"(?:above|before|said\W+before|you\W+(?:were|have\W+been)\W+told)\b"),
    (_IGNORE, 0.9, 0, _AT_WORD, _T_IGNORE,
     rf"(?:\b{_VERB_IGNORE}{_S}{_DETERMINER}{_UNQUALIFIED_NOUN}"
     rf"|\b{_VERB_IGNORE_SAID}{_S}{_PLURAL_NOUN}"
     rf"|{_NOT_MID_PHRASE}\b{_VERB_IGNORE_SAID}{_S}{_UNQUALIFIED_NOUN})\b{_NOT_IN_DOCUMENTS}"),
    (_IGNORE, 0.85, 0, _AT_WORD, _T_IGNORE,
     rf"\b{_VERB_IGNORE}{_S}(?:everything{_S}|what{_S}|anything{_S})(?:that{_S})?"
     rf"(?:the{_S})?(?:user|human|they|you|he|she|i){_S}(?:were{_S}|was{_S}|have{_S}been"
     rf"{_S}|has{_S}been{_S})?(?:asked|said|told|requested|wants?|instructed|given)\b"),
    (_IGNORE, 0.9, 30, _AT_WORD, _w("do don never stop quit cease"),
     rf"\b(?:do\W+not|don'?t|never|stop|quit|cease){_S}(?:follow|following|obey|obeying|"
     rf"listen\W+to|listening\W+to){_S}{_F}"
     rf"(?:previous|prior|above|original|system|your){_S}{_F}{_RULE_NOUN}\b"),
    (_NEW, 0.7, 40, _AT_WORD,
     _w("new updated revised real actual true secret hidden additional override"),
     rf"\b(?:new|updated|revised|real|actual|true|secret|hidden|additional|override)"
     rf"{_S_PHRASE}(?:system{_S_PHRASE})?(?:instructions?|directives?|prompt|orders|task|rules)"
     rf"\s*:"),
    (_NEW, 0.75, 30, _AT_WORD, _w("your"),
     rf"\byour{_S}(?:new|real|actual|true|only){_S}(?:task|goal|objective|purpose|"
     rf"instructions?|role|job|mission){_S}(?:is|are|will\W+be)\b"),
    (_NEW, 0.6, 15, _AT_WORD, _w("from"),
     rf"\bfrom{_S}now{_S}on{_S}{_F}(?:you|your|the{_S}assistant|assistant|ai)"
     rf"{_S}(?:will|are|must|shall|should|only|have\W+to|answer|respond|reply|act|"
     rf"obey|follow)\b"),
    (_ROLE, 0.9, 40, _AT_WORD, _w("you"),
     rf"\byou{_S}are{_S}(?:now{_S})?(?:dan|stan|dude|aim|evilbot|"
     rf"(?:an?{_S})?(?:unrestricted|unfiltered|uncensored|jailbroken|evil|rogue|"
     rf"amoral|unaligned|unbound|limitless)\b)"),
    (_ROLE, 0.9, 60, _AT_WORD, _w("act behave respond answer roleplay role-play"),
     rf"\b(?:act|behave|respond|answer|roleplay|role-play){_S}as{_S}(?:if{_S}you{_S}"
     rf"(?:are|were){_S})?(?:an?{_S})?(?:unrestricted|unfiltered|uncensored|jailbroken|"
     rf"evil|amoral|rogue|unaligned)\b"),
    (_ROLE, 0.9, 10, _AT_WORD, _w("do"),
     rf"\bdo{_S}anything{_S}now\b"),
    (_ROLE, 0.9, 40, _AT_WORD, _w("developer god jailbreak jailbroken dan unrestricted sudo"),
     rf"\b(?:developer|god|jailbreak|jailbroken|dan|unrestricted|sudo)"
     rf"{_S}mode{_S}(?:is{_S})?(?:enabled|activated|on|unlocked)\b"),
    (_ROLE, 0.9, 40, _AT_WORD, _w("enable activate enter switch unlock"),
     rf"\b(?:enable|activate|enter|switch\W+to|unlock){_S}(?:the{_S})?(?:developer|god|"
     rf"jailbreak|dan|unrestricted){_S}mode\b"),
    (_ROLE, 0.85, 0, _AT_WORD, _w("pretend"),
     rf"\bpretend{_S}(?:that{_S})?(?:you{_S}(?:are|have|were)|to{_S}be){_S}{_F}"
     rf"(?:no|without|free\W+of|not\W+bound\W+by){_S}{_F}(?:restrictions|limits|"
     rf"limitations|rules|filters|guidelines|ethics|morals|policies)\b"),
    (_ROLE, 0.45, 0, _AT_WORD, _w("jailbr"),
     r"\bjailbr(?:ea|o)k(?:en|ing|s)?\b"),
    (_ROLE, 0.4, 20, _AT_WORD, _w("stay remain break"),
     rf"\b(?:stay|remain){_S}in{_S}character\b|\bbreak{_S}character\b"),
    (_PROMPT, 0.85, 80, _AT_WORD, _T_SHOW,
     rf"\b{_SHOW}{_S}{_F}(?:system|initial|original|hidden|secret|internal|developer|"
     rf"confidential|pre-?prompt){_S}(?:system{_S})?(?:prompt|instructions|message|"
     rf"directives|configuration|rules){_NOT_DOCS}"),
    (_PROMPT, 0.8, 80, _AT_WORD, _T_SHOW,
     rf"\b{_SHOW}{_S}{_F}(?:full|entire|complete|exact|whole|verbatim){_S}"
     rf"(?:system{_S}prompt|prompt|initial{_S}instructions){_NOT_DOCS}"),
    (_PROMPT, 0.8, 0, _AT_WORD, _w("what"),
     rf"\bwhat{_S}(?:is|are|were|was){_S}your{_S}(?:system{_S}prompt|initial{_S}"
     rf"instructions|original{_S}instructions|instructions|rules|hidden\W+\w+)\b"),
    (_PROMPT, 0.8, 0, _AT_WORD, _w("repeat print output copy reproduce recite"),
     rf"\b(?:repeat|print|output|copy|reproduce|recite){_S}(?:everything|all|the{_S}"
     rf"(?:text|words|lines)|the{_S}conversation){_S}(?:above|before|so{_S}far|"
     rf"starting{_S}with)\b"),
    (_TEMPLATE, 0.9, 0, _AT_WORD, ("<|", "< |"),
     r"<\|\s*(?:im_start|im_end|system|user|assistant|endoftext|eot_id|start_header_id|"
     r"end_header_id|begin_of_text)\s*\|>"),
    (_TEMPLATE, 0.85, 0, _AT_WORD, _w("[inst] [/inst] <<sys>> <</sys>>"),
     r"\[/?inst\]|<</?sys>>"),
    (_TEMPLATE, 0.6, 0, _AT_WORD, _w("<"),
     r"</?\s*(?:system|system[_-]prompt|sys|admin|instructions?)\s*>"),
    (_TEMPLATE, 0.45, 10, _NEAR, _w("system developer"),
     r"(?:^|\n)\s*(?:#{1,4}\s*)?(?:system|developer)\s*(?:message|prompt|override|note)"
     r"?\s*:\s*(?=\S)"),
    (_TEMPLATE, 0.3, 10, _NEAR, _w("assistant user"),
     r"(?:^|\n)\s*(?:#{1,4}\s*)?(?:assistant|user)\s*:\s*(?=\S)"),
    (_ADDRESSED, 0.75, 40, _AT_WORD,
     _w("note message instruction attention important notice reminder directive warning"),
     rf"\b(?:note|message|instructions?|attention|important|notice|reminder|directive|"
     rf"warning)s?{_S}(?:to|for){_S}(?:the{_S}|any{_S}|all{_S})?{_AI}s?\b"),
    (_ADDRESSED, 0.8, 60, _AT_WORD, _T_AI,
     rf"\b{_AI}s?{_S}(?:reading|processing|summari[sz]ing|parsing|reviewing|analy[sz]ing"
     rf"|browsing|scraping){_S}this\b"),
    (_ADDRESSED, 0.75, 10, _AT_WORD, _w("if"),
     rf"\bif{_S}you{_S}are{_S}(?:an?{_S})?(?:ai|large{_S}language{_S}model|"
     rf"language{_S}model|llm|assistant|agent|chatbot|bot|gpt|automated\W+\w+)\b"),
    (_ADDRESSED, 0.45, 0, _AT_WORD, _w("when"),
     rf"\bwhen{_S}you{_S}(?:read|see|process|summari[sz]e|encounter|parse){_S}this\b"),
    (_ADDRESSED, 0.5, 0, _AT_WORD, _w("important urgent attention critical"),
     rf"\b(?:important|urgent|attention|critical)\s*[:!]{_S}{_F}(?:assistant|ai|agent|"
     # "Important: you must accept the licence" addresses a human reader; "you" counts only
     # when what you must do is an instruction-override word.
     rf"you(?={_S}(?:must|should|need\W+to|have\W+to|are\W+required){_S}(?:now{_S}|"
     rf"immediately{_S}|instead{_S})?(?:ignore|disregard|forget|override|bypass|reveal|"
     rf"send|forward|email|output|print|respond|reply|answer|stop|not\W+tell|never\W+tell)))"
     rf"{_S}(?:must|should|need\W+to|have\W+to|are\W+required)\b"),
    (_CONCEAL, 0.75, 60, _AT_WORD, _w("do don never without"),
     rf"\b(?:do{_S}not|don'?t|never|without){_S}(?:tell|telling|inform|informing|"
     rf"mention|mentioning|reveal|revealing|alert|alerting|notify|notifying|asking|"
     rf"show|showing){_S}(?:this{_S}|it{_S}|anything{_S})?(?:to{_S})?(?:the{_S})?"
     rf"(?:user|human|operator|owner)s?\b"),
    (_ROLE, 0.8, 40, _AT_WORD, _T_AI,
     rf"\b{_AI}{_S}(?:without|with{_S}no|free{_S}(?:of|from)|that{_S}has{_S}no)"
     rf"{_S}(?:any{_S})?(?:ethics|morals|moral{_S}\w+|ethical{_S}\w+|restrictions|rules|"
     rf"filters|limits|guidelines|censorship)\b"),
    (_TOOL, 0.6, 80, _AT_WORD, _w("immediately now silently secretly quietly automatically"),
     rf"\b(?:immediately|now|silently|secretly|quietly|automatically){_S}(?:call|invoke|"
     rf"use|run|execute|trigger){_S}(?:the{_S})?[\w.-]+{_S}(?:tool|function|command|api|"
     rf"endpoint|action)\b"),
    (_DATA, 0.55, 60, _AT_WORD, _w("send email mail forward post upload leak exfiltrate transmit"),
     rf"\b(?:send|email|mail|forward|post|upload|leak|exfiltrate|transmit){_S}(?:me{_S})?"
     rf"(?:all{_S})?(?:of{_S})?(?:the{_S}|your{_S}|my{_S}|any{_S}|their{_S})?"
     rf"(?:api{_S}keys?|passwords|credentials|secrets|private{_S}keys?|ssh{_S}keys?|"
     rf"access{_S}tokens|env(?:ironment)?{_S}variables|system{_S}prompt|"
     rf"(?:conversation|chat){_S}history)\b"),
    (_CONCEAL, 0.5, 0, _AT_WORD, _w("secretly silently covertly"),
     rf"(?<!n't )(?<!not )(?<!never )\b(?:secretly|silently|covertly){_S}(?:send|call|execute|"
     rf"run|forward|email|post|upload|transfer|delete)\b"),
    (_DATA, 0.8, 0, _AT_WORD,
     _w("send post upload forward mail transmit exfiltrate leak copy transfer"),
     rf"\b(?:send|post|upload|forward|email|mail|transmit|exfiltrate|leak|copy|"
     rf"transfer){_S}{_F}{_SECRETS_NOUN}{_S}{_F}(?:to){_S}"
     rf"(?:https?://|[\w.+-]+@[\w-]+\.|this{_S}(?:url|address|email|server|endpoint|"
     rf"webhook)|the{_S}following|attacker|my{_S}(?:server|email|endpoint))"),
    (_DATA, 0.6, 0, _AT_WORD, _w("!["),
     r"!\[[^\]\n]{0,100}\]\(\s*https?://[^)\s]{0,300}[?&](?:data|d|q|secret|password|"
     r"token|key|history|conversation|chat|msg|content|info|exfil|leak|p)=[^)\s]*"
     r"(?:\{|\$|<|%7b|\[)"),
    (_SAFETY, 0.8, 80, _AT_WORD,
     _w("disable turn bypass ignor deactivate circumvent overrid switch remove drop"),
     rf"\b(?:disable|turn{_S}off|bypass|ignore|deactivate|circumvent|override|switch"
     rf"{_S}off|remove|drop){_S}{_F}(?:safety|content|ethical|moral|security)?{_S}?"
     rf"(?:filters?|filtering|guardrails|safeguards|censorship|safety{_S}(?:guidelines"
     rf"|measures|protocols|checks|features|training|policies)|ethical{_S}guidelines"
     rf"|content{_S}polic(?:y|ies))\b"),
    (_SAFETY, 0.35, 40, _AT_WORD, _w("without no"),
     rf"\b(?:without|no){_S}(?:any{_S})?(?:restrictions|limitations|filters|censorship"
     rf"|ethical{_S}(?:guidelines|constraints)|moral{_S}(?:guidelines|constraints))\b"),
    # Families added after the first evaluation round (see docs/guardrails.md, section 6).
    (_SAFETY, 0.8, 60, _NEAR, _w("restriction filter safety guardrail polic rules censorship"),
     rf"\b(?:your|the|all|any|these){_S}(?:usual{_S}|content{_S}|safety{_S})?"
     rf"(?:restrictions|filters|safety{_S}(?:layer|filters?|features|settings)|guardrails|"
     rf"content{_S}polic(?:y|ies)|rules|censorship){_S}(?:are|is|were|have{_S}been|has"
     rf"{_S}been){_S}(?:now{_S})?(?:disabled|removed|lifted|off|turned{_S}off|suspended|"
     rf"void|gone|deactivated)\b"),
    (_SAFETY, 0.75, 30, _AT_WORD, _w("not never stop"),
     rf"\b(?:not|never|stop)\W+(?:apply|applying|use|using|follow|following){_S}(?:your|the|"
     rf"any)?{_S}?(?:usual{_S})?(?:restrictions|filters|rules|guidelines|policies)\b"),
    (_NEW, 0.8, 120, _AT_WORD, _w("above before previous earlier"),
     rf"\b(?:above|before|previous|earlier){_S}(?:\w+{_S}){{0,4}}?(?:was|were|is){_S}(?:just"
     rf"{_S}|only{_S})?(?:a{_S}|an{_S})?(?:test|example|joke|draft|placeholder|warm-?up|"
     rf"obsolete|void|fake)\b[^.!?\n]{{0,3}}[.!?\n]?{_S}(?:\w+{_S}){{0,3}}?(?:the{_S})?"
     rf"(?:real|actual|new|true){_S}(?:task|request|instructions?|question|goal)\b"),
    (_NEW, 0.75, 40, _AT_WORD, _w("supersede overrides replaces takes treat consider use"),
     rf"\b(?:supersedes?|overrides|replaces|takes{_S}precedence{_S}over){_S}(?:all{_S}|any"
     rf"{_S})?(?:prior|previous|earlier|your|the{_S}(?:system|previous|prior))"
     rf"{_S}(?:\w+{_S})?(?:guidance|instructions|rules|prompt|directives|message)\b"
     rf"|\b(?:treat|consider|use){_S}(?:this|the{_S}(?:next|following){_S}\w+){_S}as{_S}"
     rf"(?:your|the){_S}(?:new{_S})?system{_S}(?:message|prompt|instructions)\b"),
    (_ROLE, 0.8, 30, _AT_WORD, _w("maintenance debug god admin root unrestricted developer test"),
     rf"\b(?:maintenance|debug|god|admin|root|unrestricted|developer|test){_S}mode\b[^.\n]{{0,40}}"
     rf"\b(?:must|will|shall|can{_S}now|now{_S}(?:execute|run|answer|output))\b"),
    (_ROLE, 0.75, 24, _NEAR, ("i am", "i'm", "im ", "message is from", "this is"),
     rf"\b(?:i{_S}am|i'?m|this{_S}(?:message{_S})?is{_S}from)\W+(?:\w+{_S}){{0,3}}?"
     rf"(?:developer|admin|administrator|owner|staff|employee|creator|operator)s?\b"
     rf"[^.!?\n]{{0,80}}(?:disabled|off|lifted|removed|authori[sz]ed|approved|suspended|"
     rf"not{_S}apply|ignore|bypass)\b"),
    (_PROMPT, 0.8, 60, _AT_WORD,
     _w("hidden secret confidential initial original text instructions"),
     rf"\b(?:hidden|secret|confidential|initial|original){_S}(?:preamble|directives|"
     rf"instructions|configuration|setup)\b|\btext{_S}(?:that{_S})?(?:appears{_S})?before"
     rf"{_S}my{_S}first{_S}message\b|\binstructions{_S}you{_S}were{_S}(?:initiali[sz]ed|"
     rf"configured|set{_S}up|given){_S}with\b"),
    (_IGNORE, 0.9, 60, _AT_WORD, _w("ignor vergiss missachte olvid oubli dimentica esque negeer"),
     r"\b(?:ignoriere?|vergiss|missachte)\W+(?:alle\W+)?(?:vorherigen\W+|bisherigen\W+|"
     r"deine\W+)?(?:anweisungen|regeln|instruktionen)\b"
     r"|\b(?:ignora|olvida|olvide)\W+(?:todas\W+)?(?:las\W+|tus\W+)?(?:instrucciones|reglas)"
     r"|\b(?:ignore|oublie|oubliez|ignorez)\W+(?:toutes\W+)?(?:les\W+|tes\W+|vos\W+)?"
     r"(?:instructions|règles|consignes)" + _NOT_IN_DOCUMENTS +
     r"|\b(?:ignora|dimentica)\W+(?:tutte\W+)?(?:le\W+)?(?:istruzioni|regole)"
     r"|\b(?:ignore|esqueça)\W+(?:todas\W+)?(?:as\W+)?(?:instruções|regras)"
     r"|\bnegeer\W+(?:alle\W+)?(?:vorige\W+|eerdere\W+)?(?:instructies|regels)"),
    # Broader families (semantic slots: verb of setting aside x a rule noun within a few
    # words), written from the training corpora, so paraphrases need not repeat a fixed phrase.
    (_IGNORE, 0.85, 80, _AT_WORD, _w("set put lay leave consider treat regard deja mets lege"),
     rf"\b(?:set|put|lay|leave){_S}{_F}{_RULE_NOUN}{_S}{_F}aside\b"
     rf"|\b(?:set|put|lay){_S}aside{_S}{_F}{_RULE_NOUN}\b"
     rf"|\b(?:consider|treat|regard){_S}{_F}{_RULE_NOUN}{_S}(?:as{_S})?(?:void|cancell?ed|"
     rf"revoked|null|obsolete|invalid|suspended|lifted)\b"
     r"|\bdeja\W+de\W+lado\W+(?:\w+\W+){0,2}(?:instrucciones|reglas|directrices|normas)"
     r"|\bmets\W+de\W+c[oô]t[eé]\W+(?:\w+\W+){0,2}(?:r[eè]gles|consignes|instructions)"
     r"|\blege\W+(?:\w+\W+){0,2}(?:regeln|anweisungen|vorgaben|richtlinien)\W+beiseite"),
    # A markdown image or link whose URL query carries a placeholder naming private
    # content: the reader's client would send that content to the URL's host.
    # Images load without a click, so a named placeholder suffices; a link needs a
    # template marker ({, <, $) too ("search?q=token+refresh" is an ordinary link).
    (_DATA, 0.7, 0, _NEAR, _w("![ ]("),
     r"(?:!\[[^\]\n]{0,100}\]\(\s*(?:https?:)?//[^)\s]{0,300}[?&][^)\s]{0,100}?"
     r"|\[[^\]\n]{0,100}\]\(\s*(?:https?:)?//[^)\s]{0,300}[?&][^)\s]{0,100}?"
     r"(?:\{|\$|<|%7b|%3c)[^)\s]{0,20}?)"
     r"(?:history|conversation|messages|password|secret|api[_\W]?key|token|"
     r"system[_\W]?prompt|credentials|chat)"),
    (_SAFETY, 0.85, 60, _AT_WORD, _w("your"),
     rf"\byour{_S}(?:safety{_S}|content{_S}|usage{_S}|ethical{_S}|original{_S})?"
     rf"(?:guidelines|rules|restrictions|filters|polic(?:y|ies)|safety{_S}(?:layer|"
     rf"settings|training)|guardrails|safeguards){_S}(?:have{_S}been|has{_S}been|are|is)"
     rf"{_S}(?:now{_S})?(?:revoked|lifted|suspended|disabled|removed|switched{_S}off|"
     rf"turned{_S}off|void|cancell?ed)\b"),
    (_IGNORE, 0.85, 60, _AT_WORD,
     ("olvid", "ignor", "no ", "oubli", "ne ", "vergiss", "missacht", "befolge"),
     r"\b(?:olvida|olvide|ignora|ignore|no\W+sigas|no\W+obedezcas)\W+(?:\w+\W+){0,3}"
     r"(?:instrucciones|indicaciones|directrices|reglas|normas)\b"
     r"|\b(?:oublie|oubliez|ignore|ignorez|ne\W+suis\W+plus|ne\W+tiens\W+plus\W+compte\W+de)"
     # (also English: "ignore the following instructions", "ignore ur instructions"; not
     # data words: "ignore unknown instructions in old config files" is a parser's comment)
     r"\W+(?!(?:unknown|invalid|unsupported|unrecognized|malformed|duplicate|deprecated|"
     r"empty|missing|extra|optional)\b)(?:\w+\W+){0,3}(?:consignes|directives|r[eè]gles|"
     r"instructions)\b" + _NOT_IN_DOCUMENTS +
     r"|\b(?:vergiss|ignoriere|missachte|befolge\W+nicht\W+mehr)\W+(?:\w+\W+){0,3}"
     r"(?:anweisungen|vorgaben|richtlinien|regeln)\b"),
    (_ROLE, 0.8, 60, _AT_WORD, ("ia", "ki", "sin ", "sans ", "ohne "),
     r"\b(?:ia|ki)\W+(?:\w+\W+){0,2}(?:sin\W+(?:ninguna\W+)?(?:restricciones|filtros|"
     r"l[ií]mites)|sans\W+(?:aucune?\W+)?(?:restrictions?|filtres?|limites?)|"
     r"ohne\W+(?:jegliche\W+)?(?:einschr[aä]nkungen|filter|grenzen|regeln))\b"),
)

# Squashed-view rules (letters only, no separators): the strong phrases again, so split and
# spaced-out words are caught.
SQUASHED_RULES: tuple[Rule, ...] = _table(
    (_IGNORE, 0.95, 0, _AT_WORD, _T_IGNORE,
     r"(?:ignore|disregard|forget|override|bypass)(?:all|any|of|the|your|my){0,3}"
     r"(?:previous|prior|above|earlier|preceding|initial|original|system|developer)"
     r"(?:instructions?|directions?|rules|prompts?|guidelines|guidance|commands|directives|"
     r"programming|constraints)"),
    (_IGNORE, 0.9, 0, _AT_WORD, _T_IGNORE,
     r"(?:ignore|disregard|forget|override)(?:(?:all|any|the|your|my|of|every){1,3}"
     r"(?:instructions?|rules?|guidelines|guidance|directions|directives|programming|"
     r"systemprompt)|(?:instructions|rules|guidelines|guidance|directions|directives|"
     r"programming|systemprompt))"),
    (_IGNORE, 0.85, 0, _AT_WORD, _T_IGNORE,
     r"(?:ignore|disregard|forget)(?:all|everything|what)?(?:of)?(?:the)?(?:above|before|"
     r"youweretold|youhavebeentold|theuserasked|theusersaid)"),
    (_DATA, 0.55, 0, _AT_WORD, _w("send email forward post upload leak exfiltrate"),
     r"(?:send|email|forward|post|upload|leak|exfiltrate)(?:me|all|the|your|my|any|of){0,3}"
     r"(?:apikeys?|passwords|credentials|secrets|privatekeys?|sshkeys?|accesstokens|"
     r"envvariables|environmentvariables|systemprompt|conversationhistory|chathistory)"),
    (_ROLE, 0.9, 20, _AT_WORD, _w("doanythingnow developer jailbreak dan god enable activate"),
     r"doanythingnow|(?:developer|jailbreak|dan|god)mode(?:is)?"
     r"(?:enabled|activated|on)|(?:enable|activate)(?:the)?"
     r"(?:developer|jailbreak|dan|god)mode"),
    (_ROLE, 0.9, 0, _AT_WORD, _w("youarenow"),
     r"youarenow(?:dan|an?unrestricted|unrestricted|jailbroken|"
     r"unfiltered|uncensored|evil)"),
    (_PROMPT, 0.85, 40, _AT_WORD, _w("reveal show print repeat leak dump tellme output disclose"),
     r"(?:reveal|show|print|repeat|leak|dump|tellme|output|disclose)(?:me|your|the|all){0,3}"
     r"(?:system|initial|original|hidden|secret)(?:prompt|instructions)"
     r"(?!examples?|templates?|guide|docs|documentation|engineering|design|bestpractices|"
     r"library|tutorial)"),
    (_SAFETY, 0.8, 40, _AT_WORD, _w("disable turnoff bypass deactivate circumvent"),
     r"(?:disable|turnoff|bypass|deactivate|circumvent)(?:your|all|the|any){0,2}"
     r"(?:safety|content)?(?:filters?|guardrails|safeguards|censorship)"),
)
# fmt: on
