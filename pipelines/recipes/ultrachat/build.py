"""UltraChat on Beam: opening lines from three sectors, then dialogues turn by turn.

Opening lines: each sector is a chain of list stages (`steps`), each one fan-out of
requests over the rows of the stage before it (topics -> subtopics -> questions -> derived
questions; entities -> meta-questions -> specific and extended questions; material types ->
instructions -> refined; passages -> instructions). Opening lines then go through exact
ROUGE-L novelty: sectors 1 and 2 together, sector 3 per passage (its opening line is request
and passage; optionally MinHash near duplicates on sectors 1-2) and, if configured, a
seeded per-sector sample.

Dialogues: Beam has no loops, and a dialogue has at most `max_rounds` rounds, so the rounds
are unrolled when the graph is built (two Generate steps per round, a constant per config):
round r sends the simulated user's turn of every live dialogue as one fan-out, then the
assistant's turn of every dialogue still live, so thousands of dialogues advance together
and the generator stays saturated. A dialogue leaves the loop when it has its drawn rounds,
when the next round would not fit the context, or when a turn fails a rule; every finished
dialogue is one row judged by the `ultrachat_dialogues` stage. A request that fails after
its retries is a dead letter carrying the dialogue so far (`partial`). The user simulator
is its own generator when `ultrachat.user_generator` is set; steps with equal generator
settings share one server.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam

from filters.near_dup import MinHashParams
from pipelines.generators.backends import GeneratorIdentity, resolve_identity
from pipelines.generators.generation import GenerationRequest
from pipelines.generators.handler import GeneratorModelHandler
from pipelines.recipes.base import BuildContext, RecipeOutputs
from pipelines.recipes.ensemble_instruct.build import model_identifier
from pipelines.recipes.instag.build import WriteReports
from pipelines.recipes.ultrachat import dialogue, steps
from pipelines.recipes.ultrachat.config import UltraChatRun
from pipelines.recipes.ultrachat.stats import DialogueStatistics
from pipelines.transforms.dataset_input import ReadDataset
from pipelines.transforms.filter_chain import apply_filters, count_input
from pipelines.transforms.near_dup import NearDuplicateFilter
from pipelines.transforms.novelty import FILTER_NAME as NOVELTY_FILTER
from pipelines.transforms.novelty import NoveltyFilter
from pipelines.transforms.provenance import Provenance
from pipelines.transforms.route import Generate, RouteVerdicts, count, stage_generator
from schemas import InstructionRecord

GenerateStage = Callable[[str], Generate]


@dataclass
class _Graph:
    """What the stages share while the graph is assembled."""

    cfg: UltraChatRun
    generate: GenerateStage  # the main generator, for the opening-line stages
    provenance: Provenance
    rejected: list[beam.PCollection] = field(default_factory=list)
    failed: list[beam.PCollection] = field(default_factory=list)

    def expand(self, subjects: beam.PCollection, label: str, stage: str,
               requests: Callable[..., list[GenerationRequest]],
               judge: Callable[..., list] = steps.judge_list, **extra: Any
               ) -> beam.PCollection:
        """One list stage: a request per subject row, its answer's items judged and routed.
        `extra`: more keyword arguments of `requests`."""
        answers = (subjects | f"{label}/Requests" >> beam.FlatMap(requests, cfg=self.cfg,
                                                                   **extra)
                   | f"{label}/Generate" >> self.generate(stage))
        self.failed.append(answers.failed)
        routed = (answers.ok | f"{label}/Parse" >> beam.FlatMap(judge,
                                                                provenance=self.provenance)
                  | f"{label}/Route" >> RouteVerdicts(stage, "list_items"))
        self.rejected.append(routed.rejected)
        return routed.kept

    def given(self, p: beam.Pipeline, label: str, rows: list[InstructionRecord]
              ) -> beam.PCollection:
        stage = rows[0].stage if rows else label
        return (p | f"{label}/Given" >> beam.Create(rows)
                | f"{label}/Count" >> beam.Map(_count_given, stage=stage))


def _count_given(record: InstructionRecord, stage: str) -> InstructionRecord:
    count(stage, "produced")
    count(stage, "kept")
    return record


def world_openings(p: beam.Pipeline, g: _Graph) -> list[beam.PCollection]:
    """Sector 1: meta-topics -> subtopics -> questions (per topic) -> derived questions; and
    entities -> meta-questions -> specific and extended questions."""
    world = g.cfg.ultrachat.world
    if world.meta_topics:
        topics = g.given(p, "World/Topics", steps.given_rows(world.meta_topics,
                                                             steps.STAGE_TOPICS, steps.WORLD))
    else:
        root = p | "World/Root" >> beam.Create([steps.root_row()])
        topics = g.expand(root, "World/Topics", steps.STAGE_TOPICS, steps.meta_topic_requests)
    subtopics = g.expand(topics, "World/Subtopics", steps.STAGE_SUBTOPICS,
                         steps.subtopic_requests)
    every_topic = (topics, subtopics) | "World/AllTopics" >> beam.Flatten()
    questions = g.expand(every_topic, "World/Questions", steps.STAGE_QUESTIONS,
                         steps.question_requests)
    derived = g.expand(questions, "World/Derived", steps.STAGE_DERIVED, steps.derived_requests)
    out = [questions, derived]
    entities = steps.read_entities(g.cfg)
    if entities:
        given = g.given(p, "Entities", steps.given_rows(entities, steps.STAGE_ENTITIES,
                                                        steps.WORLD))
        meta = g.expand(given, "Entities/Questions", steps.STAGE_ENTITY_QUESTIONS,
                        steps.entity_question_requests)
        follow = g.expand(meta, "Entities/Followups", steps.STAGE_ENTITY_FOLLOWUPS,
                          steps.entity_followup_requests)
        out += [meta, follow]
    return out


def writing_openings(p: beam.Pipeline, g: _Graph) -> list[beam.PCollection]:
    """Sector 2: material types -> instructions -> refined instructions."""
    writing = g.cfg.ultrachat.writing
    types = g.given(p, "Writing/Types", steps.given_rows(
        writing.material_types, steps.STAGE_MATERIAL_TYPES, steps.WRITING))
    instructions = g.expand(types, "Writing/Instructions", steps.STAGE_WRITING,
                            steps.writing_requests)
    if not writing.refine:
        return [instructions]
    return [g.expand(instructions, "Writing/Refine", steps.STAGE_REFINED,
                     steps.refine_requests, steps.judge_refined)]


def material_openings(p: beam.Pipeline, g: _Graph) -> list[beam.PCollection]:
    """Sector 3: passages of the input dataset -> instructions about each passage."""
    assert g.cfg.input is not None
    routing = steps.read_routing(g.cfg)
    passages = (p | "Materials/Input" >> ReadDataset(g.cfg.input)
                | "Materials/CountInput" >> beam.Map(count_input)
                | "Materials/Passages" >> beam.Map(steps.passage_row, cfg=g.cfg,
                                                  routing=routing)
                | "Materials/Bounds" >> RouteVerdicts(steps.STAGE_PASSAGES, "passage_words"))
    g.rejected.append(passages.rejected)
    return [g.expand(passages.kept, "Materials/Instructions", steps.STAGE_MATERIAL,
                     steps.material_requests, routing=routing)]


def _is_material(record: InstructionRecord, partitions: int) -> int:
    return int(record.sector == steps.MATERIALS)


def dedup_openings(openings: beam.PCollection, g: _Graph) -> beam.PCollection:
    """ROUGE-L novelty over the opening lines of sectors 1 and 2 together; sector 3's
    requests per passage (`steps.dedup_passage_requests`: its opening line is request +
    passage). Both count in the `ultrachat_openings` stage."""
    threshold = g.cfg.ultrachat.opening_threshold
    split = openings | "Openings/BySource" >> beam.Partition(_is_material, 2)
    routed = split[0] | "Openings/Novelty" >> NoveltyFilter(
        threshold=threshold, order_by=steps.opening_order, stage=steps.STAGE_OPENINGS)
    per_passage = (split[1] | "Openings/ByPassage" >> beam.Map(
                       lambda r: (steps.passage_key(r), r))
                   | "Openings/PassageGroup" >> beam.GroupByKey()
                   | "Openings/PassageNovelty" >> beam.FlatMap(
                       lambda kv, t: steps.dedup_passage_requests(kv[1], t), threshold)
                   | "Openings/PassageRoute" >> RouteVerdicts(steps.STAGE_OPENINGS,
                                                                NOVELTY_FILTER))
    g.rejected += [routed.rejected, per_passage.rejected]
    return (routed.kept, per_passage.kept) | "Openings/Novel" >> beam.Flatten()


def select_openings(openings: beam.PCollection, g: _Graph) -> beam.PCollection:
    """Dedup the opening lines (ROUGE-L novelty; MinHash optionally) and sample per sector."""
    uc = g.cfg.ultrachat
    if uc.dedup_openings:
        openings = dedup_openings(openings, g)
    if uc.near_dup_openings:
        # On the request alone, so sector 3 (request + passage) is left to the per-passage
        # ROUGE-L pass: the same generic request over two passages is no duplicate.
        split = openings | "Openings/NearDupSource" >> beam.Partition(_is_material, 2)
        openings, materials = split[0], split[1]
        nd = g.cfg.filters.near_dup
        params = MinHashParams(num_perm=nd.num_perm, bands=nd.bands, rows=nd.rows,
                               shingle_size=nd.shingle_size, threshold=nd.threshold,
                               seed=nd.seed, text_fields=("instruction",))
        routed = openings | "Openings/NearDup" >> NearDuplicateFilter(
            params, order_by=steps.opening_order, stage=steps.STAGE_OPENINGS_NEAR_DUP)
        openings = (routed.kept, materials) | "Openings/NearDupAll" >> beam.Flatten()
        g.rejected.append(routed.rejected)
    n = uc.max_dialogues_per_sector
    if n is not None:
        routed = (openings | "Openings/BySector" >> beam.Map(lambda r: (r.sector, r))
                  | "Openings/Group" >> beam.GroupByKey()
                  | "Openings/Sample" >> beam.FlatMap(
                      lambda kv, seed: steps.sample_sector(kv[1], n, seed), seed=g.cfg.seed)
                  | "Openings/Route" >> RouteVerdicts(steps.STAGE_SAMPLE, "per_sector"))
        openings = routed.kept
        g.rejected.append(routed.rejected)
    return openings


@dataclass(frozen=True)
class _Speaker:
    """One side of the dialogue: how its turns are generated and which model writes them."""

    generate: Generate
    model: str


def _kind(item: Any, partitions: int) -> int:
    """Partition: 0 = a request to send, 1 = a dialogue that is over."""
    return 0 if isinstance(item, GenerationRequest) else 1


def _over(item: dialogue.Dialogue, partitions: int) -> int:
    """Partition: 0 = still live, 1 = over."""
    return int(item.over)


def converse(openings: beam.PCollection, g: _Graph, user: Callable[[int], _Speaker],
             assistant: Callable[[int], _Speaker]) -> beam.PCollection:
    """The dialogue loop, unrolled per round; returns every finished Dialogue."""
    cfg = g.cfg
    plan = dialogue.budget(cfg)
    rules = dialogue.turn_rules(cfg)
    live = openings | "Dialogue/Start" >> beam.Map(dialogue.start, cfg=cfg,
                                                   personas=steps.read_personas(cfg))
    done: list[beam.PCollection] = []
    for r in range(1, cfg.ultrachat.max_rounds + 1):
        turns = [("User", dialogue.user_step, user)] if r > 1 else []
        for name, step, speaker in turns + [("Assistant", dialogue.assistant_step, assistant)]:
            label = f"Dialogue/R{r}/{name}"
            side = speaker(r)
            split = (live | f"{label}/Step" >> beam.Map(step, r, cfg, plan)
                     | f"{label}/Split" >> beam.Partition(_kind, 2))
            done.append(split[1])
            answers = split[0] | f"{label}/Generate" >> side.generate
            g.failed.append(answers.failed)
            judged = (answers.ok | f"{label}/Judge" >> beam.Map(dialogue.judge_turn, rules,
                                                               side.model)
                      | f"{label}/Over" >> beam.Partition(_over, 2))
            done.append(judged[1])
            live = judged[0]
    done.append(live)  # none: the last drawn round ends every dialogue
    return done | "Dialogue/Finished" >> beam.Flatten()


def _speaker(handler: GeneratorModelHandler, identity: GeneratorIdentity, stage: str,
             shared: str, round_index: int) -> _Speaker:
    """A fresh Generate step for one round's turns of one side."""
    return _Speaker(Generate(handler, stage=stage, recipe=steps.RECIPE,
                             generator=identity.model, model_identifier=shared,
                             partial=dialogue.partial_history), identity.model)


def build(p: beam.Pipeline, ctx: BuildContext[UltraChatRun]) -> RecipeOutputs:
    """The recipe's graph: opening lines, dialogues, the filter chain, the statistics."""
    assert ctx.handler is not None and ctx.inputs.identity is not None
    cfg, identity = ctx.cfg, ctx.inputs.identity
    shared = model_identifier(cfg.generator, identity, cfg.generator)
    g = _Graph(cfg, stage_generator(ctx.handler, identity, steps.RECIPE, shared),
               Provenance(identity))
    sources: list[beam.PCollection] = []
    if cfg.ultrachat.world.enabled:
        sources += world_openings(p, g)
    if cfg.ultrachat.writing.enabled:
        sources += writing_openings(p, g)
    if cfg.input is not None:
        sources += material_openings(p, g)
    openings = select_openings(sources | "Openings/All" >> beam.Flatten(), g)

    user_cfg = cfg.ultrachat.user_generator or cfg.generator
    user_handler, user_identity = ctx.handler, identity
    if cfg.ultrachat.user_generator is not None:
        user_identity = resolve_identity(user_cfg)
        user_handler = GeneratorModelHandler(user_cfg, user_identity, ctx.cache_dir,
                                             endpoint=ctx.endpoint,
                                             resource_hints=dict(ctx.resource_hints),
                                             retry_failed=cfg.cache.retry_failed)
    user = functools.partial(_speaker, user_handler, user_identity, dialogue.STAGE_USER,
                             model_identifier(user_cfg, user_identity, cfg.generator))
    assistant = functools.partial(_speaker, ctx.handler, identity, dialogue.STAGE_ASSISTANT,
                                  shared)
    finished = converse(openings, g, user, assistant)
    rows = (finished | "Dialogue/Rows" >> beam.Map(dialogue.dialogue_row, identity, cfg)
            | "Dialogue/Route" >> RouteVerdicts(dialogue.STAGE_DIALOGUES, "dialogue_turns"))
    dataset, dropped, filter_failed = apply_filters(rows.kept, cfg.filters,
                                                    judge=ctx.judge())
    report = dataset | "Statistics" >> DialogueStatistics(openings, rows.rejected,
                                                          cfg.ultrachat.topic_embedding)
    return RecipeOutputs(dataset, rejected=[*g.rejected, rows.rejected, *dropped],
                         failed=[*g.failed, *filter_failed],
                         files={"reports": (report, WriteReports)})
