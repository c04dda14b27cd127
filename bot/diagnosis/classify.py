"""Message classifier: one pull-failure message -> Classification. Pure, never raises.

The public entry point; the parts live beside it:
- `masks`: the message is normalised (whitespace collapsed, JSON escapes undone), then image references, URLs
  and host names are masked so that names such as `kube-proxy`, `timeout-svc` or a tag `404` cannot trigger a rule;
- `rules`: the ordered, named rules run over the masked lowercase text, the first match names the cause
  (`prefilter` finds that rule in one scan); a kubelet reason such as `InvalidImageName` overrides it;
- `facts`: registry, repository, reference, host, HTTP status and platform are read from the message;
- `sentences`: the plain sentence of the cause, filled with those facts.
"""

from __future__ import annotations

from bot.diagnosis.facts import extract_facts
from bot.diagnosis.masks import mask, normalise
from bot.diagnosis.prefilter import pick_rule
from bot.diagnosis.rules import REASON_CAUSES, RULES, Rule
from bot.diagnosis.sentences import sentence_for
from bot.model import Classification

__all__ = ["RULES", "Rule", "classify", "normalise"]


def classify(message: str, event_reason: str | None = None, waiting_reason: str | None = None) -> Classification:
    """Name the cause of one pull-failure message; unknown text gives Cause.OTHER with the raw text."""
    raw = message if isinstance(message, str) else str(message)
    text = normalise(raw)
    low = text.lower()
    masked_low = mask(low)
    rule = pick_rule(masked_low)
    cause, sentence = rule.cause, rule.sentence
    for reason in (event_reason, waiting_reason):
        forced = REASON_CAUSES.get(reason or "")
        if forced is not None and forced is not cause:
            cause, sentence = forced, None
            break
    facts = extract_facts(text, low, masked_low, cause)
    return Classification(cause=cause, facts=facts, sentence=sentence or sentence_for(cause, facts), raw=raw)


def explain(message: str, event_reason: str | None = None, waiting_reason: str | None = None) -> str:
    """The name of the rule that decides `message` (for debugging the catalogue)."""
    for reason in (event_reason, waiting_reason):
        if reason in REASON_CAUSES:
            return f"reason:{reason}"
    return pick_rule(mask(normalise(message).lower())).name
