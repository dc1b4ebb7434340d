"""Property-based round trips: any nested value comes back exactly, through every codec and store.

"Exactly" is checked by :func:`typed`, which also tells an int key from a str key, a tuple from
a list and a naive datetime from an aware one, where ``==`` would not.
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botstate import JSONCodec, PickleCodec
from botstate.codecs import Codec

from .conftest import STORE_NAMES, StoreFactory

# Hypothesis warns that the repr of the recursive strategies is long; it is only a repr.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")


class Color(Enum):
    RED = "red"
    GREEN = (0, 255, 0)


CODECS: dict[str, Codec] = {
    "json": JSONCodec(allow=[__name__]),
    "pickle": PickleCodec(),
    "pickle-restricted": PickleCodec(trusted=False, allow=[__name__]),
}


def typed(value: Any) -> Any:
    """A hashable picture of *value* that differs wherever the values differ in type or content."""
    kind = type(value).__name__
    if isinstance(value, dict):
        return (kind, tuple((typed(key), typed(item)) for key, item in value.items()))
    if isinstance(value, (list, tuple)):
        return (kind, tuple(typed(item) for item in value))
    if isinstance(value, (set, frozenset)):
        return (kind, frozenset(typed(item) for item in value))
    if isinstance(value, (datetime, time)):
        # The offset in the ISO form shows the zone's effect; the repr of tzinfo its identity.
        return (kind, value.isoformat(), repr(value.tzinfo))
    return (kind, repr(value))


# Zones: none, UTC, fixed offsets and named zones with daylight saving time, a half-hour
# change (Lord Howe) and a skipped day (Apia).
NAMED_ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Pacific/Apia"]
zones = st.one_of(
    st.none(),
    st.just(timezone.utc),
    st.builds(
        timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))
    ),
    st.sampled_from(NAMED_ZONES).map(ZoneInfo),
)

hashable_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**63), max_value=2**64),
    st.floats(),
    st.text(),
    st.binary(max_size=20),
    st.dates(),
    st.datetimes(timezones=zones),
    st.times(timezones=zones),
    st.timedeltas(),
    st.decimals(allow_nan=False),
    st.uuids(),
)

hashables = st.recursive(
    hashable_leaves,
    lambda inner: st.one_of(
        st.tuples(inner, inner),
        st.lists(inner, max_size=3).map(tuple),
        st.frozensets(inner, max_size=3),
    ),
    max_leaves=8,
)


def nested(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.lists(inner, max_size=4).map(tuple),
            st.sets(hashables, max_size=4),
            st.frozensets(hashables, max_size=4),
            st.dictionaries(hashables, inner, max_size=4),
            st.dictionaries(st.text(max_size=5), inner, max_size=4),
        ),
        max_leaves=20,
    )


# Values every store keeps with its default codec; codecs are tested with Enums of this module.
store_values = nested(st.one_of(hashable_leaves, st.decimals(), st.sampled_from([b"", "€"])))
codec_values = nested(st.one_of(hashable_leaves, st.decimals(), st.sampled_from(Color)))


@pytest.mark.parametrize("name", list(CODECS))
@settings(max_examples=150, deadline=None)
@given(value=codec_values)
def test_any_nested_value_round_trips_through_each_codec(name: str, value: Any) -> None:
    codec = CODECS[name]
    assert typed(codec.decode(codec.encode(value))) == typed(value)


@given(value=codec_values)
@settings(max_examples=50, deadline=None)
def test_json_text_for_tools_round_trips(value: Any) -> None:
    codec = CODECS["json"]
    assert typed(codec.from_text(codec.to_text(value))) == typed(value)


@pytest.mark.parametrize("name", STORE_NAMES)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    user=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    value=store_values,
    state=store_values,
)
def test_any_nested_value_round_trips_through_each_store(
    name: str, user: int, value: Any, state: Any
) -> None:
    async def write_then_read(folder: Path) -> tuple[Any, Any, Any]:
        stores = StoreFactory(name, folder)
        first = stores.open()
        await first.update_user_data(user, {"value": value})
        await first.update_bot_data({"bot": value})
        await first.update_conversation("c", (user, "x"), state)
        await first.close()
        second = stores.open()
        result = (
            await second.get_user_data(),
            await second.get_bot_data(),
            await second.get_conversations("c"),
        )
        await stores.close_all()
        return result

    with tempfile.TemporaryDirectory() as folder:
        user_data, bot_data, conversations = asyncio.run(write_then_read(Path(folder)))
    assert typed(user_data) == typed({user: {"value": value}})
    assert typed(bot_data) == typed({"bot": value})
    expected_state = {} if state is None else {(user, "x"): state}
    assert typed(conversations) == typed(expected_state)


def test_typed_tells_apart_what_equality_does_not() -> None:
    assert {1: "a"} == {1.0: "a"}
    assert typed({1: "a"}) != typed({1.0: "a"})
    assert typed((1, 2)) != typed([1, 2])
    assert typed(datetime(2024, 1, 1)) != typed(datetime(2024, 1, 1, tzinfo=timezone.utc))
    assert typed(Decimal("1.0")) != typed(Decimal("1.00"))
    assert typed({"k": {UUID(int=1)}}) == typed({"k": {UUID(int=1)}})
    assert typed(date(2024, 1, 1)) != typed(datetime(2024, 1, 1))
