"""The LLM judge's pure half: its JSON schema, the fields it reads, and parsing its answer.

The generator rates a row (instruction, input, output) from 1 to `scale` with a one-line
rationale (prompts/quality/judge.v<N>.jinja). Decoding is constrained by `judge_schema`
where the server supports it, but the parser does not trust that: an answer that is not a
JSON object with a whole-number score in range is unparsable, and the Beam shell turns it into
a dead letter that keeps the raw text (AlpaGasus-style filtering is then a ScoreFilter with
min 4.5 of 5 on the parsed score).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")
_SPACE = re.compile(r"\s+")


def judge_schema(scale: int, max_rationale_chars: int) -> dict[str, Any]:
    """The answer's JSON schema: rationale first (the model says why, then rates), bounded so
    a small model cannot loop; `max_tokens` must leave room for it."""
    return {
        "type": "object",
        "properties": {
            "rationale": {"type": "string", "maxLength": max_rationale_chars},
            "score": {"type": "integer", "minimum": 1, "maximum": scale},
        },
        "required": ["rationale", "score"],
        "additionalProperties": False,
    }


@dataclass(frozen=True, slots=True)
class JudgeAnswer:
    """A parsed answer: `score` and `rationale`, or `problem` saying why it did not parse."""

    score: float | None
    rationale: str = ""
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.score is not None


def _number(value: Any) -> float | None:
    """A finite number, or None: NaN, Infinity and 1e999 (json reads them as float nan/inf)
    are no rating, and `int(inf)` would raise and take the whole run down with it."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def parse_judge_answer(text: str, finish_reason: str | None, scale: int,
                       max_rationale_chars: int = 200) -> JudgeAnswer:
    """Read `{"rationale": str, "score": int}` from the judge's raw answer.

    Tolerates what does not change the meaning (a Markdown code fence, text around the one
    object, a whole number written as 4.0 or "4"); anything else is a problem, named.
    """
    body = _FENCE.sub("", text.strip())
    start, end = body.find("{"), body.rfind("}")
    cut = " (cut at the length limit)" if finish_reason == "length" else ""
    if start < 0 or end < start:
        return JudgeAnswer(None, problem=f"no JSON object in the answer{cut}")
    try:  # from the first "{" to the last "}": always an object when it parses
        data = json.loads(body[start:end + 1])
    except json.JSONDecodeError as exc:
        return JudgeAnswer(None, problem=f"invalid JSON ({exc.msg}){cut}")
    score = _number(data.get("score"))
    if score is None:
        return JudgeAnswer(None, problem=f"no numeric 'score' (got {data.get('score')!r:.40})")
    if score != int(score) or not 1 <= score <= scale:
        return JudgeAnswer(None, problem=f"score {score:g} is not a whole number in 1..{scale}")
    rationale = data.get("rationale", "")
    rationale = _SPACE.sub(" ", rationale if isinstance(rationale, str) else str(rationale))
    return JudgeAnswer(score, rationale.strip()[:max_rationale_chars])
