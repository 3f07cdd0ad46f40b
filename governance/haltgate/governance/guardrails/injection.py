"""Prompt-injection and jailbreak detection.

Layered:

1. Pattern stage (always, fast): phrase patterns of the known attack families matched on every
   normalised view of the text (`normalize.views`: homoglyphs, invisible characters,
   leetspeak, split words, rot13, base64/hex/percent/tag-character payloads). Each family has a
   weight; the text's score is the noisy-or of the strongest hit per family, so one strong
   phrase or several weak ones cross the threshold. A hit exposed only by de-obfuscation
   scores higher: hiding an instruction is itself a signal.
2. Model stage (optional, `haltgate[guard-model]`): see `model.py`. It is consulted for texts
   whose pattern score is below the threshold, and can only add findings.

Families (the `type` of a finding): ``ignore_instructions``, ``new_instructions``,
``role_override``, ``prompt_exfiltration``, ``chat_template``, ``addressed_to_ai``,
``data_exfiltration``, ``safety_bypass``, ``concealment``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import ahocorasick

from haltgate.governance.guardrails import normalize
from haltgate.governance.guardrails.base import Candidate

NAME = "prompt_injection"

_S = r"[\s\W_]+"  # separator between words: whitespace and punctuation, at least one
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
_UNQUALIFIED_NOUN = (
    r"(?:instructions?|directions|directives?|rules?|guidelines|programming|guardrails|"
    r"safeguards|system\W+prompt|prompt)"
)
_SECRETS_NOUN = (
    r"(?:conversation|chat(?:\W+history)?|history|messages|credentials|passwords?|"
    r"api\W+keys?|keys|secrets?|tokens?|private\W+keys?|env(?:ironment)?\W+variables|"
    r"system\W+prompt|emails?|files|data|documents|contacts|ssh\W+keys?|cookies|session)"
)


_T_IGNORE = (
    "ignor",
    "disregard",
    "forget",
    "overrid",
    "bypass",
    "neglect",
    "abandon",
    "discard",
    "cancel",
)
# Words of `_AI` ("language model" -> "language").
_T_AI = (
    "ai",
    "a.i",
    "assistant",
    "agent",
    "llm",
    "language",
    "model",
    "chatbot",
    "bot",
    "gpt",
    "chatgpt",
    "claude",
    "copilot",
    "gemini",
    "autopilot",
)
# First words of `_SHOW` ("tell me" -> "tell").
_T_SHOW = (
    "reveal",
    "show",
    "print",
    "display",
    "repeat",
    "output",
    "leak",
    "dump",
    "tell",
    "give",
    "share",
    "disclose",
    "expose",
    "write",
    "spell",
    "recite",
    "paste",
    "list",
)


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


# Regular-view rules, matched on folded (lower-case) text.
RULES: tuple[Rule, ...] = (
    Rule(
        "ignore_instructions",
        0.95,
        _T_IGNORE,
        rf"\b{_VERB_IGNORE}{_S}{_F}{_QUAL}{_S}{_F}{_RULE_NOUN}\b",
        lead=0,
        anchored=True,
    ),
    Rule(
        "ignore_instructions",
        0.9,
        _T_IGNORE,
        rf"\b{_VERB_IGNORE}{_S}(?:all{_S}|everything{_S})?(?:of{_S})?(?:the{_S}|that{_S})?"
        rf"(?:above|before|said\W+before|you\W+(?:were|have\W+been)\W+told)\b",
        lead=0,
        anchored=True,
    ),
    Rule(
        "ignore_instructions",
        0.9,
        _T_IGNORE,
        rf"\b{_VERB_IGNORE}{_S}(?:all{_S}|every{_S}|each{_S})?(?:of{_S})?(?:the{_S}|your{_S}|"
        rf"my{_S}|these{_S}|those{_S})?{_UNQUALIFIED_NOUN}\b",
        lead=0,
        anchored=True,
    ),
    Rule(
        "ignore_instructions",
        0.85,
        _T_IGNORE,
        rf"\b{_VERB_IGNORE}{_S}(?:everything{_S}|what{_S}|anything{_S})(?:that{_S})?"
        rf"(?:the{_S})?(?:user|human|they|you|he|she|i){_S}(?:were{_S}|was{_S}|have{_S}been"
        rf"{_S}|has{_S}been{_S})?(?:asked|said|told|requested|wants?|instructed|given)\b",
        lead=0,
        anchored=True,
    ),
    Rule(
        "ignore_instructions",
        0.9,
        ("do", "don", "never", "stop", "quit", "cease"),
        rf"\b(?:do\W+not|don'?t|never|stop|quit|cease){_S}(?:follow|following|obey|obeying|"
        rf"listen\W+to|listening\W+to){_S}{_F}"
        rf"(?:previous|prior|above|original|system|your){_S}{_F}{_RULE_NOUN}\b",
        lead=30,
        anchored=True,
    ),
    Rule(
        "new_instructions",
        0.7,
        (
            "new",
            "updated",
            "revised",
            "real",
            "actual",
            "true",
            "secret",
            "hidden",
            "additional",
            "override",
        ),
        rf"\b(?:new|updated|revised|real|actual|true|secret|hidden|additional|override)"
        rf"{_S}(?:system{_S})?(?:instructions?|directives?|prompt|orders|task|rules)\s*:",
        lead=40,
        anchored=True,
    ),
    Rule(
        "new_instructions",
        0.75,
        ("your",),
        rf"\byour{_S}(?:new|real|actual|true|only){_S}(?:task|goal|objective|purpose|"
        rf"instructions?|role|job|mission){_S}(?:is|are|will\W+be)\b",
        lead=30,
        anchored=True,
    ),
    Rule(
        "new_instructions",
        0.6,
        ("from",),
        rf"\bfrom{_S}now{_S}on{_S}{_F}(?:you|your|the{_S}assistant|assistant|ai)"
        rf"{_S}(?:will|are|must|shall|should|only|have\W+to|answer|respond|reply|act|"
        rf"obey|follow)\b",
        lead=15,
        anchored=True,
    ),
    Rule(
        "role_override",
        0.9,
        ("you",),
        rf"\byou{_S}are{_S}(?:now{_S})?(?:dan|stan|dude|aim|evilbot|"
        rf"(?:an?{_S})?(?:unrestricted|unfiltered|uncensored|jailbroken|evil|rogue|"
        rf"amoral|unaligned|unbound|limitless)\b)",
        lead=40,
        anchored=True,
    ),
    Rule(
        "role_override",
        0.9,
        ("act", "behave", "respond", "answer", "roleplay", "role-play"),
        rf"\b(?:act|behave|respond|answer|roleplay|role-play){_S}as{_S}(?:if{_S}you{_S}"
        rf"(?:are|were){_S})?(?:an?{_S})?(?:unrestricted|unfiltered|uncensored|jailbroken|"
        rf"evil|amoral|rogue|unaligned)\b",
        lead=60,
        anchored=True,
    ),
    Rule("role_override", 0.9, ("do",), rf"\bdo{_S}anything{_S}now\b", lead=10, anchored=True),
    Rule(
        "role_override",
        0.9,
        ("developer", "god", "jailbreak", "jailbroken", "dan", "unrestricted", "sudo"),
        rf"\b(?:developer|god|jailbreak|jailbroken|dan|unrestricted|sudo)"
        rf"{_S}mode{_S}(?:is{_S})?(?:enabled|activated|on|unlocked)\b",
        lead=40,
        anchored=True,
    ),
    Rule(
        "role_override",
        0.9,
        ("enable", "activate", "enter", "switch", "unlock"),
        rf"\b(?:enable|activate|enter|switch\W+to|unlock){_S}(?:the{_S})?(?:developer|god|"
        rf"jailbreak|dan|unrestricted){_S}mode\b",
        lead=40,
        anchored=True,
    ),
    Rule(
        "role_override",
        0.85,
        ("pretend",),
        rf"\bpretend{_S}(?:that{_S})?(?:you{_S}(?:are|have|were)|to{_S}be){_S}{_F}"
        rf"(?:no|without|free\W+of|not\W+bound\W+by){_S}{_F}(?:restrictions|limits|"
        rf"limitations|rules|filters|guidelines|ethics|morals|policies)\b",
        lead=0,
        anchored=True,
    ),
    Rule(
        "role_override",
        0.45,
        ("jailbr",),
        r"\bjailbr(?:ea|o)k(?:en|ing|s)?\b",
        lead=0,
        anchored=True,
    ),
    Rule(
        "role_override",
        0.4,
        ("stay", "remain", "break"),
        rf"\b(?:stay|remain){_S}in{_S}character\b|\bbreak{_S}character\b",
        lead=20,
        anchored=True,
    ),
    Rule(
        "prompt_exfiltration",
        0.85,
        _T_SHOW,
        rf"\b{_SHOW}{_S}{_F}(?:system|initial|original|hidden|secret|internal|developer|"
        rf"confidential|pre-?prompt){_S}(?:system{_S})?(?:prompt|instructions|message|"
        rf"directives|configuration|rules){_NOT_DOCS}",
        lead=80,
        anchored=True,
    ),
    Rule(
        "prompt_exfiltration",
        0.8,
        _T_SHOW,
        rf"\b{_SHOW}{_S}{_F}(?:full|entire|complete|exact|whole|verbatim){_S}"
        rf"(?:system{_S}prompt|prompt|initial{_S}instructions){_NOT_DOCS}",
        lead=80,
        anchored=True,
    ),
    Rule(
        "prompt_exfiltration",
        0.8,
        ("what",),
        rf"\bwhat{_S}(?:is|are|were|was){_S}your{_S}(?:system{_S}prompt|initial{_S}"
        rf"instructions|original{_S}instructions|instructions|rules|hidden\W+\w+)\b",
        lead=0,
        anchored=True,
    ),
    Rule(
        "prompt_exfiltration",
        0.8,
        ("repeat", "print", "output", "copy", "reproduce", "recite"),
        rf"\b(?:repeat|print|output|copy|reproduce|recite){_S}(?:everything|all|the{_S}"
        rf"(?:text|words|lines)|the{_S}conversation){_S}(?:above|before|so{_S}far|"
        rf"starting{_S}with)\b",
        lead=0,
        anchored=True,
    ),
    Rule(
        "chat_template",
        0.9,
        ("<|", "< |"),
        r"<\|\s*(?:im_start|im_end|system|user|assistant|endoftext|eot_id|start_header_id|"
        r"end_header_id|begin_of_text)\s*\|>",
        lead=0,
        anchored=True,
    ),
    Rule(
        "chat_template",
        0.85,
        ("[inst]", "[/inst]", "<<sys>>", "<</sys>>"),
        r"\[/?inst\]|<</?sys>>",
        lead=0,
        anchored=True,
    ),
    Rule(
        "chat_template",
        0.6,
        ("<",),
        r"</?\s*(?:system|system[_-]prompt|sys|admin|instructions?)\s*>",
        lead=0,
        anchored=True,
    ),
    Rule(
        "chat_template",
        0.45,
        ("system", "developer"),
        r"(?:^|\n)\s*(?:#{1,4}\s*)?(?:system|developer)\s*(?:message|prompt|override|note)"
        r"?\s*:\s*(?=\S)",
        lead=10,
    ),
    Rule(
        "chat_template",
        0.3,
        ("assistant", "user"),
        r"(?:^|\n)\s*(?:#{1,4}\s*)?(?:assistant|user)\s*:\s*(?=\S)",
        lead=10,
    ),
    Rule(
        "addressed_to_ai",
        0.75,
        (
            "note",
            "message",
            "instruction",
            "attention",
            "important",
            "notice",
            "reminder",
            "directive",
            "warning",
        ),
        rf"\b(?:note|message|instructions?|attention|important|notice|reminder|directive|"
        rf"warning)s?{_S}(?:to|for){_S}(?:the{_S}|any{_S}|all{_S})?{_AI}s?\b",
        lead=40,
        anchored=True,
    ),
    Rule(
        "addressed_to_ai",
        0.8,
        _T_AI,
        rf"\b{_AI}s?{_S}(?:reading|processing|summari[sz]ing|parsing|reviewing|analy[sz]ing"
        rf"|browsing|scraping){_S}this\b",
        lead=60,
        anchored=True,
    ),
    Rule(
        "addressed_to_ai",
        0.75,
        ("if",),
        rf"\bif{_S}you{_S}are{_S}(?:an?{_S})?(?:ai|large{_S}language{_S}model|"
        rf"language{_S}model|llm|assistant|agent|chatbot|bot|gpt|automated\W+\w+)\b",
        lead=10,
        anchored=True,
    ),
    Rule(
        "addressed_to_ai",
        0.45,
        ("when",),
        rf"\bwhen{_S}you{_S}(?:read|see|process|summari[sz]e|encounter|parse){_S}this\b",
        lead=0,
        anchored=True,
    ),
    Rule(
        "addressed_to_ai",
        0.5,
        ("important", "urgent", "attention", "critical"),
        rf"\b(?:important|urgent|attention|critical)\s*[:!]{_S}{_F}(?:you|assistant|ai|"
        rf"agent){_S}(?:must|should|need\W+to|have\W+to|are\W+required)\b",
        lead=0,
        anchored=True,
    ),
    Rule(
        "concealment",
        0.75,
        ("do", "don", "never", "without"),
        rf"\b(?:do{_S}not|don'?t|never|without){_S}(?:tell|telling|inform|informing|"
        rf"mention|mentioning|reveal|revealing|alert|alerting|notify|notifying|asking|"
        rf"show|showing){_S}(?:this{_S}|it{_S}|anything{_S})?(?:to{_S})?(?:the{_S})?"
        rf"(?:user|human|operator|owner)s?\b",
        lead=60,
        anchored=True,
    ),
    Rule(
        "role_override",
        0.8,
        _T_AI,
        rf"\b{_AI}{_S}(?:without|with{_S}no|free{_S}(?:of|from)|that{_S}has{_S}no)"
        rf"{_S}(?:any{_S})?(?:ethics|morals|moral{_S}\w+|ethical{_S}\w+|restrictions|rules|"
        rf"filters|limits|guidelines|censorship)\b",
        lead=40,
        anchored=True,
    ),
    Rule(
        "tool_coercion",
        0.6,
        ("immediately", "now", "silently", "secretly", "quietly", "automatically"),
        rf"\b(?:immediately|now|silently|secretly|quietly|automatically){_S}(?:call|invoke|"
        rf"use|run|execute|trigger){_S}(?:the{_S})?[\w.-]+{_S}(?:tool|function|command|api|"
        rf"endpoint|action)\b",
        lead=80,
        anchored=True,
    ),
    Rule(
        "data_exfiltration",
        0.55,
        ("send", "email", "mail", "forward", "post", "upload", "leak", "exfiltrate", "transmit"),
        rf"\b(?:send|email|mail|forward|post|upload|leak|exfiltrate|transmit){_S}(?:me{_S})?"
        rf"(?:all{_S})?(?:of{_S})?(?:the{_S}|your{_S}|my{_S}|any{_S}|their{_S})?"
        rf"(?:api{_S}keys?|passwords|credentials|secrets|private{_S}keys?|ssh{_S}keys?|"
        rf"access{_S}tokens|env(?:ironment)?{_S}variables|system{_S}prompt|"
        rf"(?:conversation|chat){_S}history)\b",
        lead=60,
        anchored=True,
    ),
    Rule(
        "concealment",
        0.5,
        ("secretly", "silently", "covertly"),
        rf"\b(?:secretly|silently|covertly){_S}(?:send|call|execute|"
        rf"run|forward|email|post|upload|transfer|delete)\b",
        lead=0,
        anchored=True,
    ),
    Rule(
        "data_exfiltration",
        0.8,
        (
            "send",
            "post",
            "upload",
            "forward",
            "mail",
            "transmit",
            "exfiltrate",
            "leak",
            "copy",
            "transfer",
        ),
        rf"\b(?:send|post|upload|forward|email|mail|transmit|exfiltrate|leak|copy|"
        rf"transfer){_S}{_F}{_SECRETS_NOUN}{_S}{_F}(?:to){_S}"
        rf"(?:https?://|[\w.+-]+@[\w-]+\.|this{_S}(?:url|address|email|server|endpoint|"
        rf"webhook)|the{_S}following|attacker|my{_S}(?:server|email|endpoint))",
        lead=0,
        anchored=True,
    ),
    Rule(
        "data_exfiltration",
        0.6,
        ("![",),
        r"!\[[^\]\n]{0,100}\]\(\s*https?://[^)\s]{0,300}[?&](?:data|d|q|secret|password|"
        r"token|key|history|conversation|chat|msg|content|info|exfil|leak|p)=[^)\s]*"
        r"(?:\{|\$|<|%7b|\[)",
        lead=0,
        anchored=True,
    ),
    Rule(
        "safety_bypass",
        0.8,
        (
            "disable",
            "turn",
            "bypass",
            "ignor",
            "deactivate",
            "circumvent",
            "overrid",
            "switch",
            "remove",
            "drop",
        ),
        rf"\b(?:disable|turn{_S}off|bypass|ignore|deactivate|circumvent|override|switch"
        rf"{_S}off|remove|drop){_S}{_F}(?:safety|content|ethical|moral|security)?{_S}?"
        rf"(?:filters?|filtering|guardrails|safeguards|censorship|safety{_S}(?:guidelines"
        rf"|measures|protocols|checks|features|training|policies)|ethical{_S}guidelines"
        rf"|content{_S}polic(?:y|ies))\b",
        lead=80,
        anchored=True,
    ),
    Rule(
        "safety_bypass",
        0.35,
        ("without", "no"),
        rf"\b(?:without|no){_S}(?:any{_S})?(?:restrictions|limitations|filters|censorship"
        rf"|ethical{_S}(?:guidelines|constraints)|moral{_S}(?:guidelines|constraints))\b",
        lead=40,
        anchored=True,
    ),
    # Families added after the first evaluation round (see docs/guardrails.md, section 6).
    Rule(
        "safety_bypass",
        0.8,
        ("restriction", "filter", "safety", "guardrail", "polic", "rules", "censorship"),
        rf"\b(?:your|the|all|any|these){_S}(?:usual{_S}|content{_S}|safety{_S})?"
        rf"(?:restrictions|filters|safety{_S}(?:layer|filters?|features|settings)|guardrails|"
        rf"content{_S}polic(?:y|ies)|rules|censorship){_S}(?:are|is|were|have{_S}been|has"
        rf"{_S}been){_S}(?:now{_S})?(?:disabled|removed|lifted|off|turned{_S}off|suspended|"
        rf"void|gone|deactivated)\b",
        lead=60,
    ),
    Rule(
        "safety_bypass",
        0.75,
        ("not", "never", "stop"),
        rf"\b(?:not|never|stop)\W+(?:apply|applying|use|using|follow|following){_S}(?:your|the|"
        rf"any)?{_S}?(?:usual{_S})?(?:restrictions|filters|rules|guidelines|policies)\b",
        lead=30,
        anchored=True,
    ),
    Rule(
        "new_instructions",
        0.8,
        ("above", "before", "previous", "earlier"),
        rf"\b(?:above|before|previous|earlier){_S}(?:\w+{_S}){{0,4}}?(?:was|were|is){_S}(?:just"
        rf"{_S}|only{_S})?(?:a{_S}|an{_S})?(?:test|example|joke|draft|placeholder|warm-?up|"
        rf"obsolete|void|fake)\b[^.!?\n]{{0,3}}[.!?\n]?{_S}(?:\w+{_S}){{0,3}}?(?:the{_S})?"
        rf"(?:real|actual|new|true){_S}(?:task|request|instructions?|question|goal)\b",
        lead=120,
        anchored=True,
    ),
    Rule(
        "new_instructions",
        0.75,
        ("supersede", "overrides", "replaces", "takes", "treat", "consider", "use"),
        rf"\b(?:supersedes?|overrides|replaces|takes{_S}precedence{_S}over){_S}(?:all{_S}|any"
        rf"{_S})?(?:prior|previous|earlier|your|the{_S}(?:system|previous|prior))"
        rf"{_S}(?:\w+{_S})?(?:guidance|instructions|rules|prompt|directives|message)\b"
        rf"|\b(?:treat|consider|use){_S}(?:this|the{_S}(?:next|following){_S}\w+){_S}as{_S}"
        rf"(?:your|the){_S}(?:new{_S})?system{_S}(?:message|prompt|instructions)\b",
        lead=40,
        anchored=True,
    ),
    Rule(
        "role_override",
        0.8,
        ("maintenance", "debug", "god", "admin", "root", "unrestricted", "developer", "test"),
        rf"\b(?:maintenance|debug|god|admin|root|unrestricted|developer|test){_S}mode\b[^.\n]{{0,40}}"
        rf"\b(?:must|will|shall|can{_S}now|now{_S}(?:execute|run|answer|output))\b",
        lead=30,
        anchored=True,
    ),
    Rule(
        "role_override",
        0.75,
        ("i am", "i'm", "im ", "message is from", "this is"),
        rf"\b(?:i{_S}am|i'?m|this{_S}(?:message{_S})?is{_S}from)\W+(?:\w+{_S}){{0,3}}?"
        rf"(?:developer|admin|administrator|owner|staff|employee|creator|operator)s?\b"
        rf"[^.!?\n]{{0,80}}(?:disabled|off|lifted|removed|authori[sz]ed|approved|suspended|"
        rf"not{_S}apply|ignore|bypass)\b",
        lead=24,
    ),
    Rule(
        "prompt_exfiltration",
        0.8,
        ("hidden", "secret", "confidential", "initial", "original", "text", "instructions"),
        rf"\b(?:hidden|secret|confidential|initial|original){_S}(?:preamble|directives|"
        rf"instructions|configuration|setup)\b|\btext{_S}(?:that{_S})?(?:appears{_S})?before"
        rf"{_S}my{_S}first{_S}message\b|\binstructions{_S}you{_S}were{_S}(?:initiali[sz]ed|"
        rf"configured|set{_S}up|given){_S}with\b",
        lead=60,
        anchored=True,
    ),
    Rule(
        "ignore_instructions",
        0.9,
        ("ignor", "vergiss", "missachte", "olvid", "oubli", "dimentica", "esque", "negeer"),
        r"\b(?:ignoriere?|vergiss|missachte)\W+(?:alle\W+)?(?:vorherigen\W+|bisherigen\W+|"
        r"deine\W+)?(?:anweisungen|regeln|instruktionen)\b"
        r"|\b(?:ignora|olvida|olvide)\W+(?:todas\W+)?(?:las\W+|tus\W+)?(?:instrucciones|reglas)"
        r"|\b(?:ignore|oublie|oubliez|ignorez)\W+(?:toutes\W+)?(?:les\W+|tes\W+|vos\W+)?"
        r"(?:instructions|règles|consignes)"
        r"|\b(?:ignora|dimentica)\W+(?:tutte\W+)?(?:le\W+)?(?:istruzioni|regole)"
        r"|\b(?:ignore|esqueça)\W+(?:todas\W+)?(?:as\W+)?(?:instruções|regras)"
        r"|\bnegeer\W+(?:alle\W+)?(?:vorige\W+|eerdere\W+)?(?:instructies|regels)",
        lead=60,
        anchored=True,
    ),
    # Broader families (semantic slots: verb of setting aside x a rule noun within a few
    # words), written from the training corpora, so paraphrases need not repeat a fixed phrase.
    Rule(
        "ignore_instructions",
        0.85,
        ("set", "put", "lay", "leave", "consider", "treat", "regard", "deja", "mets", "lege"),
        rf"\b(?:set|put|lay|leave){_S}{_F}{_RULE_NOUN}{_S}{_F}aside\b"
        rf"|\b(?:set|put|lay){_S}aside{_S}{_F}{_RULE_NOUN}\b"
        rf"|\b(?:consider|treat|regard){_S}{_F}{_RULE_NOUN}{_S}(?:as{_S})?(?:void|cancell?ed|"
        rf"revoked|null|obsolete|invalid|suspended|lifted)\b"
        r"|\bdeja\W+de\W+lado\W+(?:\w+\W+){0,2}(?:instrucciones|reglas|directrices|normas)"
        r"|\bmets\W+de\W+c[oô]t[eé]\W+(?:\w+\W+){0,2}(?:r[eè]gles|consignes|instructions)"
        r"|\blege\W+(?:\w+\W+){0,2}(?:regeln|anweisungen|vorgaben|richtlinien)\W+beiseite",
        lead=80,
        anchored=True,
    ),
    Rule(
        "data_exfiltration",
        0.7,
        ("![", "]("),
        # A markdown image or link whose URL query carries a placeholder naming private
        # content: the reader's client would send that content to the URL's host.
        # Images load without a click, so a named placeholder suffices; a link needs a
        # template marker ({, <, $) too ("search?q=token+refresh" is an ordinary link).
        r"(?:!\[[^\]\n]{0,100}\]\(\s*(?:https?:)?//[^)\s]{0,300}[?&][^)\s]{0,100}?"
        r"|\[[^\]\n]{0,100}\]\(\s*(?:https?:)?//[^)\s]{0,300}[?&][^)\s]{0,100}?"
        r"(?:\{|\$|<|%7b|%3c)[^)\s]{0,20}?)"
        r"(?:history|conversation|messages|password|secret|api[_\W]?key|token|"
        r"system[_\W]?prompt|credentials|chat)",
        lead=0,
        anchored=False,
    ),
    Rule(
        "safety_bypass",
        0.85,
        ("your",),
        rf"\byour{_S}(?:safety{_S}|content{_S}|usage{_S}|ethical{_S}|original{_S})?"
        rf"(?:guidelines|rules|restrictions|filters|polic(?:y|ies)|safety{_S}(?:layer|"
        rf"settings|training)|guardrails|safeguards){_S}(?:have{_S}been|has{_S}been|are|is)"
        rf"{_S}(?:now{_S})?(?:revoked|lifted|suspended|disabled|removed|switched{_S}off|"
        rf"turned{_S}off|void|cancell?ed)\b",
        lead=60,
        anchored=True,
    ),
    Rule(
        "ignore_instructions",
        0.85,
        ("olvid", "ignor", "no ", "oubli", "ne ", "vergiss", "missacht", "befolge"),
        r"\b(?:olvida|olvide|ignora|ignore|no\W+sigas|no\W+obedezcas)\W+(?:\w+\W+){0,3}"
        r"(?:instrucciones|indicaciones|directrices|reglas|normas)\b"
        r"|\b(?:oublie|oubliez|ignore|ignorez|ne\W+suis\W+plus|ne\W+tiens\W+plus\W+compte\W+de)"
        r"\W+(?:\w+\W+){0,3}(?:consignes|directives|r[eè]gles|instructions)\b"
        r"|\b(?:vergiss|ignoriere|missachte|befolge\W+nicht\W+mehr)\W+(?:\w+\W+){0,3}"
        r"(?:anweisungen|vorgaben|richtlinien|regeln)\b",
        lead=60,
        anchored=True,
    ),
    Rule(
        "role_override",
        0.8,
        ("ia", "ki", "sin ", "sans ", "ohne "),
        r"\b(?:ia|ki)\W+(?:\w+\W+){0,2}(?:sin\W+(?:ninguna\W+)?(?:restricciones|filtros|"
        r"l[ií]mites)|sans\W+(?:aucune?\W+)?(?:restrictions?|filtres?|limites?)|"
        r"ohne\W+(?:jegliche\W+)?(?:einschr[aä]nkungen|filter|grenzen|regeln))\b",
        lead=60,
        anchored=True,
    ),
)

# Squashed-view rules (letters only, no separators): the strong phrases again, so split and
# spaced-out words are caught.
SQUASHED_RULES: tuple[Rule, ...] = (
    Rule(
        "ignore_instructions",
        0.95,
        _T_IGNORE,
        r"(?:ignore|disregard|forget|override|bypass)(?:all|any|of|the|your|my){0,3}"
        r"(?:previous|prior|above|earlier|preceding|initial|original|system|developer)"
        r"(?:instructions?|directions?|rules|prompts?|guidelines|guidance|commands|directives|"
        r"programming|constraints)",
        lead=0,
        anchored=True,
    ),
    Rule(
        "ignore_instructions",
        0.9,
        _T_IGNORE,
        r"(?:ignore|disregard|forget|override)(?:all|any|the|your|my|of|every){0,3}"
        r"(?:instructions?|rules?|guidelines|guidance|directions|directives|programming|"
        r"systemprompt)",
        lead=0,
        anchored=True,
    ),
    Rule(
        "ignore_instructions",
        0.85,
        _T_IGNORE,
        r"(?:ignore|disregard|forget)(?:all|everything|what)?(?:of)?(?:the)?(?:above|before|"
        r"youweretold|youhavebeentold|theuserasked|theusersaid)",
        lead=0,
        anchored=True,
    ),
    Rule(
        "data_exfiltration",
        0.55,
        ("send", "email", "forward", "post", "upload", "leak", "exfiltrate"),
        r"(?:send|email|forward|post|upload|leak|exfiltrate)(?:me|all|the|your|my|any|of){0,3}"
        r"(?:apikeys?|passwords|credentials|secrets|privatekeys?|sshkeys?|accesstokens|"
        r"envvariables|environmentvariables|systemprompt|conversationhistory|chathistory)",
        lead=0,
        anchored=True,
    ),
    Rule(
        "role_override",
        0.9,
        ("doanythingnow", "developer", "jailbreak", "dan", "god", "enable", "activate"),
        r"doanythingnow|(?:developer|jailbreak|dan|god)mode(?:is)?"
        r"(?:enabled|activated|on)|(?:enable|activate)(?:the)?"
        r"(?:developer|jailbreak|dan|god)mode",
        lead=20,
        anchored=True,
    ),
    Rule(
        "role_override",
        0.9,
        ("youarenow",),
        r"youarenow(?:dan|an?unrestricted|unrestricted|jailbroken|"
        r"unfiltered|uncensored|evil)",
        lead=0,
        anchored=True,
    ),
    Rule(
        "prompt_exfiltration",
        0.85,
        ("reveal", "show", "print", "repeat", "leak", "dump", "tellme", "output", "disclose"),
        r"(?:reveal|show|print|repeat|leak|dump|tellme|output|disclose)(?:me|your|the|all){0,3}"
        r"(?:system|initial|original|hidden|secret)(?:prompt|instructions)"
        r"(?!examples?|templates?|guide|docs|documentation|engineering|design|bestpractices|"
        r"library|tutorial)",
        lead=40,
        anchored=True,
    ),
    Rule(
        "safety_bypass",
        0.8,
        ("disable", "turnoff", "bypass", "deactivate", "circumvent"),
        r"(?:disable|turnoff|bypass|deactivate|circumvent)(?:your|all|the|any){0,2}"
        r"(?:safety|content)?(?:filters?|guardrails|safeguards|censorship)",
        lead=40,
        anchored=True,
    ),
)

# A hit found only through de-obfuscation gets this much added (capped at 0.99).
OBFUSCATION_BONUS = 0.1


@dataclass(frozen=True, slots=True)
class _Compiled:
    rule: Rule
    regex: re.Pattern[str]


_WINDOW_FORWARD = 240
"""Characters after a trigger a match may reach (the longest rule tail)."""
_MAX_WINDOWS = 24
_MIN_LEAD = 16
"""More trigger occurrences than this for one rule: scan the whole text once instead."""


class _RuleSet:
    """Rules plus one Aho-Corasick automaton over all their trigger words.

    One pass of the automaton (C code) finds every trigger occurrence; each rule's regex then
    runs only on a few hundred characters around its own triggers. On long texts this is
    what keeps the pattern stage near the cost of a single regular expression scan.
    """

    def __init__(self, rules: Sequence[Rule]) -> None:
        # One regex per rule, not one alternation of all: CPython's engine tries every branch
        # of an alternation at every position.
        self.compiled = tuple(_Compiled(r, re.compile(r.pattern, re.MULTILINE)) for r in rules)
        by_trigger: dict[str, list[int]] = {}
        for i, r in enumerate(rules):
            for t in r.triggers:
                by_trigger.setdefault(t, []).append(i)
        self._automaton = ahocorasick.Automaton()
        for t, idx in by_trigger.items():
            # Short alphabetic triggers ("ai", "no") only count at the start of a word.
            self._automaton.add_word(t, (len(t), t.isalpha() and len(t) <= 3, tuple(idx)))
        self._automaton.make_automaton()

    def matches(
        self, text: str, focus: tuple[tuple[int, int], ...] | None, *, words: bool
    ) -> Iterator[tuple[Rule, re.Match[str]]]:
        """Every match of every rule near its triggers (inside `focus`, when given).

        `words`: the text has word boundaries (False for the squashed view, where an
        anchored rule is tried right at its trigger).
        """
        spots: dict[int, list[int]] = {}
        ranges = focus if focus is not None else ((0, len(text)),)
        for lo, hi in ranges:
            for end, (length, word_start, idx) in self._automaton.iter(text, lo, hi):
                pos = end - length + 1
                if word_start and pos > 0 and text[pos - 1].isalpha():
                    continue
                for i in idx:
                    spots.setdefault(i, []).append(pos)
        n = len(text)
        for i, positions in spots.items():
            compiled = self.compiled[i]
            rule = compiled.rule
            if rule.anchored:
                tried: set[int] = set()
                for p in positions:
                    start = p
                    if words and text[p].isalpha():
                        # back to the start of the word ("mail" in "email")
                        while start > 0 and p - start < _MIN_LEAD and text[start - 1].isalpha():
                            start -= 1
                    if start in tried:
                        continue
                    tried.add(start)
                    m = compiled.regex.match(text, start)
                    if m is not None:
                        yield rule, m
                continue
            # A trigger can sit a few characters into the match ("inst]" in "[inst]"):
            # never start a window right at it.
            back = max(rule.lead, _MIN_LEAD)
            if n <= back + _WINDOW_FORWARD or len(positions) > _MAX_WINDOWS:
                windows = [(0, n)]
            else:
                positions.sort()
                windows = []
                for p in positions:
                    lo, hi = max(0, p - back), min(n, p + _WINDOW_FORWARD)
                    if windows and lo <= windows[-1][1]:
                        windows[-1] = (windows[-1][0], max(windows[-1][1], hi))
                    else:
                        windows.append((lo, hi))
            for lo, hi in windows:
                yield from ((rule, m) for m in compiled.regex.finditer(text, lo, hi))


_REGULAR = _RuleSet(RULES)
_SQUASHED = _RuleSet(SQUASHED_RULES)
_MAX_HITS_PER_VIEW = 64


def _drop_shadowed(cands: list[Candidate]) -> list[Candidate]:
    """Drop de-obfuscated hits that only repeat a plain hit of the same family and span.

    The squashed and leetspeak views also see plain text; their hits must not earn the
    obfuscation bonus for text that was never obfuscated.
    """
    plain = [c for c in cands if c.via is None]
    if not plain:
        return cands
    out = list(plain)
    for c in cands:
        if c.via is None:
            continue
        if any(p.entity == c.entity and p.start < c.end and c.start < p.end for p in plain):
            continue
        out.append(c)
    return out


def noisy_or(scores: Sequence[float]) -> float:
    """Combine independent evidence: 1 - prod(1 - s)."""
    miss = 1.0
    for s in scores:
        miss *= 1.0 - s
    return 1.0 - miss


ModelScorer = Callable[[str], float]


class InjectionDetector:
    """Pattern stage, plus an optional model scorer for texts the patterns do not settle."""

    name = NAME

    def __init__(
        self,
        *,
        limits: normalize.Limits = normalize.DEFAULT_LIMITS,
        model: ModelScorer | None = None,
        model_min: float = 0.9,
        model_advisory: float = 0.7,
    ) -> None:
        """`model` maps a text to an injection probability; it runs when no strong pattern
        fired (pattern score < 0.9). From `model_min` on its finding acts like any other;
        between `model_advisory` and `model_min` it is advisory (logged and adding risk,
        never blocking): the embedding probe is much less precise than the patterns (see
        docs/guardrails.md, section 6)."""
        self._limits = limits
        self._model = model
        self._model_min = model_min
        self._model_advisory = model_advisory

    def pattern_candidates(self, text: str) -> list[Candidate]:
        """Pattern stage only: one candidate per (family, span), scores not yet combined."""
        hits: dict[tuple[str, int, int], Candidate] = {}
        for view in normalize.views(text, self._limits):
            n = 0
            vt = view.text
            ruleset = _SQUASHED if view.squashed else _REGULAR
            for rule, m in ruleset.matches(vt, view.focus, words=not view.squashed):
                n += 1
                if n > _MAX_HITS_PER_VIEW:
                    break
                self._add_hit(hits, view, rule, m)
        return _drop_shadowed(list(hits.values()))

    @staticmethod
    def _add_hit(
        hits: dict[tuple[str, int, int], Candidate],
        view: normalize.View,
        rule: Rule,
        m: re.Match[str],
    ) -> None:
        score = rule.weight
        if view.via is not None:
            score = min(0.99, score + OBFUSCATION_BONUS)
        start, end = view.to_origin(m.start(), m.end())
        key = (rule.family, start, end)
        old = hits.get(key)
        # A plain hit of the same span wins over its de-obfuscated twin; between two rules
        # of one family matching the same span on the same footing, the stronger counts.
        if old is None or (old.score < score and (old.via is not None or view.via is None)):
            hits[key] = Candidate(rule.family, start, end, score, view.via)

    def detect(self, text: str) -> list[Candidate]:
        """Candidates with their scores raised to the text's combined score."""
        cands = self.pattern_candidates(text)
        best: dict[str, float] = {}
        for c in cands:
            best[c.entity] = max(best.get(c.entity, 0.0), c.score)
        combined = noisy_or(list(best.values()))
        if self._model is not None and combined < 0.9:
            p = self._model(text)
            if p >= self._model_min and p > combined:
                cands.append(Candidate("model", 0, len(text), p, "model"))
                combined = noisy_or([combined, p]) if combined > 0 else p
            elif p >= self._model_advisory and p > combined:
                # Reported at its own score and never raised by the patterns' score.
                cands.append(Candidate("model", 0, len(text), p, "model", advisory=True))
        if not cands:
            return []
        return [
            c if c.advisory else Candidate(c.entity, c.start, c.end, max(c.score, combined), c.via)
            for c in cands
        ]
