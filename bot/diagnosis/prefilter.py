"""Rule selection: the one-pass word pre-filter over every rule of `RULES` and the pick of the first rule that matches.

Every needle, hint and veto of every rule is compiled into one trie regex, scanned once per message; only the rules
whose words are present (and none of whose vetoes is) are tried, in table order, and a rule with only a hint present
runs its regex. Gives the same rule as trying each `Rule.matches` in order. Pure, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from bot.diagnosis.rules import RULES, Rule
from bot.model import Cause

__all__ = ["NO_RULE", "pick_rule"]

NO_RULE = Rule("none", Cause.OTHER, ())


def _trie_pattern(words: Iterable[str]) -> re.Pattern[str]:
    """One regex whose match at a position is the LONGEST of `words` starting there (a trie, so no backtracking)."""
    trie: dict[str, dict[str, Any]] = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def emit(node: dict[str, Any]) -> str:
        branches = [re.escape(char) + emit(child) for char, child in sorted(node.items()) if char]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        if "" in node:
            return f"(?:{body})?"
        return body

    return re.compile(emit(trie))


# The combined pre-filter: every needle, hint and veto of every rule in one trie regex, scanned once per message.
# A hit at a position is the longest word starting there; the words inside it are present too, so each hit maps
# to bit sets (bit i = RULES[i]) of the needles, hints and vetoes it contains. Resuming the scan one character
# after each hit's start finds every occurrence, so "which words are present" is exact, as with `in`.
_WORDS: tuple[str, ...] = tuple(sorted({w for r in RULES for w in (*r.needles, *r.hints, *r.unless)}))
_WORD_RE = _trie_pattern(_WORDS)


def _bits(word: str, words_of: Callable[[Rule], tuple[str, ...]]) -> int:
    return sum(1 << i for i, rule in enumerate(RULES) if any(w in word for w in words_of(rule)))


# word -> (needle bits, hint bits, veto bits)
_WORD_BITS: dict[str, tuple[int, int, int]] = {
    word: (_bits(word, lambda r: r.needles), _bits(word, lambda r: r.hints), _bits(word, lambda r: r.unless))
    for word in _WORDS
}


def pick_rule(masked_low: str) -> Rule:
    """The first rule of `RULES` that the masked lowercase text triggers, or `NO_RULE`."""
    search = _WORD_RE.search
    bits = _WORD_BITS
    needles = hints = vetoes = 0
    found = search(masked_low)
    while found is not None:
        n, h, v = bits[found.group()]
        needles |= n
        hints |= h
        vetoes |= v
        found = search(masked_low, found.start() + 1)
    candidates = (needles | hints) & ~vetoes
    while candidates:
        low_bit = candidates & -candidates
        rule = RULES[low_bit.bit_length() - 1]
        if needles & low_bit or (rule.regex is not None and rule.regex.search(masked_low) is not None):
            return rule
        candidates ^= low_bit
    return NO_RULE
