"""Multi-turn rows: the message shapes we read, one canonical form, and the user turns.

Accepted: a list of {"role", "content"} (OpenAI) or {"from", "value"} (ShareGPT) messages, or
that list as a JSON string. Stored on the record as canonical JSON [{"role", "content"}] with
roles "system", "user", "assistant", so every later stage reads one shape. No Beam here.
"""

from __future__ import annotations

import json
from typing import Any

from pipelines.errors import InputError

_ROLES = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant",
          "bot": "assistant", "model": "assistant", "chatgpt": "assistant",
          "system": "system"}


def read_messages(row: dict[str, Any], name: str, where: str) -> list[dict[str, str]]:
    """The row's conversation in canonical form; an InputError names the row and field."""
    if name not in row:
        raise InputError(f"{where}: field '{name}' is missing")
    value = row[name]
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise InputError(f"{where}: field '{name}' is a string but not JSON") from None
    if not isinstance(value, list):
        raise InputError(f"{where}: field '{name}' must be a list of messages, got "
                         f"{type(value).__name__}")
    messages = []
    for i, message in enumerate(value):
        if not isinstance(message, dict):
            raise InputError(f"{where}: field '{name}' message {i} is not an object")
        role = message.get("role", message.get("from"))
        content = message.get("content", message.get("value"))
        if not isinstance(role, str) or role.lower() not in _ROLES:
            raise InputError(f"{where}: field '{name}' message {i} has an unknown role {role!r}")
        if not isinstance(content, str):
            raise InputError(f"{where}: field '{name}' message {i} has no text content")
        messages.append({"role": _ROLES[role.lower()], "content": content})
    # No user text (an empty conversation, or only replies: real corpora such as ShareGPT
    # have them) is not malformed input: like an empty instruction column, the rules filter
    # rejects the row as `empty_instruction` and InsTag has nothing to tag.
    return messages


def canonical(messages: list[dict[str, str]]) -> str:
    return json.dumps(messages, ensure_ascii=False, separators=(",", ":"))


def first_exchange(messages: list[dict[str, str]]) -> tuple[str, str]:
    """(first user turn, first assistant reply after it): the row's single-turn view;
    ("", "") when the conversation has no user turn."""
    users = [i for i, m in enumerate(messages) if m["role"] == "user"]
    if not users:
        return "", ""
    first = users[0]
    reply = next((m["content"] for m in messages[first + 1:] if m["role"] == "assistant"), "")
    return messages[first]["content"], reply


def user_turns(conversation: str) -> list[str]:
    """The non-empty user turns of a stored conversation, in order."""
    return [m["content"] for m in json.loads(conversation)
            if m["role"] == "user" and m["content"].strip()]
