"""A scripted task splitter for the atomic-task simplification: the ScriptedServer answering
the simplify prompt by splitting the request into sentences and pairing each with the
response sentence at the same place (so the answers are grounded). Markers in the request
steer it: GARBLE -> not JSON (a dead letter), ONEPART -> no split, INVENT -> answers that are
not in the response (ungrounded)."""

from __future__ import annotations

import json
import re

from fakes import ScriptedServer

_SENTENCES = re.compile(r"(?<=[.!?])\s+")


def split_answer(prompt: str) -> str:
    request = prompt.split("\nRequest: ", 1)[1].split("\n", 1)[0]
    response = prompt.split("\nResponse: ", 1)[1].removesuffix("\nAssistant:")
    if "GARBLE" in request:
        return "Sure! The sub-tasks are: first this, then that."
    if "ONEPART" in request:
        return json.dumps({"subtasks": []})
    asks, says = _SENTENCES.split(request), _SENTENCES.split(response)
    subtasks = [{"instruction": ask, "output": "made up" if "INVENT" in request else
                 says[min(i, len(says) - 1)]} for i, ask in enumerate(asks)]
    return json.dumps({"subtasks": subtasks[:4]})


class ScriptedSplitter(ScriptedServer):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.bodies: list[dict] = []

    def _answer(self, body: dict, completed: bool = True) -> dict:
        chat = "messages" in body
        prompt = body["messages"][-1]["content"] if chat else body["prompt"]
        text = split_answer(prompt)
        with self.stats.lock:
            self.bodies.append(body)
            self.stats.answered += completed
        choice = ({"index": 0, "message": {"role": "assistant", "content": text},
                   "finish_reason": "stop"} if chat else
                  {"index": 0, "text": text, "finish_reason": "stop"})
        return {"id": "scripted", "model": body.get("model"), "choices": [choice],
                "usage": {"prompt_tokens": len(prompt.split()),
                          "completion_tokens": len(text.split())}}
