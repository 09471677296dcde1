"""Importing a conversation file: what is refused, and the exact words the user reads.

The import is how a person moves a chat between machines; a file it refuses must say which part
is wrong and why, and a file it accepts must come back as it left.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from assistant.chat.history import EXPORT_FORMAT, HistoryStore
from assistant.errors import ImportFormatError
from assistant.paths import app_paths

HINT = "Pick a file exported by Offline Assistant (JSON format)."
START = "This is not a conversation file this app can import: "


@pytest.fixture
def store() -> Iterator[HistoryStore]:
    with HistoryStore(app_paths().history_db) as opened:
        yield opened


def _valid() -> dict[str, Any]:
    return {
        "format": EXPORT_FORMAT,
        "version": 1,
        "conversation": {
            "title": "Picnic",
            "created_at": "2024-05-01T10:00:00.000000+00:00",
            "settings": {"temperature": 0.3},
        },
        "messages": [
            {"role": "user", "text": "Plan a picnic"},
            {
                "role": "assistant",
                "text": "Bring bread.",
                "model": "smollm2",
                "provider": "local",
                "stats": {"completion_tokens": 3},
                "status": "complete",
                "created_at": "2024-05-01T10:00:01.000000+00:00",
            },
        ],
    }


def _with(path: list[Any], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(_valid())
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (None, "the file does not hold a JSON object"),
        (["a list"], "the file does not hold a JSON object"),
        (_with(["format"], "other"), f"'format' should be {EXPORT_FORMAT!r}"),
        (_with(["version"], 2), "'version' is 2; this app reads version 1"),
        (_with(["version"], True), "'version' is True; this app reads version 1"),
        (_with(["conversation"], None), "'conversation' is missing or not an object"),
        (_with(["conversation", "model"], 5), "conversation.model should be text"),
        (_with(["conversation", "system_prompt"], []), "conversation.system_prompt should be text"),
        (_with(["conversation", "updated_at"], 1), "conversation.updated_at should be text"),
        (_with(["conversation", "settings"], "hot"), "conversation.settings should be an object"),
        (
            _with(["conversation", "created_at"], "yesterday"),
            "conversation.created_at is not a date and time ('yesterday')",
        ),
        (_with(["messages"], "none"), "'messages' is missing or not a list"),
        (_with(["messages", 1], 7), "messages[1] is not an object"),
        (
            _with(["messages", 0, "role"], "robot"),
            "messages[0].role should be one of system, user, assistant",
        ),
        (_with(["messages", 1, "text"], 4), "messages[1].text is missing or not text"),
        (
            _with(["messages", 1, "status"], "done"),
            "messages[1].status should be one of complete, interrupted, error",
        ),
        (_with(["messages", 1, "model"], 1), "messages[1].model should be text"),
        (_with(["messages", 1, "provider"], 1), "messages[1].provider should be text"),
        (_with(["messages", 1, "created_at"], 1), "messages[1].created_at should be text"),
        (
            _with(["messages", 1, "created_at"], "soon"),
            "messages[1].created_at is not a date and time ('soon')",
        ),
        (_with(["messages", 1, "stats"], [1]), "messages[1].stats should be an object"),
    ],
)
def test_each_refusal_names_the_part_and_the_problem(
    store: HistoryStore, data: Any, problem: str
) -> None:
    with pytest.raises(ImportFormatError) as caught:
        store.import_json(data)
    assert caught.value.message == f"{START}{problem}."
    assert caught.value.hint == HINT
    assert store.list_conversations() == []


def test_what_is_optional_may_be_left_out_or_null(store: HistoryStore) -> None:
    data = _valid()
    data["conversation"] = {"title": None, "model": None, "settings": None}
    del data["messages"][1]["status"]
    data["messages"][1].update(model=None, provider=None, stats=None, created_at=None)
    imported = store.import_json(data)
    assert imported.title == "Plan a picnic"  # named after its first question
    assert imported.settings == {}
    answer = store.messages(imported.id)[1]
    assert (answer.model, answer.provider, answer.stats, answer.status) == (
        None,
        None,
        {},
        "complete",
    )
    assert answer.created_at  # a time of its own, not left empty


def test_an_import_keeps_the_creation_times_and_goes_to_the_top(
    store: HistoryStore, tmp_path: Path
) -> None:
    store.create_conversation(title="Older")
    imported = store.import_json(_valid())
    assert imported.created_at == "2024-05-01T10:00:00.000000+00:00"
    assert imported.updated_at > imported.created_at
    assert [c.title for c in store.list_conversations()] == ["Picnic", "Older"]
    messages = store.messages(imported.id)
    assert [m.created_at for m in messages][1] == "2024-05-01T10:00:01.000000+00:00"
    assert [(m.role, m.text) for m in messages] == [
        ("user", "Plan a picnic"),
        ("assistant", "Bring bread."),
    ]
    assert store.get_conversation(imported.id).settings == {"temperature": 0.3}
