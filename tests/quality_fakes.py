"""A scripted LLM judge: the ScriptedServer rating judge prompts from the response's text.

The score is read from a marker in the response ("[score 2]"); an answer without one gets 5.
A response containing GARBLE gets prose instead of JSON (an unparsable answer).
"""

from __future__ import annotations

import json
import re

from fakes import ScriptedServer

_SCORE = re.compile(r"\[score (\d+)\]")


def judge_answer(prompt: str) -> str:
    response = prompt.rsplit("\nResponse: ", 1)[1]
    if "GARBLE" in response:
        return "This answer looks pretty good to me, I'd say four-ish."
    for marker in ("NaN", "Infinity", "1e999"):  # JSON that json.loads reads as nan/inf
        if f"[score {marker}]" in response:
            return f'{{"rationale": "Odd.", "score": {marker}}}'
    found = _SCORE.search(response)
    score = int(found.group(1)) if found else 5
    return json.dumps({"rationale": f"Scripted rating of {len(response)} chars.",
                       "score": score})


class ScriptedJudge(ScriptedServer):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.bodies: list[dict] = []

    def _answer(self, body: dict, completed: bool = True) -> dict:
        prompt = body["messages"][-1]["content"]
        text = judge_answer(prompt)
        with self.stats.lock:
            self.bodies.append(body)
            self.stats.answered += completed
        return {"id": "scripted", "model": body.get("model"), "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text},
             "finish_reason": "stop"}],
            "usage": {"prompt_tokens": len(prompt.split()),
                      "completion_tokens": len(text.split())}}

