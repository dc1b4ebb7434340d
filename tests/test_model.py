"""Model-based test: random sequences of contract calls leave every store equal to a dict.

A hypothesis state machine applies updates, drops, conversation changes (to a state or to
None), flushes, switches of ``on_flush`` and reopenings to a store, and keeps the same changes
in a plain dict. After each reopening the store must hold exactly what the dict holds, and the
live persistence must show the same, pending changes included.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from botstate.persistence import Persistence

from .conftest import require
from .stores import STORES

HANDLERS = ("signup", "order")
DELETED = object()

Address = tuple[str, Any]

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(st.one_of(st.text(max_size=5), st.integers(-9, 9)), inner, max_size=3),
    ),
    max_leaves=8,
)
ids = st.integers(-1, 2)
conversation_keys = st.tuples(ids, st.one_of(ids, st.text(max_size=3)))
callback_data = st.tuples(
    st.lists(
        st.tuples(
            st.text(max_size=4), st.floats(0, 2e9), st.dictionaries(st.text(max_size=3), values)
        ),
        max_size=2,
    ),
    st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=2),
)


class StoreModel(RuleBasedStateMachine):
    """One store driven by random contract calls next to a dict of what it must hold."""

    def __init__(self, store: str) -> None:
        super().__init__()
        self.store = store
        self.folder = Path(tempfile.mkdtemp(prefix="botstate-model-"))
        self.loop = asyncio.new_event_loop()
        self.stored: dict[Address, Any] = {}
        self.pending: dict[Address, Any] = {}
        self.persistence = self.open(on_flush=False)

    def open(self, on_flush: bool) -> Persistence[Any, Any, Any]:
        return STORES[self.store].open(self.folder, on_flush=on_flush)

    def run(self, call: Any) -> Any:
        return self.loop.run_until_complete(call)

    # -- contract calls -------------------------------------------------------------------------
    # Each call first sets on_flush as drawn: a change kept in memory and a later one written at
    # once, to the same record, must still end as the later one.

    def call(self, on_flush: bool, call: Any, address: Address, value: Any) -> None:
        self.persistence.on_flush = on_flush
        self.run(call)
        (self.pending if on_flush else self.stored)[address] = value
        if not on_flush:
            self.pending.pop(address, None)

    @rule(user=ids, value=values, on_flush=st.booleans())
    def update_user(self, user: int, value: Any, on_flush: bool) -> None:
        self.call(
            on_flush, self.persistence.update_user_data(user, value), ("user_data", user), value
        )

    @rule(chat=ids, value=values, on_flush=st.booleans())
    def update_chat(self, chat: int, value: Any, on_flush: bool) -> None:
        self.call(
            on_flush, self.persistence.update_chat_data(chat, value), ("chat_data", chat), value
        )

    @rule(value=st.dictionaries(st.text(max_size=5), values, max_size=3), on_flush=st.booleans())
    def update_bot_data(self, value: Any, on_flush: bool) -> None:
        self.call(on_flush, self.persistence.update_bot_data(value), ("bot_data", None), value)

    @rule(value=callback_data, on_flush=st.booleans())
    def update_callback_data(self, value: Any, on_flush: bool) -> None:
        self.call(
            on_flush, self.persistence.update_callback_data(value), ("callback_data", None), value
        )

    @rule(user=ids, on_flush=st.booleans())
    def drop_user(self, user: int, on_flush: bool) -> None:
        self.call(on_flush, self.persistence.drop_user_data(user), ("user_data", user), DELETED)

    @rule(chat=ids, on_flush=st.booleans())
    def drop_chat(self, chat: int, on_flush: bool) -> None:
        self.call(on_flush, self.persistence.drop_chat_data(chat), ("chat_data", chat), DELETED)

    @rule(
        name=st.sampled_from(HANDLERS),
        key=conversation_keys,
        state=st.none() | values,
        on_flush=st.booleans(),
    )
    def update_conversation(
        self, name: str, key: tuple[Any, ...], state: Any, on_flush: bool
    ) -> None:
        self.call(
            on_flush,
            self.persistence.update_conversation(name, key, state),
            ("conversations", (name, key)),
            DELETED if state is None else state,
        )

    @rule()
    def flush(self) -> None:
        self.run(self.persistence.flush())
        self.stored.update(self.pending)
        self.pending.clear()

    @rule(on_flush=st.booleans())
    def reopen(self, on_flush: bool) -> None:
        """Close the persistence (which flushes), open a new one, compare it with the model."""
        self.flush()
        self.run(self.persistence.close())
        self.persistence = self.open(on_flush)
        assert self.run(self.view()) == self.expected(self.stored)

    @invariant()
    def the_live_persistence_shows_every_change(self) -> None:
        assert self.run(self.view()) == self.expected({**self.stored, **self.pending})

    # -- comparing --------------------------------------------------------------------------------

    async def view(self) -> dict[str, Any]:
        persistence = self.persistence
        return {
            "user_data": await persistence.get_user_data(),
            "chat_data": await persistence.get_chat_data(),
            "bot_data": await persistence.get_bot_data(),
            "callback_data": await persistence.get_callback_data(),
            **{name: await persistence.get_conversations(name) for name in HANDLERS},
        }

    @staticmethod
    def expected(records: dict[Address, Any]) -> dict[str, Any]:
        present = {address: value for address, value in records.items() if value is not DELETED}
        return {
            "user_data": {key: v for (kind, key), v in present.items() if kind == "user_data"},
            "chat_data": {key: v for (kind, key), v in present.items() if kind == "chat_data"},
            "bot_data": present.get(("bot_data", None), {}),
            "callback_data": present.get(("callback_data", None)),
            **{
                name: {
                    key[1]: v
                    for (kind, key), v in present.items()
                    if kind == "conversations" and key[0] == name
                }
                for name in HANDLERS
            },
        }

    def teardown(self) -> None:
        try:
            self.run(self.persistence.close())
        finally:
            self.loop.close()
            shutil.rmtree(self.folder, ignore_errors=True)


@pytest.mark.parametrize("store", list(STORES))
def test_random_contract_calls_leave_the_store_equal_to_a_simple_model(store: str) -> None:
    require(store)
    run_state_machine_as_test(
        lambda: StoreModel(store),
        settings=settings(
            max_examples=20,
            stateful_step_count=25,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
