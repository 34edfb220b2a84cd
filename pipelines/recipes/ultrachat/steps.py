"""UltraChat's opening-line steps as plain functions over records: requests and answers.

Source: Ding et al. 2023 (arXiv:2305.14233) §3.1-3.3. Every opening-line stage is the same
move: ask the generator for a numbered list of n items about one subject (a meta-topic, a
question, an entity, a material type, a passage) and turn the answer into one row per item,
which the next stage may expand again. A row carries its lineage: `sector`, `topic` (the
topic path, entity or material type it came from), `task_id` (the row it expands) and, for
sector 3, `passage_id` and the passage itself in `input`. The Beam assembly is in
`pipelines.recipes.ultrachat.build`; the dialogue loop in `.dialogue`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from filters.novelty import greedy_novelty
from filters.ultrachat import parse_list, strip_quotes
from filters.verdict import Verdict
from pipelines.errors import InputError
from pipelines.generators.generation import GenerationOutcome, GenerationRequest
from pipelines.recipes.ultrachat.config import UltraChatRun
from pipelines.recipes.ultrachat.routing import (
    ContentTypes,
    read_content_types,
    read_lines,
)
from pipelines.transforms.provenance import Provenance, derive_seed
from prompts import load_prompt
from schemas import InstructionRecord, Reason, content_hash, stable_id

RECIPE = "ultrachat"
PROMPTS = "ultrachat"
WORLD, WRITING, MATERIALS = "world", "writing", "materials"
SECTORS = (WORLD, WRITING, MATERIALS)
STAGE_TOPICS = "ultrachat_topics"  # meta-topics (given, or proposed by the generator)
STAGE_SUBTOPICS = "ultrachat_subtopics"
STAGE_QUESTIONS = "ultrachat_questions"  # per topic and subtopic
STAGE_DERIVED = "ultrachat_derived"  # derived from each question
STAGE_ENTITIES = "ultrachat_entities"  # given entities
STAGE_ENTITY_QUESTIONS = "ultrachat_entity_questions"
STAGE_ENTITY_FOLLOWUPS = "ultrachat_entity_followups"  # specific and extended
STAGE_MATERIAL_TYPES = "ultrachat_material_types"  # given
STAGE_WRITING = "ultrachat_writing"  # instructions per material type
STAGE_REFINED = "ultrachat_refined"
STAGE_PASSAGES = "ultrachat_passages"  # sector 3's passages, within the word bounds
STAGE_MATERIAL = "ultrachat_material"  # instructions per passage
STAGE_OPENINGS = "ultrachat_openings"  # ROUGE-L novelty over all opening lines
STAGE_OPENINGS_NEAR_DUP = "ultrachat_openings_near_dup"
STAGE_SAMPLE = "ultrachat_opening_sample"
MIN_ITEM_WORDS = 2

Judged = tuple[InstructionRecord, Verdict]


@dataclass(frozen=True)
class ListAsk:
    """What a list request is about: the row it expands and the items it asks for."""

    parent: InstructionRecord
    stage: str  # the stage of the rows its answer yields
    n: int


def _row(stage: str, sector: str, text: str, rid: str, origin: str = "machine", *,
         task_id: str = "", topic: str | None = None, passage_id: str | None = None,
         slot: int | None = None, position: int | None = None) -> InstructionRecord:
    return InstructionRecord(id=rid, content_hash=content_hash(text), recipe=RECIPE,
                             stage=stage, round=0, instruction=text, origin=origin,
                             task_id=task_id, sector=sector, topic=topic,
                             passage_id=passage_id, slot=slot, position=position)


def given_rows(texts: Iterable[str], stage: str, sector: str) -> list[InstructionRecord]:
    """Subjects written in the config (meta-topics, entities, material types) as rows."""
    rows = []
    for i, text in enumerate(t.strip() for t in texts):
        if text:
            rid = stable_id(RECIPE, stage, "given", i, text)
            rows.append(_row(stage, sector, text, rid, "seed", task_id=rid, topic=text,
                             position=i))
    return rows


def read_entities(cfg: UltraChatRun) -> list[str]:
    """The entity route's entities: the config's list, then the file's lines (# comments)."""
    world = cfg.ultrachat.world
    entities = list(world.entities)
    if world.entities_file:
        path = Path(world.entities_file)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: cannot read ultrachat.world.entities_file ({exc})"
                             ) from None
        entities += [line.strip() for line in lines
                     if line.strip() and not line.lstrip().startswith("#")]
    return entities


def read_personas(cfg: UltraChatRun) -> tuple[str, ...]:
    """The user simulator's personas: the config's list, then the file's lines."""
    uc = cfg.ultrachat
    personas = tuple(p.strip() for p in uc.personas if p.strip())
    if uc.personas_file:
        personas += read_lines(uc.personas_file, "ultrachat.personas_file")
    return personas


def read_routing(cfg: UltraChatRun) -> ContentTypes | None:
    """Sector 3's content-type table, or None (one generic request list)."""
    path = cfg.ultrachat.materials.content_types_file
    return read_content_types(path) if path else None


def root_row() -> InstructionRecord:
    """The subject of the one meta-topic request (the world as a whole)."""
    return _row(STAGE_TOPICS, WORLD, "", stable_id(RECIPE, "root"))


def list_request(parent: InstructionRecord, stage: str, prompt: str, n: int, cfg: UltraChatRun,
                 kind: str = "", version: int = 1, **variables: object
                 ) -> list[GenerationRequest]:
    """One request for `n` items about `parent` with prompt `ultrachat/<prompt>` ([] for n=0)."""
    if n <= 0:
        return []
    template = load_prompt(PROMPTS, prompt, version)
    request_id = stable_id(RECIPE, stage, parent.id, kind)
    return [GenerationRequest(
        request_id=request_id, stage=stage, round=0, subject_id=parent.id,
        prompt=template.render(n=n, kind=kind, **variables), prompt_ref=template.ref,
        sampling=cfg.ultrachat.opening_sampling.as_request(),
        seed=derive_seed(cfg.seed, request_id), api="chat", context=ListAsk(parent, stage, n))]


def meta_topic_requests(root: InstructionRecord, cfg: UltraChatRun) -> list[GenerationRequest]:
    return list_request(root, STAGE_TOPICS, "meta_topics", cfg.ultrachat.world.num_meta_topics,
                        cfg)


def subtopic_requests(topic: InstructionRecord, cfg: UltraChatRun) -> list[GenerationRequest]:
    return list_request(topic, STAGE_SUBTOPICS, "subtopics",
                        cfg.ultrachat.world.subtopics_per_topic, cfg, topic=topic.instruction)


def question_requests(topic: InstructionRecord, cfg: UltraChatRun) -> list[GenerationRequest]:
    return list_request(topic, STAGE_QUESTIONS, "questions",
                        cfg.ultrachat.world.questions_per_topic, cfg, topic=topic.instruction)


def derived_requests(question: InstructionRecord, cfg: UltraChatRun) -> list[GenerationRequest]:
    return list_request(question, STAGE_DERIVED, "derived_questions",
                        cfg.ultrachat.world.derived_per_question, cfg,
                        question=question.instruction, topic=question.topic)


def entity_question_requests(entity: InstructionRecord, cfg: UltraChatRun
                             ) -> list[GenerationRequest]:
    return list_request(entity, STAGE_ENTITY_QUESTIONS, "entity_questions",
                        cfg.ultrachat.world.questions_per_entity, cfg,
                        entity=entity.instruction)


def entity_followup_requests(question: InstructionRecord, cfg: UltraChatRun
                             ) -> list[GenerationRequest]:
    """The paper's two expansions of an entity's meta-question: specific and extended."""
    world = cfg.ultrachat.world
    return [r for kind, n in (("specific", world.specific_per_question),
                              ("extended", world.extended_per_question))
            for r in list_request(question, STAGE_ENTITY_FOLLOWUPS, "entity_followups", n,
                                  cfg, kind=kind, entity=question.topic,
                                  question=question.instruction)]


def writing_requests(material: InstructionRecord, cfg: UltraChatRun) -> list[GenerationRequest]:
    return list_request(material, STAGE_WRITING, "writing_instructions",
                        cfg.ultrachat.writing.instructions_per_type, cfg,
                        material=material.instruction)


def material_requests(passage: InstructionRecord, cfg: UltraChatRun,
                      routing: ContentTypes | None = None) -> list[GenerationRequest]:
    """Requests about one passage: with routing, of the kinds its content type suits
    (prompt v2); without, from one generic list (v1, the cache keys of earlier runs)."""
    n = cfg.ultrachat.materials.instructions_per_passage
    if routing is None:
        return list_request(passage, STAGE_MATERIAL, "material_instructions", n, cfg,
                            passage=passage.instruction)
    kind = next((t for t in routing.types if t.name == passage.content_type), routing.default)
    return list_request(passage, STAGE_MATERIAL, "material_instructions", n, cfg, version=2,
                        passage=passage.instruction, content_type=kind.name,
                        requests=list(kind.requests))


def refine_requests(instruction: InstructionRecord, cfg: UltraChatRun
                    ) -> list[GenerationRequest]:
    """The paper's refinement: the generator rewrites one writing instruction."""
    template = load_prompt(PROMPTS, "refine_instruction", 1)
    request_id = stable_id(RECIPE, STAGE_REFINED, instruction.id)
    return [GenerationRequest(
        request_id=request_id, stage=STAGE_REFINED, round=0, subject_id=instruction.id,
        prompt=template.render(material=instruction.topic, instruction=instruction.instruction),
        prompt_ref=template.ref, sampling=cfg.ultrachat.opening_sampling.as_request(),
        seed=derive_seed(cfg.seed, request_id), api="chat",
        context=ListAsk(instruction, STAGE_REFINED, 1))]


def _child(ask: ListAsk, request_id: str, position: int, text: str) -> InstructionRecord:
    """An item of a list answer, with its parent's lineage."""
    parent = ask.parent
    topic = {STAGE_TOPICS: text,
             STAGE_SUBTOPICS: f"{parent.topic} / {text}"}.get(ask.stage, parent.topic)
    passage = parent.instruction if ask.stage == STAGE_MATERIAL else parent.input
    rid = stable_id(RECIPE, ask.stage, request_id, position, text)
    return replace(_row(ask.stage, parent.sector or WORLD, text, rid, task_id=parent.id,
                        topic=topic, passage_id=parent.passage_id, position=position),
                   input=passage, content_hash=content_hash(text, passage),
                   content_type=parent.content_type)


def _nothing(outcome: GenerationOutcome, ask: ListAsk, provenance: Provenance) -> Judged:
    """The one rejected row of an answer that gave no item: empty, or not a list."""
    assert outcome.completion is not None
    text = outcome.completion.text
    row = replace(_child(ask, outcome.request.request_id, 0, ""), output=text,
                  id=stable_id(RECIPE, ask.stage, outcome.request.request_id, "none"))
    reason = Reason.EMPTY_RESPONSE if not text.strip() else Reason.UNPARSABLE_RESPONSE
    return provenance.stamp(row, outcome), Verdict.drop(reason, "no list item")


def judge_list(outcome: GenerationOutcome, provenance: Provenance) -> list[Judged]:
    """A list answer -> one row per item, with why an item is not used.

    The last item of an answer cut at the length limit may be cut itself (rejected); items
    beyond the n asked for, and items of fewer than two words, are rejected.
    """
    assert outcome.completion is not None
    ask: ListAsk = outcome.request.context
    items = parse_list(outcome.completion.text)
    if not items:
        return [_nothing(outcome, ask, provenance)]
    truncated = outcome.completion.finish_reason == "length"
    judged = []
    for position, item in enumerate(items):
        row = provenance.stamp(_child(ask, outcome.request.request_id, position, item),
                               outcome)
        if truncated and position == len(items) - 1:
            verdict = Verdict.drop(Reason.RESPONSE_TRUNCATED, "last item of a cut answer")
        elif position >= ask.n:
            verdict = Verdict.drop(Reason.NOT_SAMPLED, f"beyond the {ask.n} items asked for")
        elif len(item.split()) < MIN_ITEM_WORDS:
            verdict = Verdict.drop(Reason.TOO_SHORT, f"{len(item.split())} word(s)")
        else:
            verdict = Verdict.ok()
        judged.append((row, verdict))
    return judged


def judge_refined(outcome: GenerationOutcome, provenance: Provenance) -> list[Judged]:
    """A refined writing instruction: the answer itself, unless empty or cut."""
    assert outcome.completion is not None
    ask: ListAsk = outcome.request.context
    text = strip_quotes(outcome.completion.text.strip())
    row = provenance.stamp(_child(ask, outcome.request.request_id, 0, text), outcome)
    if outcome.completion.finish_reason == "length":
        return [(row, Verdict.drop(Reason.RESPONSE_TRUNCATED, "refined instruction cut"))]
    if not text:
        return [(row, Verdict.drop(Reason.EMPTY_RESPONSE, "no refined instruction"))]
    return [(row, Verdict.ok())]


def passage_row(record: InstructionRecord, cfg: UltraChatRun,
                routing: ContentTypes | None = None) -> Judged:
    """An input row as a sector-3 passage (its `passage_field`), within the word bounds;
    with routing, its content type from the keywords found in `materials.match_fields`."""
    mat = cfg.ultrachat.materials
    text = (record.output if mat.passage_field == "output" else record.instruction).strip()
    rid = stable_id(RECIPE, STAGE_PASSAGES, record.id)
    row = _row(STAGE_PASSAGES, MATERIALS, text, rid, record.origin, task_id=record.id,
               passage_id=record.id, slot=record.slot, position=record.position)
    if routing is not None:
        fields = {"input": record.input, "passage": text}
        row = replace(row, content_type=routing.route(fields[f] for f in mat.match_fields).name)
    n = len(text.split())
    if not mat.min_passage_words <= n <= mat.max_passage_words:
        return row, Verdict.drop(Reason.PASSAGE_OUT_OF_RANGE, f"{n} words outside "
                                 f"[{mat.min_passage_words}, {mat.max_passage_words}]", n)
    return row, Verdict.ok(n)


def opening_order(record: InstructionRecord) -> tuple[int, str]:
    """The order the opening-line dedup decides in: sector, then id (a fixed shuffle)."""
    return (SECTORS.index(record.sector) if record.sector in SECTORS else len(SECTORS),
            record.id)


def passage_key(record: InstructionRecord) -> str:
    """Which passage a sector-3 opening line is about: the passage's text, not its row id
    (the same text read twice is one passage)."""
    return content_hash(record.input)


def dedup_passage_requests(requests: Iterable[InstructionRecord], threshold: float
                           ) -> list[Judged]:
    """Sector 3's opening-line dedup, within one passage.

    A sector-3 opening line is a request *and* its passage. The same generic request ("Sum up
    this text") over two passages is two opening lines, and two requests about one passage
    must not be compared by their shared passage (it would make every pair a duplicate). So
    the requests about one passage are decided with Self-Instruct's greedy ROUGE-L rule, in
    `opening_order`, against each other only; across passages nothing is a duplicate.
    """
    ordered = sorted(requests, key=opening_order)
    verdicts = greedy_novelty([r.instruction for r in ordered], (), threshold=threshold)
    judged = []
    for row, v in zip(ordered, verdicts, strict=True):
        row = replace(row, rouge_l_max=v.score if v.most_similar is not None else None,
                      most_similar=v.most_similar)
        judged.append((row, Verdict.ok(v.score) if v.accepted else Verdict.drop(
            Reason.NOT_NOVEL, f"ROUGE-L {v.score:.4f} > {threshold} to a request about the "
            "same passage", v.score)))
    return judged


def sample_sector(openings: Iterable[InstructionRecord], n: int, seed: int) -> list[Judged]:
    """Keep a seeded random `n` of one sector's opening lines; the rest are not sampled."""
    ranked = sorted(openings, key=lambda r: (derive_seed(seed, "opening_sample", r.id), r.id))
    return [(r, Verdict.ok() if i < n else Verdict.drop(
        Reason.NOT_SAMPLED, f"beyond max_dialogues_per_sector={n}")) for i, r in enumerate(ranked)]

