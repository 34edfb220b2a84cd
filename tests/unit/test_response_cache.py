"""Two runs sharing one cache folder: the first answer stored for a key wins (issue 22, 2).

Neither run silently overwrites the other's answer, and each uses the answer the cache holds,
so both runs' outputs agree with what every later run replays.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import memory_filesystem
import pytest

from pipelines.generators import handler
from pipelines.generators.backends import GeneratorIdentity
from pipelines.generators.cache import ResponseCache, cache_key
from pipelines.generators.generation import Completion, GenerationRequest
from pipelines.generators.handler import GeneratorModelHandler, generate_one
from pipelines.settings import GeneratorConfig

REQUEST = GenerationRequest(
    request_id="r1", stage="instruction_gen", round=0, subject_id="s", prompt="Say hi.",
    prompt_ref="t@1", sampling={"max_tokens": 8}, seed=3)
IDENTITY = GeneratorIdentity("m", "r", "m")
KEY = cache_key(IDENTITY.model, IDENTITY.revision, REQUEST)


def _answer(text: str) -> Completion:
    return Completion(text, "stop", 5, len(text))


def test_a_second_answer_does_not_overwrite_the_first(tmp_path: Path):
    cache = ResponseCache(str(tmp_path))
    assert cache.put(KEY, _answer("first")) == _answer("first")
    assert cache.put(KEY, _answer("second")) == _answer("first")
    assert cache.get(KEY) == _answer("first")
    assert os.listdir(tmp_path / KEY[:2]) == [f"{KEY}.json"]  # no temporary file left


def test_a_corrupt_entry_is_replaced(tmp_path: Path):
    cache = ResponseCache(str(tmp_path))
    (tmp_path / KEY[:2]).mkdir()
    (tmp_path / KEY[:2] / f"{KEY}.json").write_text('{"text": "half')
    assert cache.get(KEY) is None
    assert cache.put(KEY, _answer("whole")) == _answer("whole")
    assert cache.get(KEY) == _answer("whole")


def test_racing_writers_all_get_the_answer_the_cache_keeps(tmp_path: Path):
    """Threads stand in for two runs (or workers) answering the same requests at once."""
    cache = ResponseCache(str(tmp_path))
    writers, keys = 4, [f"{k:02x}" * 32 for k in range(40)]
    got: dict[tuple[str, int], Completion] = {}
    barrier = threading.Barrier(writers)

    def write(writer: int) -> None:
        for key in keys:
            barrier.wait()
            got[key, writer] = cache.put(key, _answer(f"writer {writer}"))

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for key in keys:
        kept = cache.get(key)
        assert kept is not None
        assert [got[key, w] for w in range(writers)] == [kept] * writers, key
        assert os.listdir(tmp_path / key[:2]) == [f"{key}.json"]


def test_a_remote_cache_keeps_the_first_answer():
    """gs:// (here the in-memory stand-in): check-then-write, the first stored answer wins."""
    cache = ResponseCache(f"{memory_filesystem.SCHEME}://bucket/cache")
    try:
        assert cache.put(KEY, _answer("first")) == _answer("first")
        assert cache.put(KEY, _answer("second")) == _answer("first")
        assert cache.get(KEY) == _answer("first")
    finally:
        memory_filesystem.FILES.clear()


@pytest.mark.parametrize("warmup", [False, True])
def test_a_run_uses_the_answer_the_cache_kept(tmp_path: Path, warmup: bool, monkeypatch):
    other_run = ResponseCache(str(tmp_path))

    class OtherRunAnswersFirst:
        """Our answer arrives after another run stored its own for the same request."""

        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def generate(self, request: GenerationRequest) -> tuple[Completion, int, int]:
            other_run.put(KEY, _answer("the other run's"))
            return _answer("ours"), 1, 0

    monkeypatch.setattr(handler, "OpenAICompatClient", OtherRunAnswersFirst)
    cfg = GeneratorConfig(backend="openai", base_url="http://unused/v1", revision="r",
                          prefix_warmup=warmup)
    session = GeneratorModelHandler(cfg, IDENTITY, str(tmp_path)).load_model()
    outcome = generate_one(REQUEST, session)
    assert not outcome.cached and outcome.completion == _answer("the other run's")
    replay = generate_one(REQUEST, session)
    assert replay.cached and replay.completion == outcome.completion
