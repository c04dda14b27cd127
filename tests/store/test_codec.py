"""The JSON codec: every Diagnosis round-trips through JSON text, and decoding any JSON value never raises."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from bot.model import ActionKind, Cause, Diagnosis, Evidence, Facts, FixCommand
from bot.store.codec import diagnosis_from_json, diagnosis_to_json, iso_utc
from tests.store.factories import T0, diagnosis

_text = st.text(max_size=40)
_opt_text = st.none() | _text

facts_st = st.builds(
    Facts,
    registry=_opt_text,
    repository=_opt_text,
    reference=_opt_text,
    http_status=st.none() | st.integers(100, 599),
    platform=_opt_text,
    host=_opt_text,
)
diagnosis_st = st.builds(
    Diagnosis,
    cause=st.sampled_from(Cause),
    summary=_text,
    confidence=st.floats(0, 1),
    facts=facts_st,
    evidence=st.lists(st.builds(Evidence, text=_text, source=_text, ok=st.none() | st.booleans()), max_size=4).map(
        tuple
    ),
    fixes=st.lists(st.builds(FixCommand, title=_text, command=_text, mutating=st.booleans()), max_size=3).map(tuple),
    actions=st.lists(st.sampled_from(ActionKind), max_size=4).map(tuple),
    raw_message=_text,
    message_cause=st.none() | st.sampled_from(Cause),
)
json_st = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=20,
)


def test_full_diagnosis_round_trips() -> None:
    """The factory diagnosis, with every field set, survives encoding to JSON text and back."""
    assert diagnosis_from_json(json.loads(json.dumps(diagnosis_to_json(diagnosis())))) == diagnosis()


@given(diagnosis_st)
def test_any_diagnosis_round_trips(d: Diagnosis) -> None:
    """Encoding then decoding gives the same value."""
    assert diagnosis_from_json(json.loads(json.dumps(diagnosis_to_json(d), allow_nan=False))) == d


@given(json_st)
def test_decoding_any_json_never_raises(value: Any) -> None:
    """Whatever is in the column, decoding gives a Diagnosis."""
    assert isinstance(diagnosis_from_json(value), Diagnosis)


def test_unknown_values_fall_back() -> None:
    """A cause id from another version reads as `other`; unknown actions are dropped; NaN is stored as null."""
    decoded = diagnosis_from_json({"cause": "from_the_future", "actions": ["rediagnose", "teleport"]})
    assert decoded.cause is Cause.OTHER and decoded.actions == (ActionKind.REDIAGNOSE,)
    nan = diagnosis_to_json(Diagnosis(Cause.OTHER, "", float("nan"), Facts()))
    assert nan["confidence"] is None and json.dumps(nan, allow_nan=False)


def test_iso_utc_is_stable() -> None:
    """Timestamps format in UTC with microseconds."""
    assert iso_utc(T0) == "2026-11-23T09:00:00.123456+00:00"
