"""Atomic tasks from existing rows (EcomGPT): reversal, simplification, recombination.

Source: EcomGPT (Li et al., AAAI 2024, arXiv:2308.06966), the construction of "atomic"
(chain-of-task) tasks from existing data: a task is *reversed* (its output becomes the input
of a new task whose answer is the old input, e.g. question answering -> question generation),
*simplified* (a compound task split into the sub-tasks it implicitly contains) or
*recombined* (fields of several samples joined into a new task, e.g. matching an answer to
its question among others). The paper builds them by hand-written rules over labelled
datasets; here the rules are general (any instruction data), simplification asks the
generator where the split is, and every row that yields nothing says why (a reason code).

Pure functions over records: the Beam shell is pipelines/transforms/atomic_tasks.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from filters.rouge import rouge_l
from filters.rules import is_fragment
from filters.verdict import Verdict
from schemas import InstructionRecord, Reason, content_hash, stable_id
from schemas.records import normalize_text

RECIPE: Final = "atomic_tasks"
# A derived row's `transform`: "<name>@v<N>". A change of rule or wording is a new version.
REVERSAL: Final = "reversal@v2"  # v2: conversation fragments are not sources
SIMPLIFICATION: Final = "simplification@v2"  # v2: token-boundary grounding, request check
RECOMBINATION: Final = "recombination@v2"  # v2: distractors too similar to the answer left out


def derived_record(sources: Sequence[InstructionRecord], transform: str, stage: str,
                   instruction: str, input: str, output: str, part: int = 0
                   ) -> InstructionRecord:
    """A new row made from `sources` (anchor first), with its lineage.

    It keeps the anchor's origin and input order (file, row, order value), so per-source
    audits and the greedy filters downstream treat it like the row it came from.
    """
    anchor = sources[0]
    ids = tuple(s.id for s in sources)
    row_id = stable_id(RECIPE, transform, *ids, part, instruction, input, output)
    return InstructionRecord(
        id=row_id, content_hash=content_hash(instruction, input, output), recipe=RECIPE,
        stage=stage, round=0, instruction=instruction, input=input, output=output,
        origin=anchor.origin, task_id=row_id, slot=anchor.slot, position=anchor.position,
        order_value=anchor.order_value, derived_from=ids, transform=transform)


def _words(text: str) -> int:
    return len(text.split())


def _fragment(record: InstructionRecord) -> Verdict | None:
    """A conversation cut from a longer chat (it opens with the assistant's message) is no
    source: its "request" is a mid-conversation turn that leans on what came before."""
    if is_fragment(record.conversation):
        return Verdict.drop(Reason.CONVERSATION_FRAGMENT,
                            "the conversation opens with the assistant's message")
    return None


# --- reversal --------------------------------------------------------------------------------

REVERSE_REQUEST: Final = "Write the question or request that the response below answers."
REVERSE_INPUT: Final = ('The text below is what this task produced: "{instruction}"\n'
                        "Write the input text the task was given.")


@dataclass(frozen=True)
class ReversalRule:
    """Which rows can be reversed. Words are whitespace-separated tokens."""

    min_output_words: int = 8  # a label or one-word answer does not determine its request
    max_request_words: int = 64  # longer requests carry pasted material the answer omits
    min_length_ratio: float = 0.5  # rows with input: output words / input words


def judge_reversal(record: InstructionRecord, rule: ReversalRule) -> Verdict:
    """Whether `record` reverses into a well-posed task, and if not, why.

    A reversal is kept only when the old output (the new task's input) is enough to
    recover the old request: short outputs (labels, yes/no) fit countless requests, long
    requests hold material the answer does not repeat, and an output much shorter than its
    input (a summary, an extraction) has dropped what would have to be recovered.
    """
    instruction, inp, out = record.instruction.strip(), record.input.strip(), record.output.strip()
    if fragment := _fragment(record):
        return fragment
    if not instruction:
        return Verdict.drop(Reason.EMPTY_INSTRUCTION, "no request to recover")
    if not out:
        return Verdict.drop(Reason.EMPTY_OUTPUT, "no output to start from")
    if normalize_text(out) in {normalize_text(instruction), normalize_text(inp)}:
        return Verdict.drop(Reason.INPUT_EQUALS_OUTPUT, "the output repeats the request")
    out_words = _words(out)
    if out_words < rule.min_output_words:
        return Verdict.drop(Reason.OUTPUT_TOO_SHORT_TO_REVERSE,
                            f"{out_words} words < {rule.min_output_words}", float(out_words))
    if not inp:
        request_words = _words(instruction)
        if request_words > rule.max_request_words:
            return Verdict.drop(Reason.REQUEST_TOO_LONG_TO_REVERSE,
                                f"{request_words} words > {rule.max_request_words}",
                                float(request_words))
        return Verdict.ok(float(out_words))
    ratio = out_words / max(1, _words(inp))
    if ratio < rule.min_length_ratio:
        return Verdict.drop(Reason.LOSSY_REVERSAL,
                            f"output/input words {ratio:.2f} < {rule.min_length_ratio}", ratio)
    return Verdict.ok(ratio)


# EcomGPT's "output constraints" of a reversed task: which field of the source it must give.
REVERSE_REQUEST_CONSTRAINT: Final = "Output only the request (the source task's instruction)."
REVERSE_INPUT_CONSTRAINT: Final = "Output only the input text (the source task's input)."


def reverse(record: InstructionRecord, stage: str) -> InstructionRecord:
    """The reversed task: the old output is the input, the old request the answer."""
    if record.input.strip():
        instruction = REVERSE_INPUT.format(instruction=record.instruction.strip())
        return dataclasses.replace(
            derived_record([record], REVERSAL, stage, instruction, record.output,
                           record.input), output_constraint=REVERSE_INPUT_CONSTRAINT)
    return dataclasses.replace(
        derived_record([record], REVERSAL, stage, REVERSE_REQUEST, record.output,
                       record.instruction), output_constraint=REVERSE_REQUEST_CONSTRAINT)


# --- simplification --------------------------------------------------------------------------

_LIST_ITEM = re.compile(r"^\s*(?:\d{1,2}[.)]|[-*\u2022])\s+\S", re.M)
_QUESTION = re.compile(r"\?(?=\s|$)")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")
# English directive verbs that open a sentence asking for something (a cheap signal; `select:
# all` lets the generator decide for every row instead, in any language).
_DIRECTIVES: Final = frozenset(
    "add answer calculate classify compare create describe explain find give identify "
    "include list make name provide rewrite suggest summarize summarise tell translate "
    "write also then finally".split())


def count_parts(text: str) -> int:
    """How many things a request asks for, by the largest of three signals: list items,
    questions, and sentences that open with a directive verb."""
    items = len(_LIST_ITEM.findall(text))
    questions = len(_QUESTION.findall(text))
    directives = sum(1 for s in _SENTENCE_SPLIT.split(text)
                     if s.split() and s.split()[0].lower().strip(",:") in _DIRECTIVES)
    return max(items, questions, directives)


@dataclass(frozen=True)
class SimplifyRule:
    min_parts: int = 2  # count_parts of the request at least this
    max_source_chars: int = 3000  # request + input + output: what fits the model's context
    select_all: bool = False  # send every row with an output; the generator decides


def judge_simplification_candidate(record: InstructionRecord, rule: SimplifyRule) -> Verdict:
    """Whether a row goes to the generator to be split; the score is its part count."""
    if fragment := _fragment(record):
        return fragment
    if not record.instruction.strip():
        return Verdict.drop(Reason.EMPTY_INSTRUCTION, "no request to split")
    if not record.output.strip():
        return Verdict.drop(Reason.EMPTY_OUTPUT, "no answer to split")
    size = len(record.instruction) + len(record.input) + len(record.output)
    if size > rule.max_source_chars:
        return Verdict.drop(Reason.OVERLONG_INSTANCE,
                            f"{size} chars > {rule.max_source_chars}", float(size))
    parts = count_parts(record.instruction)
    if parts < rule.min_parts and not rule.select_all:
        return Verdict.drop(Reason.SINGLE_PART_TASK, f"{parts} part(s) < {rule.min_parts}",
                            float(parts))
    return Verdict.ok(float(parts))


def subtask_schema(max_subtasks: int, max_chars: int) -> dict[str, Any]:
    """The JSON schema the generator's answer is decoded with (and checked against)."""
    text = {"type": "string", "maxLength": max_chars}
    item = {"type": "object", "properties": {"instruction": text, "output": text},
            "required": ["instruction", "output"], "additionalProperties": False}
    return {"type": "object",
            "properties": {"subtasks": {"type": "array", "maxItems": max_subtasks,
                                        "items": item}},
            "required": ["subtasks"], "additionalProperties": False}


@dataclass(frozen=True)
class Subtask:
    instruction: str
    output: str


TRUNCATED: Final = "response_truncated"
UNPARSABLE: Final = "unparsable_response"


@dataclass(frozen=True)
class ParsedSubtasks:
    subtasks: tuple[Subtask, ...] = ()
    error: str | None = None  # TRUNCATED | UNPARSABLE: the answer is a dead letter
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None


def parse_subtasks(text: str, finish_reason: str | None, max_subtasks: int) -> ParsedSubtasks:
    """The generator's answer, read strictly: exactly the schema's shape, or an error.

    Nothing is repaired (no fence stripping, no partial JSON): an answer that is not what
    was asked for is recorded as it came, not guessed at.
    """
    if finish_reason == "length":
        return ParsedSubtasks(error=TRUNCATED, detail="stopped at max_tokens")
    try:
        data = json.loads(text)
    except ValueError as exc:
        return ParsedSubtasks(error=UNPARSABLE, detail=f"not JSON ({exc})")
    if not isinstance(data, dict) or set(data) != {"subtasks"}:
        return ParsedSubtasks(error=UNPARSABLE, detail='not an object {"subtasks": [...]}')
    items = data["subtasks"]
    if not isinstance(items, list) or len(items) > max_subtasks:
        return ParsedSubtasks(error=UNPARSABLE,
                              detail=f"subtasks is not a list of at most {max_subtasks}")
    subtasks = []
    for i, item in enumerate(items):
        if not (isinstance(item, dict) and set(item) == {"instruction", "output"}
                and all(isinstance(v, str) for v in item.values())):
            return ParsedSubtasks(error=UNPARSABLE, detail=f"subtask {i + 1} is not "
                                  '{"instruction": str, "output": str}')
        subtasks.append(Subtask(item["instruction"].strip(), item["output"].strip()))
    return ParsedSubtasks(tuple(subtasks))


_TOKEN = re.compile(r"\w+")
# Words that frame a request without saying what it is about: a sub-task's request is
# checked against the source request on the rest (its content words).
_FRAME_WORDS: Final = _DIRECTIVES | frozenset(
    "a an the of to in on for and or is are be it its this that these those what which who "
    "how why when where do does please me us you your my i with by from as at each its their "
    "state say".split())
# A sub-task's request shares at least this share of its content words with the source
# request (and input): it asks for a part of what was asked, not for something new.
MIN_REQUEST_OVERLAP: Final = 0.5


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens (Unicode \\w runs): what "on token boundaries" means here."""
    return _TOKEN.findall(text.lower())


def is_passage(part: Sequence[str], whole: Sequence[str]) -> bool:
    """Whether `part` is a contiguous run of whole tokens of `whole` ("no" is not in "know")."""
    n = len(part)
    if n == 0 or n > len(whole):
        return False
    first = part[0]
    return any(whole[i] == first and list(whole[i:i + n]) == list(part)
               for i in range(len(whole) - n + 1))


def request_overlap(sub_request: str, source: InstructionRecord) -> float:
    """Share of the sub-task request's content words found in the source request or input
    (0 when it has none: a request made only of frame words asks for nothing checkable)."""
    content = [t for t in tokens(sub_request) if t not in _FRAME_WORDS]
    if not content:
        return 0.0
    known = set(tokens(source.instruction)) | set(tokens(source.input))
    return sum(1 for t in content if t in known) / len(content)


def judge_subtasks(subtasks: Iterable[Subtask], source: InstructionRecord, grounded: bool,
                   min_request_overlap: float = MIN_REQUEST_OVERLAP
                   ) -> list[tuple[Subtask, Verdict]]:
    """Each proposed sub-task kept or dropped. `grounded`: its answer must be a passage of
    the source answer on word boundaries (case and punctuation aside), so the label comes
    from the data, as the paper's atomic tasks take theirs from the original annotation, not
    from the generator; and its request must be part of the source request (at least
    `min_request_overlap` of its content words), so the generator cannot invent a task that
    the source answer merely happens to contain words for."""
    whole = normalize_text(source.instruction)
    answer = tokens(source.output)
    seen: set[str] = set()
    judged = []
    for sub in subtasks:
        key = normalize_text(sub.instruction)
        if not key:
            verdict = Verdict.drop(Reason.EMPTY_INSTRUCTION, "empty sub-task")
        elif not sub.output:
            verdict = Verdict.drop(Reason.EMPTY_OUTPUT, "sub-task without an answer")
        elif key == whole:
            verdict = Verdict.drop(Reason.SAME_AS_SOURCE, "repeats the whole request")
        elif key in seen:
            verdict = Verdict.drop(Reason.DUPLICATE_INSTANCE, "same sub-task twice")
        elif normalize_text(sub.output) == key:  # small models echo the sub-task as answer
            verdict = Verdict.drop(Reason.INPUT_EQUALS_OUTPUT, "answer repeats the sub-task")
        elif grounded and not is_passage(tokens(sub.output), answer):
            verdict = Verdict.drop(Reason.UNGROUNDED_SUBTASK,
                                   "answer is not a passage of the source answer")
        elif grounded and (share := request_overlap(sub.instruction, source)
                           ) < min_request_overlap:
            verdict = Verdict.drop(Reason.OFF_REQUEST_SUBTASK,
                                   f"{share:.2f} of its content words in the source request "
                                   f"< {min_request_overlap}", share)
        else:
            verdict = Verdict.ok()
        seen.add(key)
        judged.append((sub, verdict))
    return judged


def simplified(source: InstructionRecord, sub: Subtask, part: int, stage: str
               ) -> InstructionRecord:
    return derived_record([source], SIMPLIFICATION, stage, sub.instruction, source.input,
                          sub.output, part)


# --- recombination ---------------------------------------------------------------------------

CHOOSE_ANSWER: Final = "Choose the answer that fits the request. Reply with its letter only."
LETTERS: Final = "ABCDEFGHIJ"
# The scores a multiple-choice row carries: how close its nearest distractor came to the
# right answer (ROUGE-L F), and the threshold it was drawn under, so a reader of the data can
# see (and query) how hard and how safe the question is.
DISTRACTOR_ROUGE_L: Final = "distractor_rouge_l_max"
DISTRACTOR_THRESHOLD: Final = "distractor_rouge_l_threshold"


@dataclass(frozen=True)
class RecombinationRule:
    options: int = 4  # answers shown, the right one included
    group_size: int = 64  # rows per group that distractors are drawn from
    max_option_chars: int = 400
    seed: int = 0
    # A candidate whose answer has ROUGE-L F > this with the right answer may answer the
    # request too ("Hi!" and "hi"): it is never shown as a wrong choice. 0.7: Self-Instruct's
    # novelty threshold, the one used elsewhere in this project.
    max_distractor_rouge_l: float = 0.7

    def __post_init__(self) -> None:
        if not 2 <= self.options <= len(LETTERS):
            raise ValueError(f"options must be in [2, {len(LETTERS)}]")
        if not 0.0 <= self.max_distractor_rouge_l <= 1.0:
            raise ValueError("max_distractor_rouge_l must be in [0, 1]")


def choice_constraint(options: int) -> str:
    """EcomGPT's output constraint of a multiple-choice row: one of the letters shown."""
    letters = list(LETTERS[:options])
    return f"Reply with one letter only: {', '.join(letters[:-1])} or {letters[-1]}."


# EcomGPT's "task description" of each atomic task (the kind of task, not this instance's
# request): the export's `task_description` for rows a transform derived.
TASK_DESCRIPTIONS: Final = {
    "reversal": "Task reversal: recover the request (or the input) a given response answers.",
    "simplification": "Task simplification: one sub-task of a compound request.",
    "recombination": "Answer matching: choose the answer that fits the request among several.",
}


def _draw(*parts: object) -> int:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).hexdigest()
    return int(digest[:12], 16)


def group_of(record_id: str, total: int, rule: RecombinationRule) -> int:
    """A row's group: a seeded hash over ~total/group_size groups, so a group's rows come
    from anywhere in the input and no worker has to hold the whole dataset."""
    return _draw(rule.seed, "group", record_id) % max(1, total // rule.group_size)


def _eligible(record: InstructionRecord, rule: RecombinationRule) -> Verdict:
    if fragment := _fragment(record):
        return fragment
    if not record.instruction.strip():
        return Verdict.drop(Reason.EMPTY_INSTRUCTION, "no request to match")
    if not record.output.strip():
        return Verdict.drop(Reason.EMPTY_OUTPUT, "no answer to offer")
    chars = len(record.output.strip())
    if chars > rule.max_option_chars:
        return Verdict.drop(Reason.OPTION_TOO_LONG, f"{chars} chars > {rule.max_option_chars}",
                            float(chars))
    return Verdict.ok()


def _request_text(record: InstructionRecord) -> str:
    inp = record.input.strip()
    return record.instruction.strip() + (f"\n\n{inp}" if inp else "")


def recombine_group(records: Iterable[InstructionRecord], rule: RecombinationRule, stage: str
                    ) -> list[tuple[InstructionRecord, Verdict, InstructionRecord | None]]:
    """Per row of one group: a multiple-choice task (its request, its answer among answers of
    other rows of the group) or why not. Deterministic: rows in id order, one RNG per anchor
    seeded by (seed, anchor id), distractors with distinct answers in id order."""
    rows = sorted(records, key=lambda r: r.id)
    verdicts = {r.id: _eligible(r, rule) for r in rows}
    distinct: dict[str, InstructionRecord] = {}
    for r in rows:
        if verdicts[r.id].keep:
            distinct.setdefault(normalize_text(r.output), r)
    out: list[tuple[InstructionRecord, Verdict, InstructionRecord | None]] = []
    for anchor in rows:
        verdict = verdicts[anchor.id]
        if not verdict.keep:
            out.append((anchor, verdict, None))
            continue
        own = normalize_text(anchor.output)
        similarity = {key: rouge_l(r.output, anchor.output) for key, r in distinct.items()
                      if key != own}
        others = [distinct[key] for key, value in similarity.items()
                  if value <= rule.max_distractor_rouge_l]
        if len(others) < rule.options - 1:
            similar = len(similarity) - len(others)
            out.append((anchor, Verdict.drop(
                Reason.TOO_FEW_OPTIONS, f"{len(others)} other answers < {rule.options - 1}"
                f" ({similar} more with ROUGE-L > {rule.max_distractor_rouge_l:g} to the"
                " answer left out)", float(len(others))), None))
            continue
        rng = random.Random(_draw(rule.seed, "recombine", anchor.id))
        distractors = rng.sample(others, rule.options - 1)
        closest = max(similarity[normalize_text(r.output)] for r in distractors)
        shown = [anchor, *distractors]
        rng.shuffle(shown)
        answers = "\n\n".join(f"{LETTERS[i]}. {r.output.strip()}" for i, r in enumerate(shown))
        text = f"Request:\n{_request_text(anchor)}\n\nAnswers:\n{answers}"
        letter = LETTERS[shown.index(anchor)]
        derived = dataclasses.replace(
            derived_record([anchor, *distractors], RECOMBINATION, stage, CHOOSE_ANSWER, text,
                           letter),
            scores=((DISTRACTOR_ROUGE_L, closest),
                    (DISTRACTOR_THRESHOLD, rule.max_distractor_rouge_l)),
            candidate_labels=tuple(LETTERS[:len(shown)]),
            output_constraint=choice_constraint(len(shown)))
        out.append((anchor, Verdict.ok(float(len(others))), derived))
    return out
