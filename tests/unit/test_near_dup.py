"""MinHash near-dup core: bit-identical to datasketch, exact banding, deterministic clusters."""

from __future__ import annotations

import json
import random
import re
import sys

import numpy as np
import pytest
from datasketch import MinHash, MinHashLSH

import filters.near_dup as nd
from bench.near_dup_reference import reference_near_duplicates
from filters.near_dup import (
    MinHasher,
    MinHashParams,
    NearDupMatch,
    UnionFind,
    band_keys,
    bucket_edges,
    candidate_pairs,
    clusters,
    estimated_jaccard,
    find_near_duplicates,
    judge,
    record_text,
    shingles,
    signature_to_bytes,
    signatures,
    survivors,
    verify_pairs,
)
from prompts import BUILTIN_SEED_TASKS, builtin_path
from schemas import InstructionRecord, Reason
from schemas.records import normalize_text

WORDS = ("write a short poem story about the sea sky city dog cat in long summary of this "
         "text email explain why how list three reasons").split()
ODD = ["", "   ", "one", "two words", "İstanbul K", "写一首诗 关于 大海 的 诗", "🙂 🙂 🙂 🙂",
       "Tab\tand\nnewline\u00a0nbsp\u2003emspace", "ǅ Ǆ ǆ ß ẞ", "a\u241fb",
       "ascii\x1cfile\x1dgroup\x1erecord\x1funit sep", "v\x0btab\x0cfeed\rcr LF\n end"]


def _builtin_texts() -> list[str]:
    texts = []
    with open(builtin_path(BUILTIN_SEED_TASKS), encoding="utf-8") as f:
        for line in f:
            task = json.loads(line)
            texts.append(task["instruction"])
            for inst in task["instances"]:
                texts += [inst["input"], inst["output"]]
    return texts


def _random_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 60))) for _ in range(n)]


def _datasketch(text: str, params: MinHashParams) -> MinHash:
    m = MinHash(num_perm=params.num_perm, seed=params.seed, scheme=params.scheme)
    for gram in shingles(text, params.shingle_size):
        m.update(gram.encode("utf-8"))
    return m


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return _builtin_texts() + _random_texts(300) + ODD


# ----------------------------------------------------------------------------- params


def test_default_params_are_valid_and_documented_choices():
    p = MinHashParams()
    assert (p.num_perm, p.bands, p.rows, p.shingle_size, p.threshold, p.seed) == (
        128, 16, 8, 3, 0.8, 1)
    assert p.text_fields == ("instruction", "input", "output") and p.scheme == "affine32"


@pytest.mark.parametrize("kwargs", [
    {"bands": 16, "rows": 4},
    {"num_perm": 0, "bands": 0, "rows": 0},
    {"shingle_size": 0},
    {"threshold": 0.0},
    {"threshold": 1.5},
    {"seed": -1},
    {"text_fields": ()},
    {"text_fields": ("instruction", "nonexistent")},
    {"text_fields": ("round",)},
    {"scheme": "md5"},
])
def test_params_validation(kwargs):
    with pytest.raises(ValueError):
        MinHashParams(**kwargs)


def test_params_accept_other_layouts_and_lists():
    p = MinHashParams(num_perm=64, bands=32, rows=2, text_fields=["instruction"])  # type: ignore
    assert p.text_fields == ("instruction",)
    hash(p)  # usable as a cache key


# ----------------------------------------------------------------------------- shingles


def test_shingles_normalize_and_use_word_ngrams():
    assert shingles("Hello  World\tfoo BAR", 3) == ["hello world foo", "world foo bar"]
    assert shingles("a b a b a b", 2) == ["a b", "b a"]  # distinct, first-seen order
    assert shingles("Just Two", 3) == ["just two"]  # short text: one shingle, itself
    assert shingles("one two three", 3) == ["one two three"]
    assert shingles(" \n\t ", 3) == [] and shingles("", 1) == []


def test_lower_split_equals_normalize_text_split_for_every_code_point():
    # _grams uses text.lower().split(); normalization is defined by normalize_text.
    ws = re.compile(r"\s")
    for cp in range(sys.maxunicode + 1):
        c = chr(cp)
        assert c.isspace() == bool(ws.fullmatch(c)), hex(cp)
    for text in ODD + _builtin_texts()[:20]:
        assert text.lower().split() == normalize_text(text).split()


def test_ascii_bytes_shortcut_gives_the_same_shingles():
    for cp in range(128):
        text = f"Word{chr(cp)}Next and {chr(cp)} more{chr(cp)}{chr(cp)}WORDS here"
        for size in (1, 3):
            assert nd._gram_bytes(text, size) == [g.encode() for g in nd._grams(text, size)]
    for text in ODD:
        assert nd._gram_bytes(text, 3) == [g.encode() for g in nd._grams(text, 3)]


def test_record_text_keeps_fields_apart():
    a = InstructionRecord(id="a", content_hash="", recipe="r", stage="s", round=0,
                          instruction="x y", input="z", output="")
    b = InstructionRecord(id="b", content_hash="", recipe="r", stage="s", round=0,
                          instruction="x", input="y z", output="")
    fields = ("instruction", "input", "output")
    assert record_text(a, fields) != record_text(b, fields)
    assert record_text(a, ("instruction",)) == "x y"


# ----------------------------------------------------------------------------- signatures


@pytest.mark.parametrize("scheme", ["affine32", "legacy", "affine64"])
def test_signatures_equal_datasketch_update_per_shingle(texts, scheme):
    params = MinHashParams(scheme=scheme)
    sigs = signatures(texts, params)
    assert sigs.shape == (len(texts), 128)
    for text, sig in zip(texts, sigs, strict=True):
        expected = _datasketch(text, params).hashvalues
        assert np.array_equal(sig, expected), text


@pytest.mark.parametrize("size,seed,num_perm,bands,rows", [
    (1, 7, 64, 16, 4), (2, 123, 256, 32, 8), (5, 1, 32, 4, 8)])
def test_signatures_equal_datasketch_for_other_settings(texts, size, seed, num_perm, bands,
                                                        rows):
    params = MinHashParams(num_perm=num_perm, bands=bands, rows=rows, shingle_size=size,
                           seed=seed)
    sigs = MinHasher(params).signatures(texts)
    for text, sig in zip(texts, sigs, strict=True):
        assert np.array_equal(sig, _datasketch(text, params).hashvalues), text


def test_signatures_do_not_depend_on_batching_or_chunks(texts, monkeypatch):
    params = MinHashParams()
    whole = MinHasher(params).signatures(texts)
    monkeypatch.setattr(nd, "_CHUNK_SHINGLES", 7)  # chunks cut between documents
    hasher = MinHasher(params)
    pieces = [hasher.signatures(texts[i:i + 13]) for i in range(0, len(texts), 13)]
    assert np.array_equal(np.concatenate(pieces), whole)
    one_by_one = np.stack([MinHasher(params).signatures([t])[0] for t in texts])
    assert np.array_equal(one_by_one, whole)


def test_empty_text_has_the_empty_signature_and_no_shingles():
    hasher = MinHasher(MinHashParams())
    sigs, sizes = hasher.signatures_and_sizes(["", "a b c d"])
    assert list(sizes) == [0, 2]
    assert np.array_equal(sigs[0], MinHash(num_perm=128, seed=1).hashvalues)
    assert np.array_equal(sigs[0], hasher.empty)


# ----------------------------------------------------------------------------- LSH


def test_band_keys_one_per_band_with_index():
    params = MinHashParams()
    sig = signatures(["write a poem about the sea"], params)[0]
    keys = band_keys(sig, params)
    assert len(keys) == params.bands and len(set(keys)) == params.bands
    for band, key in enumerate(keys):
        assert key[:2] == band.to_bytes(2, "big")
        assert key[2:] == signature_to_bytes(sig[band * 8:(band + 1) * 8], params)
    # A band equal in value but at another position is another bucket.
    same = sig.copy()
    same[8:16] = sig[0:8]
    assert band_keys(same, params)[1] != keys[0]


def test_shared_band_keys_are_exactly_datasketch_lsh_candidates(texts):
    params = MinHashParams()
    corpus = _random_texts(150, seed=3)
    corpus += [t + " extra" for t in corpus[:60]] + corpus[:10]
    sigs = signatures(corpus, params)
    lsh = MinHashLSH(threshold=params.threshold, num_perm=128, params=(16, 8))
    sketches = [_datasketch(t, params) for t in corpus]
    for i, m in enumerate(sketches):
        lsh.insert(i, m)
    keys = [set(band_keys(s, params)) for s in sigs]
    expected = {(min(i, j), max(i, j)) for i, m in enumerate(sketches)
                for j in lsh.query(m) if i != j}
    brute = {(i, j) for i in range(len(corpus)) for j in range(i + 1, len(corpus))
             if keys[i] & keys[j]}
    assert brute == expected
    assert {tuple(p) for p in candidate_pairs(sigs, params).tolist()} == expected


def test_candidate_pairs_exact_when_fingerprints_collide(monkeypatch):
    params = MinHashParams()
    corpus = _random_texts(120, seed=5)
    corpus += [t + " more words" for t in corpus[:40]]
    sigs = signatures(corpus, params)
    honest = candidate_pairs(sigs, params)
    monkeypatch.setattr(nd, "_FOLD", np.zeros(512, dtype=np.uint64))  # every row collides
    assert np.array_equal(candidate_pairs(sigs, params), honest)


def test_estimated_jaccard_is_datasketch_jaccard(texts):
    params = MinHashParams()
    sigs = signatures(texts[:40], params)
    sketches = [_datasketch(t, params) for t in texts[:40]]
    for i in range(0, 40, 3):
        for j in range(0, 40, 7):
            assert estimated_jaccard(sigs[i], sigs[j]) == sketches[i].jaccard(sketches[j])


def test_verify_pairs_keeps_pairs_at_or_above_threshold():
    sigs = np.array([[1, 2, 3, 4], [1, 2, 3, 9], [1, 9, 9, 9]], dtype=np.uint32)
    pairs = np.array([[0, 1], [0, 2], [1, 2]])
    kept, scores = verify_pairs(sigs, pairs, 0.75)
    assert kept.tolist() == [[0, 1]] and scores.tolist() == [0.75]


# ----------------------------------------------------------------------------- components


def test_clusters_are_connected_components_labelled_by_smallest_member():
    pairs = [("d", "c"), ("c", "b"), ("x", "y"), ("e", "e")]
    labels = clusters(pairs, nodes=["a", "z"])
    assert labels == {"a": "a", "z": "z", "b": "b", "c": "b", "d": "b", "e": "e",
                      "x": "x", "y": "x"}


def test_clusters_do_not_depend_on_pair_order_or_merge_order():
    rng = random.Random(0)
    pairs = [(f"n{rng.randrange(200):03d}", f"n{rng.randrange(200):03d}") for _ in range(150)]
    expected = clusters(pairs)
    for seed in range(5):
        shuffled = pairs[:]
        random.Random(seed).shuffle(shuffled)
        assert clusters(shuffled) == expected
        parts = [UnionFind() for _ in range(3)]
        for k, (a, b) in enumerate(shuffled):
            parts[k % 3].union(a, b)
        parts[2].merge(parts[0])
        parts[2].merge(parts[1])
        assert parts[2].labels() == expected


def test_survivor_is_smallest_order_key_then_id():
    labels = {"b": "a", "a": "a", "c": "a", "x": "x", "y": "x"}
    assert survivors(labels) == {"a": "a", "x": "x"}
    order = {"a": 2, "b": 1, "c": 1, "x": 0, "y": 0}
    assert survivors(labels, order) == {"a": "b", "x": "x"}


def test_bucket_edges_exact_up_to_the_cap_then_bounded():
    params = MinHashParams()
    rng = random.Random(9)
    base = [rng.choice(WORDS) for _ in range(60)]
    variants = [" ".join(base[:k] + ["changed"] + base[k + 1:]) for k in range(0, 40, 4)]
    variants += [variants[0]] * 3  # identical signatures: linked without comparison
    sigs = signatures(variants, params)
    members = [(f"id{i:02d}", 0, signature_to_bytes(s, params)) for i, s in enumerate(sigs)]
    full_pairs = [(members[i][0], members[j][0]) for i in range(len(sigs))
                  for j in range(i + 1, len(sigs))
                  if estimated_jaccard(sigs[i], sigs[j]) >= params.threshold]
    assert 0 < len(full_pairs) < 13 * 12 // 2, "some, not all, pairs pass the threshold"
    edges, compared, truncated = bucket_edges(reversed(members), params, max_distinct=100)
    assert not truncated and compared == 10 * 9 // 2
    assert clusters(edges, [m[0] for m in members]) == clusters(full_pairs,
                                                                [m[0] for m in members])
    assert len(edges) < len(members)  # a forest, not every pair
    _, compared, truncated = bucket_edges(members, params, max_distinct=3)
    assert truncated and compared == 9 + 8 + 7


# ----------------------------------------------------------------------------- whole path


def _planted(n: int, seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    texts = [t for t in _builtin_texts() if len(t.split()) > 3]
    texts += _random_texts(n, seed)
    for t in list(texts[: n // 2]):
        words = t.split()
        if words:
            words[rng.randrange(len(words))] = rng.choice(["zebra", "quartz", "violet"])
        texts.append(" ".join(words))
        if rng.random() < 0.2:
            texts.append(t.upper())  # same after normalization
    ids = [f"r{rng.randrange(10**6):06d}-{i}" for i in range(len(texts))]
    return ids, texts


@pytest.mark.parametrize("seed", [0, 1])
def test_find_near_duplicates_equals_datasketch_reference(seed):
    ids, texts = _planted(200, seed)
    params = MinHashParams()
    ours = find_near_duplicates(ids, texts, params)
    assert ours == reference_near_duplicates(ids, texts, params)
    assert len(ours) > 40, "planted duplicates must be found"
    order = [len(t) for t in texts]
    assert (find_near_duplicates(ids, texts, params, order=order)
            == reference_near_duplicates(ids, texts, params, order=order))


def test_find_near_duplicates_edge_cases():
    params = MinHashParams()
    assert find_near_duplicates([], [], params) == {}
    assert find_near_duplicates(["a", "b", "c"], ["", " ", "x y z"], params) == {}
    same = find_near_duplicates(["b", "a", "c"], ["Hi there", "hi  THERE", ""], params)
    assert same == {"a": NearDupMatch("a", "a", 1.0), "b": NearDupMatch("a", "a", 1.0)}


def test_find_near_duplicates_rejects_bad_input():
    params = MinHashParams()
    with pytest.raises(ValueError):
        find_near_duplicates(["a", "a"], ["x", "y"], params)
    with pytest.raises(ValueError):
        find_near_duplicates(["a"], ["x", "y"], params)


def test_judge_sets_fields_and_verdicts():
    rec = InstructionRecord(id="b", content_hash="", recipe="r", stage="s", round=0,
                            instruction="x")
    assert judge(rec, None) == (rec, judge(rec, None)[1]) and judge(rec, None)[1].keep
    kept, verdict = judge(rec, NearDupMatch("a", "b", 1.0))
    assert verdict.keep and (kept.near_dup_cluster, kept.near_dup_survivor,
                             kept.near_dup_jaccard) == ("a", "b", 1.0)
    dropped, verdict = judge(rec, NearDupMatch("a", "a", 0.84375))
    assert not verdict.keep and verdict.reason is Reason.NEAR_DUPLICATE
    assert verdict.score == 0.84375 and dropped.near_dup_survivor == "a"
