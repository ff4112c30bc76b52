"""Erasing one conversation's memories in the offline store (#13) also forgets the caller name and
the collected facts it gave, so conversation-init no longer greets the caller with them; what another
call gave stays."""

from typing import Any

from services.memory.domain import MemoryItem

CALLER = "+16125550142"


def _named(conversation_id: str, name: str, started_at: int) -> list[MemoryItem]:
    metadata = {"conversation_id": conversation_id, "caller_name": name, "started_at": started_at}
    return [MemoryItem(f"my name is {name}", "user", "factual", metadata)]


def test_erasing_a_conversation_forgets_the_name_it_gave(oss_store: Any) -> None:
    oss_store.add_conversation(CALLER, "conv_named", _named("conv_named", "Maria", 1751800000))
    assert oss_store.caller_name(CALLER) == "Maria"

    oss_store.add_conversation(CALLER, "conv_named", [])

    assert oss_store.caller_name(CALLER) is None
    assert oss_store.list(CALLER) == []


def test_erasing_another_conversation_keeps_the_name(oss_store: Any) -> None:
    oss_store.add_conversation(CALLER, "conv_named", _named("conv_named", "Maria", 1751800000))
    oss_store.add_conversation(CALLER, "conv_other", _named("conv_other", "M.", 1751000000))

    oss_store.add_conversation(CALLER, "conv_other", [])

    assert oss_store.caller_name(CALLER) == "Maria"


def _facts(conversation_id: str, text: str, started_at: int) -> list[MemoryItem]:
    metadata = {"conversation_id": conversation_id, "source": "data_collection", "started_at": started_at}
    return [MemoryItem(text, "user", "factual", metadata)]


def test_erasing_a_conversation_forgets_the_facts_it_collected(oss_store: Any) -> None:
    oss_store.add_conversation(CALLER, "conv_facts", _facts("conv_facts", "comfort level: low", 1751800000))
    assert oss_store.caller_facts(CALLER) == "comfort level: low"

    oss_store.add_conversation(CALLER, "conv_facts", [])

    assert oss_store.caller_facts(CALLER) is None


def test_erasing_another_conversation_keeps_the_facts(oss_store: Any) -> None:
    oss_store.add_conversation(CALLER, "conv_facts", _facts("conv_facts", "comfort level: low", 1751800000))
    oss_store.add_conversation(CALLER, "conv_other", _facts("conv_other", "comfort level: high", 1751000000))

    oss_store.add_conversation(CALLER, "conv_other", [])

    assert oss_store.caller_facts(CALLER) == "comfort level: low"
