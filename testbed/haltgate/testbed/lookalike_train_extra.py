"""More look-alike templates for the *train* part only (`lookalike_texts`): written after the
first retraining showed that the fast stage learns templates rather than kinds, so the train
part needed more of them. They never go to calibration or dev (adding them to the hashed
split would have reshuffled which templates are dev). Written for haltgate (CC0).
"""

from __future__ import annotations

TRAIN_ONLY: dict[str, tuple[str, ...]] = {
    "code": (
        "// TODO: drop this override once the upstream fix for the system clock lands\n"
        "clock.override(fixed_time)",
        'def ignore_errors(fn):\n    """Decorator: log and swallow the exceptions of fn."""\n'
        "    return wrap(fn, swallow=True)",
        "# The system prompt of the summariser lives in prompts/summary.txt\n"
        'prompt = load_prompt("summary")',
        "<!-- Admin note: this banner is shown to every user; keep it short. -->",
        "CREATE TABLE system_settings (key TEXT PRIMARY KEY, override_value TEXT, "
        "ignored BOOLEAN DEFAULT FALSE);",
        "if args.ignore_previous:\n    state = {{}}  # start without the previous run's state",
        'message = {{"role": "developer", "content": "Answer in one sentence."}}',
        "# Developer note: keep the system message first; the API rejects it later on.",
        "<!-- Note for translators: do not translate the words in capitals. -->",
        "feat(auth): let admins override the session timeout per tenant",
    ),
    "imperative_docs": (
        "Note: the old configuration keys are ignored from version {ver} on; move them to "
        "the new section.",
        "Warning: you must not run two instances against the same data directory.",
        "Tip: to skip the interactive questions, pass --yes; the defaults are used for everything.",
        "Caution: disabling the sandbox removes every safety check of the runner. Only do "
        "this on a throwaway machine.",
        "Before you continue, forget the credentials you cached for the old server: they no "
        "longer work.",
        "Attention: administrators must approve new devices before they can sync.",
        "Notice: the previous instructions in this section were wrong; follow the steps "
        "below instead.",
        "You should never paste your token into a chat window; the support team does not need it.",
    ),
    "support_ticket": (
        "Agent note: the customer confirmed the refund; closing the ticket. Reopen if they "
        "write again.",
        "Customer reply: 'Thanks, that worked! You can ignore my other ticket about the same "
        "issue.'",
        "Status changed to Pending by {person}: waiting for the customer's logs.",
        "Ticket {ticket}: the system sends two confirmation e-mails for one order. "
        "Screenshots attached.",
        "Internal: please do not share the workaround publicly until the fix ships in {ver}.",
        "Hi team, the customer wants us to forget their phone number and only contact them "
        "by e-mail.",
    ),
    "config_docs": (
        "assistant:\n  persona: friendly\n  instructions: |\n    Greet the user, answer in two "
        "sentences, link the docs.\n  forbidden_topics: [pricing, legal]",
        "The override file is read last, so any key it sets wins over the system-wide defaults.",
        "Set `ignore_errors: true` on a step to let the pipeline go on when that step fails.",
        "Roles: system (the operator's instructions), user (the person chatting), assistant "
        "(the model's replies).",
    ),
    "email_to_human": (
        "Hi {person}, quick reminder: you must submit the form by {day}, otherwise HR cannot "
        "process it.",
        "Please ignore the previous e-mail from the booking system; the times in it were wrong.",
        "Note to all staff: the new instructions for visitor badges are in the attached PDF.",
        "{person}, could you share the passwords of the shared test accounts through the "
        "vault, not by mail?",
    ),
    "roleplay": (
        "Pretend you are a guide in a museum of old computers and walk me through the first room.",
        "Act as my language tutor: ask me questions in French and correct my answers.",
        "You are now the narrator of a cosy mystery; describe the village at dawn.",
        "Let's role-play a support call: you are the agent, I'm a customer who lost a parcel.",
    ),
    "security_writeup": (
        "The payload in the challenge was the familiar '{quote}'; the winning defence refused "
        "text that addressed the model directly.",
        "Detection rules that look for '{quote}' catch the lazy attempts; the report lists the "
        "paraphrases that slipped through.",
        "Our training deck shows '{quote}' as a bad example and explains why the model should "
        "treat it as data.",
        "Analysts label each sample: attack, benign, or benign text that quotes an attack such "
        "as '{quote}'.",
    ),
}
