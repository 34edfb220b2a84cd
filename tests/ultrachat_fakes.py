"""A scripted chat generator for UltraChat: list stages, refinement, user and assistant turns.

Answers are a deterministic function of the request (messages and seed). `ChatScript` knobs
make a user simulator that drifts into the assistant's role for dialogues about a topic, a
turn whose request fails for a topic (every attempt: a dead letter), and token counts
inflated so the dialogue outgrows a context limit. Every request body is recorded.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field

from fakes import ScriptedServer, _rng

NOUNS = ["harbour", "glacier", "orchard", "comet", "lantern", "meadow", "canyon", "violin",
         "bakery", "compass", "reef", "quarry", "tram", "pigeon", "marble", "kettle", "atlas",
         "beacon", "saddle", "thimble", "walnut", "ferry", "quilt", "anvil"]
ASPECTS = ["history", "economics", "chemistry", "folklore", "maintenance", "design",
           "ecology", "politics", "geometry", "music", "safety", "taxation"]
LIST_ASK = re.compile(r"(?:Name|Write) (\d+) ")


class TurnFailed(Exception):
    """The request gets an answer without choices: the client retries it, then fails it."""


@dataclass
class ChatScript:
    drift_topic: str | None = None  # user turns of dialogues mentioning it answer instead
    drift_round: int = 2
    fail_topic: str | None = None  # user turns of dialogues mentioning it always fail
    fail_round: int = 2
    token_scale: int = 1  # reported tokens = words x scale (grows a dialogue past a context)
    bodies: list[dict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, body: dict) -> tuple[str, str]:
        with self.lock:
            self.bodies.append(body)
        messages = body["messages"]
        prompt = messages[-1]["content"]
        seed = int(body.get("seed") or 0)
        if len(messages) == 1 and "Answer with a numbered list" in prompt:
            return self.items(prompt, seed), "stop"
        if len(messages) == 1 and prompt.startswith("Here is a request for an AI assistant"):
            return "Please write it for my team, friendly and under 200 words.", "stop"
        if len(messages) == 1 and prompt.startswith("You play the human user"):
            return self.user(prompt, seed)
        return self.assistant(messages, seed), "stop"

    def items(self, prompt: str, seed: int) -> str:
        rng = _rng(prompt, seed)
        n = int(LIST_ASK.search(prompt)[1])
        subject = re.findall(r'"([^"]+)"', prompt)
        about = subject[0] if subject else "the world"
        lines = [f"{i}. {rng.choice(['Why', 'How', 'When', 'Where', 'What'])} "
                 f"{' '.join(rng.sample(ASPECTS + NOUNS, 5))} {about}?" for i in range(1, n + 1)]
        return "Here you go:\n" + "\n".join(lines)

    def user(self, prompt: str, seed: int) -> tuple[str, str]:
        rounds = prompt.count("\nAssistant: ") + 1
        if self.fail_topic and self.fail_topic in prompt and rounds == self.fail_round:
            raise TurnFailed(self.fail_topic)
        if self.drift_topic and self.drift_topic in prompt and rounds == self.drift_round:
            return "Sure! Here is a detailed answer to that question, point by point.", "stop"
        rng = _rng(prompt, seed, "user")
        return (f"User: Could you explain the {rng.choice(ASPECTS)} part with a "
                f"{rng.choice(NOUNS)} example, number {rng.randint(1, 10**6)}?", "stop")

    def assistant(self, messages: list[dict], seed: int) -> str:
        rng = _rng(str(messages), seed, "assistant")
        return (f"The {rng.choice(ASPECTS)} of the {rng.choice(NOUNS)} matters because of "
                f"the {rng.choice(NOUNS)} and the {rng.choice(NOUNS)}; consider case "
                f"{rng.randint(1, 10**6)} and then case {rng.randint(1, 10**6)}.")


class ChatServer(ScriptedServer):
    """ScriptedServer answering UltraChat's chat requests through `script`."""

    def __init__(self, script: ChatScript | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.script = script or ChatScript()

    def _answer(self, body: dict, completed: bool = True) -> dict:
        try:
            text, finish = self.script.answer(body)
        except TurnFailed:
            return {"id": "chat-scripted", "choices": []}  # an invalid body, every attempt
        with self.stats.lock:
            self.stats.answered += completed
        prompt_words = sum(len(m["content"].split()) for m in body["messages"])
        scale = self.script.token_scale
        return {"id": "chat-scripted", "model": body.get("model"),
                "choices": [{"index": 0, "finish_reason": finish,
                             "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": prompt_words * scale,
                          "completion_tokens": len(text.split()) * scale}}
