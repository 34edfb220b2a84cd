"""Scripted servers for the Ensemble-Instruct pipeline: every consensus path on purpose.

Each accepted instruction gets a *scenario* from its hash; the generator and the extra
models all derive the same scenario from the instruction they see, so the instance and the
extra answers are arranged to take one consensus path:

* ``exact``: the twin (same server as the generator, greedy) repeats the generator's output;
* ``agreed``: both extra models give the same answer, different from the generator's;
* ``rouge``: three overlapping but different answers;
* ``disagree``: the extra models answer with words the others never use;
* ``missing``: the other model never answers properly: a failure, not a drop;
* ``invalid``: the generator's instance is not in the valid format.
"""

from __future__ import annotations

import hashlib
import re

from fakes import ScriptedServer, _rng

SCENARIOS = ("exact", "agreed", "rouge", "disagree", "missing", "invalid")
VERBS = ["Explain", "Describe", "Summarize", "Compare", "Outline", "Evaluate", "Classify",
         "Rewrite", "Estimate", "Identify", "Predict", "Translate"]
TOPICS = ["the water cycle", "compound interest", "renewable energy", "binary search",
          "photosynthesis", "remote work", "electric cars", "volcano formation",
          "sleep hygiene", "ocean tides", "vaccines", "urban gardening", "chess openings",
          "inflation", "solar panels", "time management", "public transport", "glaciers"]
AUDIENCES = ["for a child", "in two sentences", "for a manager", "with an analogy",
             "in plain English", "for a beginner", "in a formal tone", "with examples"]


def scenario(instruction: str) -> str:
    digest = hashlib.sha256(instruction.strip().encode()).hexdigest()
    return SCENARIOS[int(digest, 16) % len(SCENARIOS)]


def generator_output(instruction: str) -> str:
    words = re.findall(r"[a-z]+", instruction.lower())[:4]
    return f"Answer: {' '.join(words)} made simple."


def instruction_answer(prompt: str, seed: int) -> str:
    rng = _rng(prompt, seed)
    n = int(re.findall(r"(\d+)\.$", prompt)[0])
    items = []
    for _ in range(rng.randint(1, 3)):
        roll = rng.random()
        if roll < 0.1:
            items.append(rng.choice(["Draw a map of the park near you.", "Sort it."]))
        elif roll < 0.2:
            shown = re.findall(r"^\d+\. (.+?)(?: \|EoS\|)?$", prompt, flags=re.M)
            items.append(rng.choice(shown))
        else:
            items.append(f"{rng.choice(VERBS)} {rng.choice(TOPICS)} {rng.choice(AUDIENCES)}.")
    return " " + " |EoS|".join(f"{item}" if i == 0 else f"\n{n + i}. {item}"
                               for i, item in enumerate(items)) + " "


def instance_answer(prompt: str) -> str:
    instruction = prompt.rstrip("\n").rsplit("instruction: ", 1)[1]
    kind = scenario(instruction)
    if kind == "invalid":
        return "Sure! Here is an example for you."
    output = generator_output(instruction)
    if "needs an input" in prompt.split("\n", 1)[0]:
        return f"input: a case about {instruction.split()[1]}\noutput: {output}\n|EoS|"
    return f"output: {output}\n"


def extra_answer(instruction: str, persona: str) -> str | None:
    """The twin's or the other model's answer; None means "refuse the request"."""
    kind = scenario(instruction)
    base = generator_output(instruction)
    if kind == "exact":
        return base.upper() + "!!" if persona == "twin" else "A reply nobody else gives."
    if kind == "agreed":
        return " Both extras say: it depends. "
    if kind == "rouge":
        return base.replace("simple", "clear") if persona == "twin" else base + " Really."
    if kind == "disagree":
        return "zebra quartz" if persona == "twin" else "mango violin"
    if kind == "missing":
        return None if persona == "other" else base
    return "unused"


def _instruction_in_extra_prompt(prompt: str) -> str:
    if prompt.startswith("Follow each instruction."):  # few-shot: the last block
        return prompt.rsplit("\ninstruction: ", 1)[1].split("\n", 1)[0]
    return prompt.split("\n", 1)[0]  # zero-shot: instruction, newline, input


class EnsembleScriptedServer(ScriptedServer):
    """Answers instruction, instance and extra-output prompts; `persona` shapes the latter."""

    def __init__(self, persona: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.persona = persona
        self.refused = 0
        self.bodies: list[dict] = []

    def _answer(self, body: dict, completed: bool = True) -> dict:
        prompt = body.get("prompt") or body["messages"][-1]["content"]
        seed = int(body.get("seed") or 0)
        with self.stats.lock:
            self.stats.answered += completed
            self.bodies.append(body)
        if prompt.startswith("Think up a series"):
            text = instruction_answer(prompt, seed)
            if body.get("include_stop_str_in_output"):  # stopped at the stop string
                text += "|EoS|"
        elif prompt.startswith("Write an example for each instruction."):
            text = instance_answer(prompt)
        else:
            answer = extra_answer(_instruction_in_extra_prompt(prompt), self.persona)
            if answer is None:  # a body without choices: retried, then a failed request
                with self.stats.lock:
                    self.refused += 1
                return {"error": {"message": "refused by script"}}
            text = answer
        choice: dict = {"index": 0, "finish_reason": "stop"}
        if "messages" in body:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        return {"id": "cmpl-scripted", "model": body.get("model"), "choices": [choice],
                "usage": {"prompt_tokens": len(prompt.split()),
                          "completion_tokens": len(text.split())}}

