"""A scripted generator for Explore-Instruct prompts (extend and enrich), chat or completions.

Answers are a deterministic function of (prompt, seed) and of the `ExploreScript` knobs, so a
test can make a model that proposes too many subtasks (breadth cap), one per call (attempts),
or nothing usable (unparsable answers), and read back every prompt it was sent.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field

from fakes import ScriptedServer, _rng

WORDS = ["tone", "headline", "summary", "register", "clarity", "rhythm", "metaphor", "outline",
         "citation", "dialogue", "caption", "slogan", "abstract", "transition", "emphasis",
         "brevity", "jargon", "idiom", "voice", "structure", "argument", "anecdote",
         "contrast", "hook", "closing", "bullet", "agenda", "apology", "invitation", "review"]
VERBS = ["Rewrite", "Shorten", "Polish", "Rephrase", "Expand", "Condense", "Adapt", "Soften",
         "Sharpen", "Restructure", "Simplify", "Formalize"]


@dataclass
class ExploreScript:
    extra_subtasks: int = 0  # propose k + extra subtasks
    max_subtasks: int | None = None  # propose at most this many per call
    unparsable_extend: float = 0.0  # share of extend answers that are prose
    unparsable_enrich: float = 0.0
    bad_examples: float = 0.15  # share of examples a rule drops
    repeat_examples: float = 0.15  # share of examples that repeat an earlier instruction
    prompts: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, prompt: str, seed: int) -> tuple[str, str]:
        with self.lock:
            self.prompts.append(prompt)
        if "new subtasks, give the reason" in prompt:
            return self.extend(prompt, seed), "stop"
        if "examples of this new subtask below" in prompt:
            return self.enrich(prompt, seed), "stop"
        return "I do not understand.", "stop"

    def extend(self, prompt: str, seed: int) -> str:
        rng = _rng(prompt, seed, "extend")
        if rng.random() < self.unparsable_extend:
            return "Sure! Here are some thoughts about the task, in no particular format."
        k = int(re.search(r"Propose (\d+) new subtasks", prompt)[1]) + self.extra_subtasks
        if self.max_subtasks is not None:
            k = min(k, self.max_subtasks)
        blocks = []
        for _ in range(k):
            name = f"{rng.choice(WORDS).capitalize()} {rng.choice(WORDS)} {rng.choice(WORDS)}"
            examples = "".join(f"###\n{i}. {self._example(rng)}" for i in (1, 2))
            blocks.append(f"New subtask: {name}\nReason: It is needed for {name.lower()}.\n"
                          f"Examples:\n{examples}###")
        return "\n".join(blocks)

    def enrich(self, prompt: str, seed: int) -> str:
        rng = _rng(prompt, seed, "enrich")
        if rng.random() < self.unparsable_enrich:
            return "Here you go: lots of good examples, trust me."
        n = int(re.search(r"Write (\d+) examples", prompt)[1])
        items: list[str] = []
        for _ in range(1, n + 1):
            if items and rng.random() < self.repeat_examples:
                items.append(items[rng.randrange(len(items))])
            else:
                items.append(self._example(rng))
        return "Examples:\n" + "".join(f"###\n{i}. {item}" for i, item in enumerate(items, 1))

    def _example(self, rng) -> str:
        roll = rng.random()
        if roll < self.bad_examples / 3:
            return "Instruction: Draw a map.\nInput: <noinput>\nOutput: A map.\n"
        if roll < 2 * self.bad_examples / 3:
            return "Instruction: Fix the typo below.\nInput: <typo here>\nOutput: Fixed.\n"
        if roll < self.bad_examples:
            return "Instruction: Only an instruction here, and no other field.\n"
        a, b, c = (rng.choice(WORDS) for _ in range(3))
        return (f"Instruction: {rng.choice(VERBS)} the {a} of this {b} about {c} "
                f"number {rng.randint(1, 10**6)}.\nInput: The {b} talks about {c}, "
                f"{rng.randint(1, 999)} times.\nOutput: A better {a} for the {b}.\n")


class ExploreServer(ScriptedServer):
    """ScriptedServer answering Explore-Instruct prompts through `script`."""

    def __init__(self, script: ExploreScript | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.script = script or ExploreScript()

    def _answer(self, body: dict, completed: bool = True) -> dict:
        chat = "messages" in body
        prompt = body["messages"][-1]["content"] if chat else body["prompt"]
        text, finish = self.script.answer(prompt, int(body.get("seed") or 0))
        with self.stats.lock:
            self.stats.answered += completed
        choice = ({"message": {"role": "assistant", "content": text}} if chat
                  else {"text": text})
        return {"id": "cmpl-scripted", "model": body.get("model"),
                "choices": [{"index": 0, "finish_reason": finish, **choice}],
                "usage": {"prompt_tokens": len(prompt.split()),
                          "completion_tokens": len(text.split())}}
