"""UltraChat's dialogue loop, one turn at a time, as plain functions over `Dialogue` states.

Source: Ding et al. 2023 (arXiv:2305.14233) §3: two models take turns, one prompted to act as
the user (the dialogue so far plus a short role instruction: given only the history, the
paper saw the user model answer like an assistant), the other as the assistant, for 3 to 7
rounds. With personas configured, the user prompt also carries one user personality, drawn
per dialogue (seeded), as the paper adds one to the history. Here a dialogue's number of
rounds is drawn (seeded) from [min_rounds, max_rounds]; round 1's user turn is the opening
line. Before a round starts, its prompts and answers must
fit the model context (estimated from the token counts the server reported for the
dialogue's latest call); a dialogue that would not fit ends there, kept with
`dialogue_end = context_full` when it has `min_kept_rounds`, else rejected. Each new turn is
judged (`filters.ultrachat.check_turn`); a failing turn ends the dialogue, rejected with the
rule's reason and score, the turn included so a reader sees why.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, replace

from filters.ultrachat import TurnRules, check_turn, clean_user_turn
from filters.verdict import Verdict
from pipelines.generators.backends import GeneratorIdentity, served_context
from pipelines.generators.generation import GenerationOutcome, GenerationRequest
from pipelines.recipes.ultrachat.config import UltraChatRun
from pipelines.recipes.ultrachat.routing import draw_persona
from pipelines.recipes.ultrachat.steps import MATERIALS, PROMPTS, RECIPE
from pipelines.transforms.provenance import canonical_sampling, derive_seed
from prompts import PromptTemplate, load_prompt
from schemas import InstructionRecord, Message, Reason, content_hash, stable_id

STAGE_USER = "ultrachat_user_turn"
STAGE_ASSISTANT = "ultrachat_assistant_turn"
STAGE_DIALOGUES = "ultrachat_dialogues"
USER_PROMPT = (PROMPTS, "user_turn", 1)
PERSONA_PROMPT = (PROMPTS, "user_turn", 2)  # the same, with the user's personality
OPENING_PROMPT = (PROMPTS, "material_opening", 1)
# The assistant sees the dialogue itself (chat messages), not a template.
ASSISTANT_REF = f"{PROMPTS}/chat_history"
ROUNDS_REACHED = "rounds_reached"
CONTEXT_FULL = "context_full"
CHARS_PER_TOKEN = 3  # before the server has counted: a cautious guess for English text


@dataclass(frozen=True)
class Dialogue:
    """A dialogue so far: its opening row, the rounds it was drawn, its turns and how each
    was made, the tokens its latest call used, and (once over) why it ended."""

    opening: InstructionRecord
    rounds_wanted: int
    messages: tuple[Message, ...]
    generators: tuple[str, ...]
    finish_reasons: tuple[str, ...]
    last_tokens: int = 0  # prompt + completion tokens of the latest call; 0 before one
    end: str | None = None  # ROUNDS_REACHED, CONTEXT_FULL or a rejection reason
    verdict: Verdict | None = None  # set when the dialogue is rejected
    persona: str | None = None  # the simulated user's personality; None: the fixed line

    @property
    def rounds(self) -> int:
        return sum(m.role == "assistant" for m in self.messages)

    @property
    def over(self) -> bool:
        return self.end is not None


@dataclass(frozen=True)
class Budget:
    """The context a round must fit into (None: unknown, no check) and the turn sizes."""

    limit: int | None
    margin: int
    user_max: int
    assistant_max: int


def budget(cfg: UltraChatRun) -> Budget:
    uc = cfg.ultrachat
    limit = uc.context_tokens
    if limit is None:
        known = [c for c in (served_context(cfg.generator),
                             served_context(uc.user_generator or cfg.generator)) if c]
        limit = min(known) if known else None
    return Budget(limit, uc.context_margin_tokens, uc.user_sampling.max_tokens,
                  uc.assistant_sampling.max_tokens)


def turn_rules(cfg: UltraChatRun) -> TurnRules:
    uc = cfg.ultrachat
    return TurnRules(uc.repeat_threshold, uc.drift_openers, uc.refusal_patterns,
                     uc.drift_phrases, uc.loop_repeats, uc.speaker_labels)


def opening_text(record: InstructionRecord) -> str:
    """The first user turn: the opening line, with sector 3's passage inlined."""
    if record.sector == MATERIALS:
        return load_prompt(*OPENING_PROMPT).render(instruction=record.instruction,
                                                   passage=record.input).strip()
    return record.instruction


def start(record: InstructionRecord, cfg: UltraChatRun, personas: tuple[str, ...] = ()
          ) -> Dialogue:
    """A dialogue from an opening row; its rounds and its user's persona drawn from its id
    and the run's seed."""
    uc = cfg.ultrachat
    rounds = random.Random(derive_seed(cfg.seed, "rounds", record.id)).randint(
        uc.min_rounds, uc.max_rounds)
    return Dialogue(record, rounds, (Message("user", opening_text(record)),),
                    (record.generator or "",), (record.finish_reason or "",),
                    persona=draw_persona(personas, cfg.seed, record.id))


def user_prompt(d: Dialogue) -> PromptTemplate:
    """The user simulator's prompt: with the dialogue's persona, or the fixed role line."""
    return load_prompt(*PERSONA_PROMPT) if d.persona else load_prompt(*USER_PROMPT)


def _tokens_so_far(d: Dialogue, margin: int) -> int:
    if d.last_tokens:
        return d.last_tokens + margin
    return math.ceil(sum(len(m.content) for m in d.messages) / CHARS_PER_TOKEN) + margin


def _out_of_context(d: Dialogue, need: int, limit: int, min_kept: int) -> Dialogue:
    if d.rounds >= min_kept:
        return replace(d, end=CONTEXT_FULL)
    verdict = Verdict.drop(Reason.CONTEXT_EXCEEDED, f"round {d.rounds + 1} needs ~{need} "
                           f"tokens > context {limit}", need)
    return replace(d, end=verdict.reason, verdict=verdict)


def user_step(d: Dialogue, round_index: int, cfg: UltraChatRun, plan: Budget
              ) -> GenerationRequest | Dialogue:
    """Round `round_index` (>= 2) of a live dialogue: the simulated user's request, or the
    dialogue over (its rounds reached, or the round would not fit the context)."""
    if d.rounds >= d.rounds_wanted:
        return replace(d, end=ROUNDS_REACHED)
    need = _tokens_so_far(d, plan.margin) + plan.user_max + plan.assistant_max
    if plan.limit is not None and need > plan.limit:
        return _out_of_context(d, need, plan.limit, cfg.ultrachat.min_kept_rounds)
    template = user_prompt(d)
    request_id = stable_id(RECIPE, STAGE_USER, d.opening.id, round_index)
    history = [{"role": m.role, "content": m.content} for m in d.messages]
    persona = {"persona": d.persona} if d.persona else {}
    return GenerationRequest(
        request_id=request_id, stage=STAGE_USER, round=round_index, subject_id=d.opening.id,
        prompt=template.render(history=history, **persona), prompt_ref=template.ref,
        sampling=cfg.ultrachat.user_sampling.as_request(),
        seed=derive_seed(cfg.seed, request_id), api="chat", context=d)


def assistant_step(d: Dialogue, round_index: int, cfg: UltraChatRun, plan: Budget
                   ) -> GenerationRequest | Dialogue:
    """The assistant's turn of round `round_index`: the whole dialogue as chat messages.
    Round 1 checks the context here (later rounds checked it before the user turn)."""
    if round_index == 1:
        need = _tokens_so_far(d, plan.margin) + plan.assistant_max
        if plan.limit is not None and need > plan.limit:
            return _out_of_context(d, need, plan.limit, cfg.ultrachat.min_kept_rounds)
    system = cfg.ultrachat.assistant_system_prompt
    turns = ((("system", system),) if system else ()) + tuple(
        (m.role, m.content) for m in d.messages)
    request_id = stable_id(RECIPE, STAGE_ASSISTANT, d.opening.id, round_index)
    return GenerationRequest(
        request_id=request_id, stage=STAGE_ASSISTANT, round=round_index,
        subject_id=d.opening.id, prompt=_as_json(turns), prompt_ref=ASSISTANT_REF,
        sampling=cfg.ultrachat.assistant_sampling.as_request(),
        seed=derive_seed(cfg.seed, request_id), api="chat", context=d, messages=turns)


def _as_json(turns: tuple[tuple[str, str], ...]) -> str:
    return json.dumps([{"role": r, "content": c} for r, c in turns], ensure_ascii=False,
                      separators=(",", ":"))


def judge_turn(outcome: GenerationOutcome, rules: TurnRules, generator: str) -> Dialogue:
    """Add the answered turn to its dialogue and judge it; a failing turn ends the dialogue
    (rejected), the assistant turn of the last drawn round ends it kept."""
    assert outcome.completion is not None
    d: Dialogue = outcome.request.context
    completion = outcome.completion
    role = "user" if outcome.request.stage == STAGE_USER else "assistant"
    text = clean_user_turn(completion.text) if role == "user" else completion.text.strip()
    verdict = check_turn(text, completion.finish_reason, role,
                         [m.content for m in d.messages], rules)
    d = replace(d, messages=d.messages + (Message(role, text),),
                generators=d.generators + (generator,),
                finish_reasons=d.finish_reasons + (completion.finish_reason or "",),
                last_tokens=completion.prompt_tokens + completion.completion_tokens)
    if not verdict.keep:
        assert verdict.reason is not None
        return replace(d, end=verdict.reason.value, verdict=verdict)
    if role == "assistant" and d.rounds >= d.rounds_wanted:
        return replace(d, end=ROUNDS_REACHED)
    return d


def partial_history(request: GenerationRequest) -> str | None:
    """A failed turn's dialogue so far (for its dead letter), as JSON messages."""
    d = request.context
    if not isinstance(d, Dialogue):
        return None
    return _as_json(tuple((m.role, m.content) for m in d.messages))


def dialogue_row(d: Dialogue, assistant: GeneratorIdentity, cfg: UltraChatRun
                 ) -> tuple[InstructionRecord, Verdict]:
    """The dataset row of a finished dialogue and its verdict: `instruction` (and `input`)
    are the opening's, `output` the first reply, so single-turn tools still read it."""
    opening = d.opening
    end = d.end or ROUNDS_REACHED
    text = _as_json(tuple((m.role, m.content) for m in d.messages))
    reply = next((m.content for m in d.messages if m.role == "assistant"), "")
    row = InstructionRecord(
        id=stable_id(RECIPE, STAGE_DIALOGUES, opening.id), content_hash=content_hash(text),
        recipe=RECIPE, stage=STAGE_DIALOGUES, round=d.rounds, instruction=opening.instruction,
        input=opening.input, output=reply, origin="machine", task_id=opening.id,
        generator=assistant.model, generator_revision=assistant.revision,
        prompt_ref=user_prompt(d).ref, persona=d.persona, content_type=opening.content_type,
        sampling=canonical_sampling(cfg.ultrachat.assistant_sampling.as_request()),
        finish_reason=d.finish_reasons[-1] if d.finish_reasons else None,
        messages=d.messages, sector=opening.sector, opening_id=opening.id, topic=opening.topic,
        passage_id=opening.passage_id, rounds=d.rounds, dialogue_end=end,
        turn_generators=d.generators, turn_finish_reasons=d.finish_reasons)
    return row, d.verdict or Verdict.ok(float(d.rounds))
