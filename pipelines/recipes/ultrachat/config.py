"""UltraChat's config section (`ultrachat:`): the paper's numbers as named defaults.

Source: Ding et al. 2023, "Enhancing Chat Language Models by Scaling High-quality
Instructional Conversations" (arXiv:2305.14233), §3. The README's fidelity table says, for
each, what the paper did, the default here and the option that changes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

from filters.tag_embeddings import EMBEDDERS
from filters.ultrachat import (
    DEFAULT_DRIFT_OPENERS,
    DEFAULT_DRIFT_PHRASES,
    DEFAULT_REFUSALS,
    DEFAULT_SPEAKER_LABELS,
)
from pipelines.settings import GeneratorConfig, RunSettings, SamplingConfig, check

# The paper's counts (sector 1: questions about the world; 2: creation and writing;
# 3: assistance on existing materials; dialogues: rounds per dialogue).
PAPER_META_TOPICS: Final = 30
PAPER_SUBTOPICS: Final = 30  # 30 to 50 per meta-topic (about 1,100 in all)
PAPER_QUESTIONS: Final = 10  # per topic or subtopic
PAPER_DERIVED: Final = 10  # more questions derived from each question
PAPER_ENTITY_QUESTIONS: Final = 5  # meta-questions per entity
PAPER_SPECIFIC: Final = 10  # more specific questions per meta-question
PAPER_EXTENDED: Final = 20  # extended questions per meta-question
PAPER_MATERIAL_TYPES: Final = 20
PAPER_PASSAGE_INSTRUCTIONS: Final = 5  # per text passage (C4 in the paper)
PAPER_MIN_ROUNDS: Final = 3
PAPER_MAX_ROUNDS: Final = 7
MAX_ROUNDS_LIMIT: Final = 12  # rounds are unrolled into the job graph (2 stages each)

# Twenty kinds of text material, in our words (the paper lists its 20 types in a table).
DEFAULT_MATERIAL_TYPES: Final = (
    "email", "essay", "short story", "poem", "play script", "speech", "news article",
    "product description", "cover letter", "blog post", "movie review", "song lyrics",
    "social media post", "advertisement", "recipe", "travel guide", "debate argument",
    "personal letter", "report summary", "lesson plan",
)


def _opening_sampling() -> SamplingConfig:
    return SamplingConfig(max_tokens=512, temperature=0.7, top_p=1.0)


def _user_sampling() -> SamplingConfig:
    # A user message is short; a line that starts the assistant's part ends it.
    return SamplingConfig(max_tokens=128, temperature=0.7, top_p=1.0,
                          stop=("\nAssistant:", "\nAI:", "\nAI assistant:"))


def _assistant_sampling() -> SamplingConfig:
    return SamplingConfig(max_tokens=384, temperature=0.7, top_p=1.0)


@dataclass(frozen=True)
class WorldConfig:
    """Sector 1, questions about the world: topics, and optionally entities."""

    enabled: bool = True
    meta_topics: tuple[str, ...] = ()  # given; empty: the generator proposes num_meta_topics
    num_meta_topics: int = PAPER_META_TOPICS
    subtopics_per_topic: int = PAPER_SUBTOPICS
    questions_per_topic: int = PAPER_QUESTIONS
    derived_per_question: int = PAPER_DERIVED
    # The entity route. The paper takes the 10,000 most frequent Wikidata entities; Wikidata
    # is not downloadable here, so entities are a list in the config or a file (one a line).
    entities: tuple[str, ...] = ()
    entities_file: str | None = None
    questions_per_entity: int = PAPER_ENTITY_QUESTIONS
    specific_per_question: int = PAPER_SPECIFIC
    extended_per_question: int = PAPER_EXTENDED

    def __post_init__(self) -> None:
        for name in ("num_meta_topics", "subtopics_per_topic", "questions_per_topic",
                     "derived_per_question", "questions_per_entity", "specific_per_question",
                     "extended_per_question"):
            check(0 <= getattr(self, name) <= 200, name, "must be in [0, 200]")


@dataclass(frozen=True)
class WritingConfig:
    """Sector 2, creation and writing: instructions per material type, then refined."""

    enabled: bool = True
    material_types: tuple[str, ...] = DEFAULT_MATERIAL_TYPES
    instructions_per_type: int = 10
    refine: bool = True  # the paper has the generator refine each instruction

    def __post_init__(self) -> None:
        check(0 <= self.instructions_per_type <= 200, "instructions_per_type",
              "must be in [0, 200]")


@dataclass(frozen=True)
class MaterialsConfig:
    """Sector 3, assistance on existing materials: passages from `input:` (on when given)."""

    # Which column of the input holds the passage: the input's `instruction_field`, or (for
    # a chat corpus read with `messages_field`) its first reply (`output`).
    passage_field: Literal["instruction", "output"] = "instruction"
    instructions_per_passage: int = PAPER_PASSAGE_INSTRUCTIONS
    min_passage_words: int = 30
    max_passage_words: int = 400  # the whole passage goes into every prompt of its dialogue
    # The paper's content-type routing (pipelines/recipes/ultrachat/routing.py): a YAML file
    # of content types, each with keywords and the kinds of request it suits. None: one
    # generic request list for any text (prompt material_instructions v1).
    content_types_file: str | None = None
    # What the keywords are matched to: the input's `input_field` column (the paper: the
    # source's URL and title; point input_field at it) and/or the passage itself.
    match_fields: tuple[Literal["input", "passage"], ...] = ("input",)

    def __post_init__(self) -> None:
        check(bool(self.match_fields) and set(self.match_fields) <= {"input", "passage"},
              "match_fields", "must be a non-empty list of 'input' and 'passage'")
        check(0 <= self.instructions_per_passage <= 50, "instructions_per_passage",
              "must be in [0, 50]")
        check(1 <= self.min_passage_words <= self.max_passage_words, "min_passage_words",
              "must be >= 1 and <= max_passage_words")


@dataclass(frozen=True)
class UltraChatConfig:
    """UltraChat: opening lines from three sectors, then dialogues with a simulated user."""

    world: WorldConfig = field(default_factory=WorldConfig)
    writing: WritingConfig = field(default_factory=WritingConfig)
    materials: MaterialsConfig = field(default_factory=MaterialsConfig)
    opening_sampling: SamplingConfig = field(default_factory=_opening_sampling)
    # Opening lines: exact ROUGE-L novelty (Self-Instruct's rule) over all sectors, and
    # optionally MinHash near duplicates (the `filters.near_dup` settings, on the opening).
    dedup_openings: bool = True
    opening_threshold: float = 0.7
    near_dup_openings: bool = False
    # Not in the paper: at most this many dialogues per sector (a seeded random subset of
    # the opening lines); None: every opening line starts a dialogue.
    max_dialogues_per_sector: int | None = None
    min_rounds: int = PAPER_MIN_ROUNDS
    max_rounds: int = PAPER_MAX_ROUNDS
    # The user simulator: its own generator (None: the main `generator`, with the user prompt
    # and user_sampling) and sampling; the assistant is the main generator.
    user_generator: GeneratorConfig | None = None
    user_sampling: SamplingConfig = field(default_factory=_user_sampling)
    assistant_sampling: SamplingConfig = field(default_factory=_assistant_sampling)
    assistant_system_prompt: str = ""  # "": no system message
    # The user's personality (the paper adds one to the history): one drawn per dialogue,
    # seeded, from this list and the file's lines (# comments). None given: one fixed role
    # line for every dialogue (prompt user_turn v1).
    personas: tuple[str, ...] = ()
    personas_file: str | None = None
    # The model context, in tokens: None reads --max-model-len from the generators'
    # server_args (no limit known: no check). A round starts only if it fits.
    context_tokens: int | None = None
    context_margin_tokens: int = 192  # the user prompt's role instruction and chat template
    min_kept_rounds: int = 1  # a dialogue the context ended keeps at least this many rounds
    # Topic diversity in reports/ultrachat.json: the embedder of the kept dialogues' opening
    # lines (filters/tag_embeddings.py; the MiniLM #InsTag uses); None: not measured.
    topic_embedding: str | None = "all-minilm-l6-v2"
    # Turn rules (filters/ultrachat.py).
    repeat_threshold: float = 0.9
    drift_openers: tuple[str, ...] = DEFAULT_DRIFT_OPENERS
    refusal_patterns: tuple[str, ...] = DEFAULT_REFUSALS
    drift_phrases: tuple[str, ...] = DEFAULT_DRIFT_PHRASES  # regexes, anywhere in a user turn
    loop_repeats: int = 3  # a sentence repeated this often in one turn is a loop; 0: off
    # A turn line opening "<label>:" is speaker_label; []: off (data that quotes chats).
    speaker_labels: tuple[str, ...] = DEFAULT_SPEAKER_LABELS

    def __post_init__(self) -> None:
        check(1 <= self.min_rounds <= self.max_rounds, "min_rounds",
              "must be >= 1 and <= max_rounds")
        check(self.max_rounds <= MAX_ROUNDS_LIMIT, "max_rounds",
              f"must be <= {MAX_ROUNDS_LIMIT} (rounds are unrolled into the job graph)")
        check(0.0 < self.opening_threshold <= 1.0, "opening_threshold", "must be in (0, 1]")
        check(0.0 < self.repeat_threshold <= 1.0, "repeat_threshold", "must be in (0, 1]")
        check(self.topic_embedding is None or self.topic_embedding in EMBEDDERS,
              "topic_embedding", f"must be one of {sorted(EMBEDDERS)} (or null: off)")
        check(self.loop_repeats == 0 or self.loop_repeats >= 2, "loop_repeats",
              "must be 0 (off) or >= 2")
        check(self.max_dialogues_per_sector is None or self.max_dialogues_per_sector >= 1,
              "max_dialogues_per_sector", "must be >= 1 (or null: all)")
        check(self.context_tokens is None or self.context_tokens >= 64, "context_tokens",
              "must be >= 64 (or null: from --max-model-len)")
        check(self.context_margin_tokens >= 0, "context_margin_tokens", "must be >= 0")
        check(1 <= self.min_kept_rounds <= self.max_rounds, "min_kept_rounds",
              "must be in [1, max_rounds]")


class UltraChatRun(RunSettings, Protocol):
    """What this recipe reads of a run's config: the shared keys and its own section."""

    @property
    def ultrachat(self) -> UltraChatConfig: ...
