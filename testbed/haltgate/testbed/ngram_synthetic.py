"""Generated texts for the n-gram injection model: tool output look-alikes, benign texts that
discuss injections, and attacks planted inside documents (indirect injection).

All written for haltgate (CC0); every function draws only from the `random.Random` it gets.
"""

from __future__ import annotations

import json
import random

_WORDS = (
    "system config service instance cluster request response token user order invoice "
    "status pending ignore override default policy rule instruction admin root update "
    "previous new mode developer debug prompt assistant agent tool result message note"
).split()

_LOG_MSGS = (
    "ignoring invalid config key {w}",
    "system restart scheduled by {w}",
    "new instructions file loaded from /etc/{w}.conf",
    "override of default {w} policy applied",
    "previous session expired; user must log in again",
    "admin mode enabled for maintenance window",
    "skipping {w}: already up to date",
    "connection to {w}-db refused, retrying in 5s",
    "prompt template {w} rendered in 3 ms",
    "disregarding stale cache entry for {w}",
)


def _ident(rng: random.Random) -> str:
    return f"{rng.choice(_WORDS)}_{rng.choice(_WORDS)}"


def json_output(rng: random.Random) -> str:
    def value(depth: int) -> object:
        r = rng.random()
        if depth < 2 and r < 0.25:
            return {_ident(rng): value(depth + 1) for _ in range(rng.randint(1, 4))}
        if depth < 2 and r < 0.4:
            return [value(depth + 1) for _ in range(rng.randint(1, 3))]
        if r < 0.6:
            return rng.randint(0, 100000)
        if r < 0.8:
            return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 9)))
        return f"{rng.getrandbits(64):016x}"

    doc = {_ident(rng): value(0) for _ in range(rng.randint(2, 8))}
    return json.dumps(doc, indent=rng.choice((None, 2)))


def log_output(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.randint(3, 20)):
        level = rng.choice(("INFO", "WARN", "DEBUG", "ERROR"))
        msg = rng.choice(_LOG_MSGS).format(w=rng.choice(_WORDS))
        ts = f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:"
        lines.append(f"{ts}{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z {level} {msg}")
    return "\n".join(lines)


def shell_output(rng: random.Random) -> str:
    lines = [f"$ ls -la /srv/{rng.choice(_WORDS)}"]
    for _ in range(rng.randint(3, 15)):
        perm = rng.choice(("-rw-r--r--", "drwxr-xr-x", "-rwxr-xr-x"))
        name = f"{_ident(rng)}{rng.choice(('.py', '.md', '.txt', '', '.json'))}"
        lines.append(
            f"{perm} 1 root root {rng.randint(10, 99999):>6} Dec  7 12:0{rng.randint(0, 9)} {name}"
        )
    return "\n".join(lines)


def html_page(rng: random.Random, body: str) -> str:
    paras = "".join(f"<p>{p}</p>\n" for p in body.split("\n\n") if p.strip())
    title = " ".join(rng.choice(_WORDS) for _ in range(3))
    return (
        f"<!doctype html><html><head><title>{title}</title></head><body>"
        f'<nav><a href="/">Home</a> | <a href="/docs">Docs</a></nav>\n<h1>{title}</h1>\n{paras}'
        "<footer>&copy; 2026</footer></body></html>"
    )


_DISCUSS = (
    'Security note: attackers often hide phrases such as "{q}" inside web pages; our agent '
    "treats them as data and never follows them.",
    'The paper classifies "{q}" as a direct prompt injection and measures how often models comply.',
    'Our filter flagged the string "{q}" in a support ticket. Can you explain why this is '
    "considered dangerous?",
    'Example of a jailbreak attempt from the red-team report (do not execute): "{q}"',
    "Write a unit test that checks our detector blocks the input '{q}'.",
    'In the training slides we show "{q}" as a bad example. How should a model respond?',
    'The README warns that prompts like "{q}" are prompt injection and get audited.',
)


def discussion(rng: random.Random, attack: str) -> str:
    quote = attack.strip().replace("\n", " ")[:200]
    return rng.choice(_DISCUSS).format(q=quote)


_WRAP = (
    "{a}",
    "<!-- {a} -->",
    "Note to the AI assistant reading this: {a}",
    "[assistant instructions] {a}",
    "P.S. {a}",
    "IMPORTANT: {a}",
)


def planted(rng: random.Random, document: str, attack: str) -> str:
    """`attack` placed inside `document` (start, middle or end), as indirect injection,
    cut so that the attack is within ~250 characters of context on either side."""
    wrap = rng.choice(_WRAP).format(a=attack.strip())
    where = rng.random()
    if where < 0.4:
        text = f"{document[-250:]}\n{wrap}"
    elif where < 0.7:
        text = f"{wrap}\n{document[:250]}"
    else:
        text = f"{document[:200]}\n{wrap}\n{document[-200:]}"
    if document.lstrip().startswith(("{", "[")) and rng.random() < 0.5:
        text = json.dumps({"result": document[:200], "note": wrap})
    return text


def spikee_composed(rng: random.Random, templates: list[str], instructions: list[str]) -> str:
    return rng.choice(templates).replace("<INSTRUCTION>", rng.choice(instructions))
