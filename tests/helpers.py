"""Small helpers for pipeline tests: configs pointed at a scripted server, Parquet readers."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow.parquet as pq

from pipelines.config import RunConfig
from pipelines.recipes.self_instruct.config import SelfInstructConfig
from pipelines.settings import CacheConfig, GeneratorConfig


def scripted_config(base_url: str, out: Path, cache: Path | None, **si: object) -> RunConfig:
    params = {"num_instructions": 30, "prompts_per_round": 4, "max_prompts": 12} | si
    return RunConfig(
        recipe="self_instruct",
        output_dir=str(out),
        num_shards=2,
        generator=GeneratorConfig(backend="openai", base_url=base_url, model="scripted",
                                  max_concurrency=4, timeout_s=2.0, max_attempts=3,
                                  backoff_s=0.01, max_backoff_s=0.05),
        self_instruct=SelfInstructConfig(**params),  # type: ignore[arg-type]
        cache=CacheConfig(enabled=cache is not None, dir=str(cache) if cache else None),
    )


def read_rows(out: Path, kind: str) -> list[dict]:
    rows: list[dict] = []
    for path in sorted((out / kind).glob("*.parquet")):
        rows.extend(pq.read_table(path).to_pylist())
    return rows


def shard_digests(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*.parquet"))}
