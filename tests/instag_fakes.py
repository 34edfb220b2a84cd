"""A scripted #InsTag tagger: the ScriptedServer answering tagging prompts from keywords.

Tags come in variants on purpose (case, punctuation, plural, paraphrase) so that every
normalization step has something to do; a query containing GARBLE gets a malformed answer.
Both APIs are answered in their own shape (chat: message content; completions: text).
"""

from __future__ import annotations

import hashlib
import json

from fakes import ScriptedServer

KEYWORDS: list[tuple[str, list[str]]] = [
    ("poem", ["Poetry writing", "creative writing"]),
    ("haiku", ["poetry-writing", "creative writing", "haiku"]),
    ("python", ["Coding", "python programming"]),
    ("function", ["coding", "functions"]),
    ("translate", ["translation", "language"]),
    ("french", ["Translations", "french"]),
    ("sum", ["math", "arithmetic"]),
    ("multiply", ["Math", "arithmetic"]),
    ("email", ["email writing", "formal tone"]),
    ("explain", ["explanation"]),
    ("list", ["listing"]),
]


def tagger_answer(query: str) -> str:
    if "GARBLE" in query:
        return "tags: coding, math, everything"
    tags: list[str] = []
    lowered = query.lower()
    for word, said in KEYWORDS:
        if word in lowered:
            tags += [t for t in said if t not in tags]
    if query.rstrip().endswith("?"):
        tags.append("question answering")
    digest = int(hashlib.sha256(query.encode()).hexdigest(), 16)
    tags.append(f"topic {digest % 97}")  # a rare tag: the frequency filter drops it
    return json.dumps([{"tag": t, "explanation": f"the query is about {t}"} for t in tags])


def query_of(prompt: str) -> str:
    return prompt.split("\nQuery: ", 1)[1].removesuffix("\nAssistant:")


class ScriptedTagger(ScriptedServer):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.bodies: list[dict] = []

    def _answer(self, body: dict, completed: bool = True) -> dict:
        chat = "messages" in body
        prompt = body["messages"][-1]["content"] if chat else body["prompt"]
        text = tagger_answer(query_of(prompt))
        with self.stats.lock:
            self.bodies.append(body)
            self.stats.answered += completed
        choice = ({"index": 0, "message": {"role": "assistant", "content": text},
                   "finish_reason": "stop"} if chat else
                  {"index": 0, "text": text, "finish_reason": "stop"})
        return {"id": "scripted", "model": body.get("model"), "choices": [choice],
                "usage": {"prompt_tokens": len(prompt.split()),
                          "completion_tokens": len(text.split())}}
