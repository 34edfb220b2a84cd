"""The dataset card (`README.md`) written beside a run's shards.

A Hugging Face dataset card: YAML front matter whose `configs` point `load_dataset(<dir>)` at
`data/*.parquet` (the kept rows; rejected, failed, instructions and nodes are further
configs), then what a person needs before training on the rows: the recipe and its paper, the
models and revisions that wrote the text, the counts per stage and rejection reason, the
columns, how to load the files, and the licence notes. The licence of generated text is set
by the licences of the models that generated it and of the seed data, so the card names them
instead of asserting one. Built from the manifest (and the data shards' generator columns)
and what the recipe says about itself (`RecipeInfo`, handed down by the run: this module knows
no recipe) only, with no run-specific values, so the same run gives the same card.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from apache_beam.io.filesystems import FileSystems

from pipelines.generators.embedded import EMBEDDED_MODELS
from pipelines.outputs.info import CONFIG_ROOT, RecipeInfo
from pipelines.outputs.targets import missed, outcome
from prompts import BUILTIN_SEED_TASKS, builtin_path
from schemas import RECORD_SCHEMA

# Embedded model name -> (licence as written by its authors, Hugging Face licence id).
EMBEDDED_LICENCES: Final = {
    "smollm2-135m": ("Apache-2.0", "apache-2.0"),
    "gemma3-270m": ("Gemma Terms of Use (with its Prohibited Use Policy)", "gemma"),
}
SELF_INSTRUCT_SEEDS: Final = ("Self-Instruct's 175 seed tasks: Apache-2.0 per the "
                              "Self-Instruct repository (check before redistributing)")
BUILTIN_SEEDS: Final = ("instructbeam's built-in seed tasks: written for this project, "
                        "Apache-2.0")
COLUMNS: Final = {
    "id": "stable row id (recipe, stage, round, slot, position, text)",
    "content_hash": "hash of the normalized text; equal content, equal hash",
    "recipe": "the recipe that produced the row", "stage": "the stage that produced it",
    "round": "round (Self-Instruct, Ensemble-Instruct) or tree depth", "instruction": "the task",
    "input": "the task's input ('' when none)", "output": "the response",
    "origin": "seed or machine", "task_id": "id of the instruction the row belongs to",
    "is_classification": "Self-Instruct: classification task (output-first instances)",
    "generator": "model that wrote the text", "generator_revision": "its exact revision",
    "prompt_ref": "prompt template, `<algorithm>/<name>@v<N>`",
    "sampling": "sampling parameters (JSON)", "seed": "per-request generator seed",
    "request_id": "generator request id", "finish_reason": "why generation stopped",
    "rouge_l_max": "ROUGE-L to the most similar pool text",
    "most_similar": "that pool text", "slot": "prompt within its round",
    "position": "place in that response",
    "near_dup_cluster": "MinHash cluster id", "near_dup_survivor": "row kept for the cluster",
    "near_dup_jaccard": "estimated Jaccard to the survivor",
    "order_value": "input dataset's order_by value", "node_id": "Explore-Instruct tree node",
    "node_path": "task names from the root", "instance_type": "Ensemble-Instruct task type",
    "ensemble_path": "consensus step that decided", "ensemble": "candidates and ROUGE-L (JSON)",
    "conversation": "multi-turn input row, [{role, content}] (JSON)",
    "tags_open": "#InsTag: the tagger's tags", "tags_raw": "the tagger's raw answers (JSON)",
    "tags": "normalized tags", "tag_count": "number of normalized tags",
    "cfd_pass": "Cf-D pass that selected the row", "cfd_rank": "place in Cf-D's order",
    "messages": "UltraChat: the dialogue, [{role, content}]",
    "sector": "UltraChat sector of the opening line", "opening_id": "the opening line's row",
    "topic": "topic path, entity or material type of the opening",
    "passage_id": "input row of the passage (sector materials)",
    "rounds": "user + assistant rounds", "dialogue_end": "why the dialogue stopped",
    "turn_generators": "model per turn", "turn_finish_reasons": "finish reason per turn",
}
_SIZES: Final = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                 (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"))


def model_licence(names: tuple[str, ...], backend: str) -> tuple[str, str | None]:
    """(licence text, Hugging Face id or None when unknown) of a model known by `names`."""
    for name, entry in EMBEDDED_MODELS.items():
        if {name, entry.hf_model_id} & set(names) and name in EMBEDDED_LICENCES:
            return EMBEDDED_LICENCES[name]
    return (f"unknown ({backend} model): check the model's licence", None)


def seed_licence(config: dict[str, Any], recipe: RecipeInfo) -> str:
    """Where the seed (or input) data came from and its licence, as far as we can tell;
    `recipe`: the config's recipe."""
    own = recipe.seed_source(config)
    if own is not None:
        return own
    spec = config["input"]["path"] if config.get("input") else config["seed_tasks"]
    builtin = builtin_path(BUILTIN_SEED_TASKS).resolve()
    if spec == "builtin" or Path(spec).resolve() == builtin:
        return BUILTIN_SEEDS
    if Path(spec).name == "seed_tasks.jsonl":
        return f"{spec}: looks like {SELF_INSTRUCT_SEEDS}"
    return f"{spec}: user-supplied, check its licence"


def models(manifest: dict[str, Any], recipe: RecipeInfo) -> list[dict[str, Any]]:
    """Every model the recipe called: the generator, then Ensemble-Instruct's extra models."""
    out = []
    gen = manifest.get("generator")
    if gen:
        out.append({"role": recipe.model_role, "model": gen["model"],
                    "served_as": gen["served_name"], "backend": gen["backend"],
                    "revision": gen["revision"]})
    out += recipe.card_models(manifest["config"])
    for row in out:
        row["licence"], row["licence_id"] = model_licence(
            (row["model"], row["served_as"]), row["backend"])
    return out


def _generator_columns(output_dir: Path | str) -> list[pa.Table]:
    columns = ["generator", "generator_revision"]
    if isinstance(output_dir, str) and "://" in output_dir:  # gs://: through Beam FileSystems
        found = FileSystems.match([f"{output_dir.rstrip('/')}/data/*.parquet"])[0]
        tables = []
        for path in sorted(m.path for m in found.metadata_list):
            with FileSystems.open(path, compression_type="uncompressed") as handle:
                tables.append(pq.read_table(handle, columns=columns))
        return tables
    return [pq.read_table(path, columns=columns)
            for path in sorted((Path(output_dir) / "data").glob("*.parquet"))]


def rows_by_generator(output_dir: Path | str) -> list[tuple[str, str, int]]:
    counts: Counter[tuple[str, str]] = Counter()
    for table in _generator_columns(output_dir):
        for gen, rev in zip(table.column("generator").to_pylist(),
                            table.column("generator_revision").to_pylist(), strict=True):
            counts[(gen or "(none: input data)", rev or "")] += 1
    return sorted((g, r, n) for (g, r), n in counts.items())


def front_matter(manifest: dict[str, Any], recipe: RecipeInfo) -> dict[str, Any]:
    rows = manifest["rows"]
    # One known model licence over project-written (or config-written) seeds: that licence's
    # id; anything mixed or unknown: "other", and the card's Licence section says why.
    licences = {m["licence_id"] for m in models(manifest, recipe)}
    seeds_ok = seed_licence(manifest["config"], recipe) in (BUILTIN_SEEDS, CONFIG_ROOT)
    licence = licences.pop() if len(licences) == 1 and None not in licences and seeds_ok \
        else "other"
    configs = [{"config_name": "default", "data_files": [
        {"split": "train", "path": "data/*.parquet"}], "default": True}]
    configs += [{"config_name": kind, "data_files": [
        {"split": "train", "path": f"{kind}/*.parquet"}]}
        for kind in sorted(rows) if kind != "data" and rows[kind] > 0]
    size = next((label for limit, label in _SIZES if rows.get("data", 0) < limit), "n>10M")
    matter: dict[str, Any] = {"pretty_name": f"instructbeam {manifest['recipe']} dataset",
                              "license": licence}
    if licence == "other":
        matter["license_name"] = "generator-and-seed-dependent"
    matter.update({
        "task_categories": ["text-generation"],
        "tags": ["synthetic", "instruction-tuning", "instructbeam",
                 manifest["recipe"].replace("_", "-")],
        "size_categories": [size],
        "configs": configs,
    })
    return matter


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |"
                    for r in rows]


def _recipe_section(config: dict[str, Any]) -> dict[str, Any]:
    recipe = config["recipe"]
    keys = [k for k in (recipe, "input") if config.get(k)]  # a recipe without a section: input
    return {"recipe": recipe, "seed": config["seed"], **{k: config[k] for k in keys},
            "filters": config["filters"]}


def _targets(manifest: dict[str, Any]) -> list[str]:
    """The sizes the config asked for, near the top: a short dataset must not look complete."""
    found = manifest.get("targets", {})
    if not found:
        return []
    lines = ["## Targets", ""]
    if missed(manifest):
        lines += ["**Not every target was met**: this dataset is smaller than its config asked "
                  "for.", ""]
    return lines + [f"- `{name}`: {outcome(t)}"
                    for name, t in found.items()] + [""]


def render(manifest: dict[str, Any], output_dir: Path | str, recipe: RecipeInfo) -> str:
    """The card's text; `recipe`: what the manifest's recipe says about itself."""
    config, rows = manifest["config"], manifest["rows"]
    out = config["output_dir"]
    matter = yaml.safe_dump(front_matter(manifest, recipe), sort_keys=False).rstrip()
    lines = ["---", matter, "---", "",
             f"# instructbeam {manifest['recipe']} dataset", "",
             f"{rows.get('data', 0)} rows kept by instructbeam's `{manifest['recipe']}` recipe: "
             f"{recipe.paper}. Every row says which model, "
             "prompt and seed produced it; every dropped row is in `rejected/` with its reason "
             "code and the score that decided it. The full config, versions and accounting are "
             "in `manifest.json`.", "", *_targets(manifest), "## Recipe", "",
             f"- Seed data: {seed_licence(config, recipe)}",
             f"- Schema version {manifest['schema_version']}, {config['num_shards']} shard(s).",
             "", "<details><summary>Recipe settings (from manifest.json)</summary>", "",
             "```yaml", yaml.safe_dump(_recipe_section(config), sort_keys=False).rstrip(),
             "```", "", "</details>", "", "## Models", ""]
    found = models(manifest, recipe)
    lines += _table(["role", "model", "served as", "backend", "revision", "licence"],
                    [[m["role"], m["model"], m["served_as"], m["backend"], m["revision"],
                      m["licence"]] for m in found]) if found else ["No generator was called."]
    lines += ["", "Kept rows by the model that wrote them:", ""]
    lines += _table(["generator", "revision", "rows"], rows_by_generator(output_dir))
    lines += ["", "## Counts", ""]
    cells = ("in", "ok", "failed", "produced", "kept")
    lines += _table(["stage", *cells, "rejected"],
                    [[stage, *(row.get(c, "-") for c in cells),
                      sum(row["rejected"].values()) if "rejected" in row else "-"]
                     for stage, row in manifest["stages"].items()])
    reasons = [[stage, reason, n] for stage, row in manifest["stages"].items()
               for reason, n in row.get("rejected", {}).items()]
    if reasons:
        lines += ["", "Rejections by reason:", ""]
        lines += _table(["stage", "reason", "rows"], reasons)
    lines += ["", "Rows written:", ""]
    lines += _table(["folder", "rows"], [[f"{kind}/", n] for kind, n in rows.items()])
    broken = [c for c in manifest["accounting"] if not c["holds"]]
    lines += ["", "Accounting: " + ("every input left its stage as ok or failed, every "
                                    "produced record as kept or rejected." if not broken else
                                    f"BROKEN at {', '.join(c['stage'] for c in broken)}.")]
    lines += ["", "## Columns", ""]
    lines += _table(["column", "type", "meaning"],
                    [[f"`{f.name}`", str(f.type), COLUMNS.get(f.name, "")]
                     for f in RECORD_SCHEMA])
    lines += ["", "## Load it", "", "```python",
              "from datasets import load_dataset",
              f'ds = load_dataset("parquet", data_files="{out}/data/*.parquet", split="train")',
              f'ds = load_dataset("{out}", split="train")  # the same, through this card',
              f'import pandas as pd; df = pd.read_parquet("{out}/data")',
              f"import duckdb; df = duckdb.sql(\"SELECT * FROM '{out}/data/*.parquet'\").df()",
              f'import polars as pl; df = pl.read_parquet("{out}/data/*.parquet")',
              "```", "", "As Alpaca JSON, ShareGPT JSON or OpenAI chat JSONL:", "", "```bash",
              f"instructbeam export {out} --format alpaca  # or sharegpt, openai", "```", "",
              "## Licence", "",
              "The terms under which generated text may be used are set by the licence of the "
              "model that generated it and by the licence of the seed data; this card does not "
              "grant a licence of its own. Here:", ""]
    lines += [f"- {m['role']} `{m['served_as']}`: {m['licence']}" for m in found]
    lines += [f"- seed data: {seed_licence(config, recipe)}",
              "- instructbeam's code and prompt templates: Apache-2.0", ""]
    return "\n".join(lines)


def write_card(output_dir: Path | str, manifest: dict[str, Any], recipe: RecipeInfo) -> str:
    """Write README.md into the (staging) output directory (local or gs://); its path."""
    text = render(manifest, output_dir, recipe)
    if isinstance(output_dir, str) and "://" in output_dir:
        remote = f"{output_dir.rstrip('/')}/README.md"
        with FileSystems.create(remote, mime_type="text/markdown",
                                compression_type="uncompressed") as handle:
            handle.write(text.encode("utf-8"))
        return remote
    path = Path(output_dir) / "README.md"
    tmp = path.with_name("README.md.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.rename(path)
    return str(path)
