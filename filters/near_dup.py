"""MinHash LSH near-duplicate detection, bit-identical to `datasketch`, but vectorized.

What a "near duplicate" is here: two records whose sets of word shingles have an *estimated*
Jaccard similarity (MinHash, `num_perm` permutations) of at least `threshold`, and which share
at least one LSH band (`bands` x `rows`). Near-duplicate pairs are linked transitively into
clusters (connected components); each cluster keeps one survivor (the smallest order key, by
default the smallest record id) and drops the rest.

Faithfulness: signatures equal, value for value, a `datasketch.MinHash(num_perm, seed, scheme)`
fed the same shingles one by one with `update(shingle.encode("utf-8"))` (default SHA-1 32-bit
hash, datasketch 2.0's default "affine32" permutations; "legacy" and "affine64" work too). The
permutation parameters are read from a datasketch `MinHash` rather than re-derived, so a change
in datasketch cannot silently split the two. Band collisions are the same relation that
`MinHashLSH(params=(bands, rows))` uses, and pairs are accepted with the same float as
`MinHash.jaccard`. `bench/near_dup_reference.py` is that straightforward datasketch use; the
tests and the benchmark check our clusters and survivors equal its.

Why it is fast: the Python work per shingle is one join and one SHA-1 (datasketch's `update`
adds ~10 numpy calls per shingle); permutations are applied to a whole batch of shingles in
one numpy expression and reduced per document with `minimum.reduceat`; identical signatures
are collapsed before banding; equal band slices are grouped by one sort per band; candidate
pairs are verified in vectorized chunks; components come from a union-find over verified
links only.

Shingles (defaults chosen for instruction records): the text is lower-cased and split on
whitespace (the tokens of `normalize_text`, which `content_hash` uses) and cut into word
3-grams; a text of at most 3 words is one shingle (itself). Fields are joined with a
separator token, so text moving between `input` and `output` is not invisible. Why word
3-grams: one substituted word removes 3 shingles and adds 3, so a text of L shingles stays at
Jaccard (L - 3) / (L + 3) >= 0.8 while L >= 27 (about 29 words): instruction + output records
that differ by a word or two are caught, while unigrams would call reorderings duplicates and
character n-grams cost ~6x more hashing per text. A bare instruction of 10 words needs
near-exact equality to reach 0.8; the ROUGE-L novelty filter covers that regime.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

import numpy as np
from datasketch import MinHash

from filters.verdict import Verdict
from schemas import InstructionRecord, Reason

__all__ = [
    "FIELD_SEPARATOR",
    "MinHashParams",
    "MinHasher",
    "NearDupMatch",
    "UnionFind",
    "assign_clusters",
    "band_keys",
    "bucket_edges",
    "candidate_pairs",
    "clusters",
    "estimated_jaccard",
    "find_near_duplicates",
    "judge",
    "record_text",
    "shingles",
    "signature_from_bytes",
    "signature_to_bytes",
    "signatures",
    "survivors",
    "verify_pairs",
]

# Not whitespace (unlike U+001F), so normalization keeps it as a token of its own.
FIELD_SEPARATOR = "\u241f"
_SCHEMES = {"affine32": ("<u4", 4), "legacy": ("<u8", 4), "affine64": ("<u8", 8)}
_TEXT_FIELDS = frozenset(f.name for f in dataclasses.fields(InstructionRecord)
                         if f.type in ("str", str))
# Shingles per vectorized chunk: chunk x num_perm values in one work buffer (4 MB at 128 perms).
_CHUNK_SHINGLES = 8_192
# Candidate pairs verified per vectorized step.
_CHUNK_PAIRS = 65_536

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class MinHashParams:
    """MinHash LSH settings; the defaults suit instruction records (see the module docstring).

    16 bands x 8 rows put the LSH S-curve's midpoint at (1/16)^(1/8) ~ 0.71, below the 0.8
    verification threshold: a pair at true Jaccard 0.8 becomes a candidate with probability
    1 - (1 - 0.8^8)^16 ~ 0.95, at 0.9 with ~0.9999; at 0.5 only ~6% and at 0.3 ~0.1% of pairs
    get compared, which is what keeps verification cheap.
    """

    num_perm: int = 128
    bands: int = 16
    rows: int = 8
    shingle_size: int = 3  # words per shingle
    threshold: float = 0.8  # minimum estimated Jaccard for a candidate pair to be linked
    seed: int = 1  # datasketch permutation seed
    text_fields: tuple[str, ...] = ("instruction", "input", "output")
    scheme: str = "affine32"  # datasketch permutation scheme (its 2.0 default)

    def __post_init__(self) -> None:
        if self.num_perm < 1 or self.bands < 1 or self.rows < 1:
            raise ValueError("num_perm, bands and rows must be positive, got "
                             f"{self.num_perm}, {self.bands}, {self.rows}")
        if self.bands * self.rows != self.num_perm:
            raise ValueError(f"bands * rows must equal num_perm: {self.bands} * {self.rows} "
                             f"!= {self.num_perm}")
        if self.shingle_size < 1:
            raise ValueError(f"shingle_size must be >= 1, got {self.shingle_size}")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"seed must be in [0, 2**32), got {self.seed}")
        if not self.text_fields or not set(self.text_fields) <= _TEXT_FIELDS:
            raise ValueError(f"text_fields must be a non-empty subset of {sorted(_TEXT_FIELDS)}, "
                             f"got {self.text_fields!r}")
        if self.scheme not in _SCHEMES:
            raise ValueError(f"scheme must be one of {sorted(_SCHEMES)}, got {self.scheme!r}")
        object.__setattr__(self, "text_fields", tuple(self.text_fields))

    @property
    def dtype(self) -> np.dtype:
        """Little-endian dtype of a signature (fixed so bytes agree across machines)."""
        return np.dtype(_SCHEMES[self.scheme][0])


@dataclass(frozen=True, slots=True)
class NearDupMatch:
    """A record's place in a near-duplicate cluster (only clustered records get one)."""

    cluster: str  # the smallest id in the cluster
    survivor: str  # the id kept for the cluster
    jaccard: float  # estimated Jaccard of this record to the survivor (1.0 for the survivor)


# ----------------------------------------------------------------------------- text -> shingles


def record_text(record: Any, fields: Sequence[str]) -> str:
    """The text a record is compared on: its fields in order, joined by a separator token.

    A dialogue (a record with `messages`) is compared on every turn, whatever the fields:
    its instruction and output repeat only its first exchange, and two dialogues that open
    alike but go on differently are not duplicates.
    """
    if getattr(record, "messages", None):
        return f" {FIELD_SEPARATOR} ".join(m.content for m in record.messages)
    return f" {FIELD_SEPARATOR} ".join(str(getattr(record, f) or "") for f in fields)


def _grams(text: str, size: int) -> list[str]:
    """Word `size`-grams of the normalized text, repeats included (they do not change a min).

    `text.lower().split()` gives the same tokens as `normalize_text(text).split()`: collapsing
    whitespace runs does not move a split, and `str.split()` and the regex `\\s` agree on
    what whitespace is (a unit test checks every code point).
    """
    tokens = text.lower().split()
    if len(tokens) <= size:
        return [" ".join(tokens)] if tokens else []
    if size == 1:
        return tokens
    return list(map(" ".join, zip(*[tokens[i:] for i in range(size)], strict=False)))


# ASCII characters that str.split() treats as whitespace but bytes.split() does not.
_STR_ONLY_SPACE = re.compile("[\x1c-\x1f]")


def _gram_bytes(text: str, size: int) -> list[bytes]:
    """`_grams` encoded as UTF-8, taking a bytes-only shortcut for plain ASCII text.

    For ASCII text without U+001C..U+001F, `bytes.split()` splits exactly where `str.split()`
    does and ASCII lower-casing is the same, so the shingles are byte-for-byte the same
    while skipping one `encode` per shingle.
    """
    if not text.isascii() or _STR_ONLY_SPACE.search(text):
        return [g.encode("utf-8") for g in _grams(text, size)]
    tokens = text.encode("ascii").lower().split()
    if len(tokens) <= size:
        return [b" ".join(tokens)] if tokens else []
    if size == 1:
        return tokens
    return list(map(b" ".join, zip(*[tokens[i:] for i in range(size)], strict=False)))


def shingles(text: str, size: int) -> list[str]:
    """Distinct word `size`-grams of the normalized text, in first-seen order.

    A text of at most `size` words is one shingle (itself), so short texts still have a
    signature; a text with no words has no shingles (and is never clustered).
    """
    return list(dict.fromkeys(_grams(text, size)))


# ----------------------------------------------------------------------------- signatures


def _fmix(hv: np.ndarray, width: int) -> np.ndarray:
    """MurmurHash3 finalizer, as datasketch's `_fmix` (the affine schemes' pre-mix)."""
    t = hv.dtype.type
    if width == 32:
        s1, m1, s2, m2, s3 = 16, 0x85EBCA6B, 13, 0xC2B2AE35, 16
    else:
        s1, m1, s2, m2, s3 = 33, 0xFF51AFD7ED558CCD, 33, 0xC4CEB9FE1A85EC53, 33
    hv = hv ^ (hv >> t(s1))
    hv = hv * t(m1)
    hv = hv ^ (hv >> t(s2))
    hv = hv * t(m2)
    return hv ^ (hv >> t(s3))


class MinHasher:
    """Computes datasketch-identical MinHash signatures for many texts at once.

    Holds the permutation parameters (read from a datasketch `MinHash`, not re-derived); build
    one per worker and reuse it.
    """

    def __init__(self, params: MinHashParams) -> None:
        self.params = params
        proto = MinHash(num_perm=params.num_perm, seed=params.seed, scheme=params.scheme)
        a, b = proto.permutations
        self._legacy = params.scheme == "legacy"
        self._width = 64 if params.scheme == "affine64" else 32
        self._dtype = np.dtype(np.uint32 if params.scheme == "affine32" else np.uint64)
        self._a = np.asarray(a, dtype=self._dtype)
        self._b = np.asarray(b, dtype=self._dtype)
        self._empty = np.asarray(proto.hashvalues, dtype=self._dtype)
        self._digest_bytes = _SCHEMES[params.scheme][1]

    @property
    def empty(self) -> np.ndarray:
        """The signature of an empty set (datasketch's initial hash values)."""
        return self._empty.copy()

    def hash_shingles(self, grams: Sequence[bytes]) -> np.ndarray:
        """datasketch's sha1_hash32 (sha1_hash64 for affine64) of each UTF-8 shingle.

        One SHA-1 per shingle occurrence: on real instructions most shingles are unique within
        a batch, and a dict probe to skip a repeat costs about as much as the SHA-1 it saves.
        """
        k = self._digest_bytes
        sha1 = hashlib.sha1
        raw = b"".join([sha1(g).digest()[:k] for g in grams])
        return np.frombuffer(raw, dtype="<u4" if k == 4 else "<u8").astype(self._dtype)

    def _permute_into(self, hv: np.ndarray, out: np.ndarray) -> np.ndarray:
        """(n,) input hashes -> (num_perm, n) permuted hashes, as MinHash.update_batch computes
        them (transposed: one row per permutation makes the per-document min contiguous)."""
        if self._legacy:
            # datasketch's own uint64 expression, overflow wrap-around included.
            row = hv.reshape(1, -1)
            out[...] = np.bitwise_and((self._a[:, None] * row + self._b[:, None])
                                      % np.uint64((1 << 61) - 1), np.uint64((1 << 32) - 1))
            return out
        with np.errstate(over="ignore"):
            np.multiply(self._a[:, None], _fmix(hv, self._width).reshape(1, -1), out=out)
            np.add(out, self._b[:, None], out=out)
        return out

    def signatures_of_shingles(self, docs: Sequence[Sequence[str]]) -> np.ndarray:
        """(len(docs), num_perm) signatures; a document without shingles gets `empty`."""
        return self._run(([g.encode("utf-8") for g in d] for d in docs), len(docs))[0]

    def signatures(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), num_perm) signatures of the texts' shingles."""
        return self.signatures_and_sizes(texts)[0]

    def signatures_and_sizes(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Signatures and each text's number of shingles (0: no words, empty signature).

        Sizes count repeats; only zero versus non-zero matters to callers.
        """
        size = self.params.shingle_size
        return self._run((_gram_bytes(t, size) for t in texts), len(texts))

    def _run(self, docs: Iterable[list[bytes]], n_docs: int) -> tuple[np.ndarray, np.ndarray]:
        """Stream documents through in chunks of ~_CHUNK_SHINGLES shingles, so the shingle
        list, its hashes and the permuted block stay cache-sized whatever the corpus size."""
        out = np.tile(self._empty, (n_docs, 1))
        lengths = np.zeros(n_docs, dtype=np.int64)
        work = np.empty((self.params.num_perm, _CHUNK_SHINGLES), dtype=self._dtype)
        flat: list[bytes] = []
        first = 0
        for i, grams in enumerate(docs):
            flat += grams
            lengths[i] = len(grams)
            if len(flat) >= _CHUNK_SHINGLES:
                self._reduce(flat, lengths[first:i + 1], out[first:i + 1], work)
                flat, first = [], i + 1
        if flat:
            self._reduce(flat, lengths[first:], out[first:], work)
        return out, lengths

    def _reduce(self, flat: list[bytes], lengths: np.ndarray, out: np.ndarray,
                work: np.ndarray) -> None:
        """Write the signatures of consecutive documents (their shingles concatenated in
        `flat`, `lengths` each) into the rows of `out` (a view); empty documents keep theirs."""
        nonempty = np.flatnonzero(lengths)
        starts = (np.cumsum(lengths) - lengths)[nonempty]
        block = work[:, :len(flat)] if len(flat) <= work.shape[1] else np.empty(
            (work.shape[0], len(flat)), dtype=work.dtype)
        permuted = self._permute_into(self.hash_shingles(flat), block)
        mins = np.minimum.reduceat(permuted, starts, axis=1)
        out[nonempty] = np.minimum(mins.T, self._empty)


@lru_cache(maxsize=8)
def _hasher(params: MinHashParams) -> MinHasher:
    return MinHasher(params)


def signatures(texts: Sequence[str], params: MinHashParams) -> np.ndarray:
    """Signatures of many texts, equal to datasketch `MinHash.update` per shingle."""
    return _hasher(params).signatures(texts)


def signature_to_bytes(signature: np.ndarray, params: MinHashParams) -> bytes:
    """Compact, machine-independent encoding (little-endian) for shuffles."""
    return np.ascontiguousarray(signature, dtype=params.dtype).tobytes()


def signature_from_bytes(data: bytes, params: MinHashParams) -> np.ndarray:
    return np.frombuffer(data, dtype=params.dtype)


# ----------------------------------------------------------------------------- LSH


def band_keys(signature: np.ndarray, params: MinHashParams) -> list[bytes]:
    """One bucket key per band: the band index (2 bytes) then the band's hash values.

    Two signatures share a key exactly when datasketch's MinHashLSH would put them in the same
    bucket of that band's hash table (the index keeps bands apart in one keyspace).
    """
    raw = signature_to_bytes(signature, params)
    width = params.rows * params.dtype.itemsize
    return [band.to_bytes(2, "big") + raw[band * width:(band + 1) * width]
            for band in range(params.bands)]


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """Fraction of equal hash values: the same float as datasketch's `MinHash.jaccard`."""
    return float(np.count_nonzero(sig_a == sig_b)) / float(len(sig_a))


def _all_pairs(members: np.ndarray) -> np.ndarray:
    i, j = np.triu_indices(len(members), k=1)
    return np.stack([members[i], members[j]], axis=1)


# Odd 64-bit multipliers for folding a band into one sortable fingerprint.
_FOLD = np.random.RandomState(0x5EED).randint(0, 1 << 62, size=512, dtype=np.uint64) * 2 + 1


def _band_groups(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of `block` ordered so equal rows are adjacent, and where each run starts.

    Sorting a 64-bit fingerprint is much faster than a lexicographic sort of the rows; runs
    are then checked row by row, and a band whose fingerprints collide (rows differ inside a
    run) is grouped by the exact lexicographic sort instead. Grouping is therefore exact.
    """
    n, r = block.shape
    with np.errstate(over="ignore"):
        wide = block.astype(np.uint64)
        fold = _FOLD[np.arange(r) % len(_FOLD)]
        fingerprint = _fmix(wide @ fold, 64)
    order = np.argsort(fingerprint, kind="stable")
    fp = fingerprint[order]
    starts = np.flatnonzero(np.concatenate(([True], fp[1:] != fp[:-1])))
    ordered = block[order]
    run_head = np.repeat(starts, np.diff(np.append(starts, n)))
    if not np.array_equal(ordered, ordered[run_head]):
        order = np.lexsort(block.T[::-1])
        ordered = block[order]
        changed = np.any(ordered[1:] != ordered[:-1], axis=1)
        starts = np.flatnonzero(np.concatenate(([True], changed)))
    return order, starts


def candidate_pairs(sigs: np.ndarray, params: MinHashParams) -> np.ndarray:
    """Row pairs (i < j) that share at least one band, as an (n, 2) int64 array, sorted."""
    n = len(sigs)
    if n < 2:
        return np.empty((0, 2), dtype=np.int64)
    found: list[np.ndarray] = []
    r = params.rows
    for band in range(params.bands):
        order, starts = _band_groups(np.ascontiguousarray(sigs[:, band * r:(band + 1) * r]))
        sizes = np.diff(np.append(starts, n))
        two = starts[sizes == 2]  # the common case, vectorized
        if len(two):
            a, b = order[two], order[two + 1]
            found.append(np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1))
        for g in np.flatnonzero(sizes > 2):
            found.append(_all_pairs(np.sort(order[starts[g]:starts[g] + sizes[g]])))
    if not found:
        return np.empty((0, 2), dtype=np.int64)
    pairs = np.concatenate(found).astype(np.int64)
    codes = np.unique(pairs[:, 0] * n + pairs[:, 1])
    return np.stack([codes // n, codes % n], axis=1)


def verify_pairs(sigs: np.ndarray, pairs: np.ndarray,
                 threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Keep the pairs whose estimated Jaccard is >= threshold; returns (pairs, jaccards)."""
    kept: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    num_perm = sigs.shape[1]
    for lo in range(0, len(pairs), _CHUNK_PAIRS):
        chunk = pairs[lo:lo + _CHUNK_PAIRS]
        equal = np.count_nonzero(sigs[chunk[:, 0]] == sigs[chunk[:, 1]], axis=1)
        jaccard = equal.astype(np.float64) / float(num_perm)
        ok = jaccard >= threshold
        kept.append(chunk[ok])
        scores.append(jaccard[ok])
    if not kept:
        return np.empty((0, 2), dtype=np.int64), np.empty(0, dtype=np.float64)
    return np.concatenate(kept), np.concatenate(scores)


# ----------------------------------------------------------------------------- components


class UnionFind:
    """Disjoint sets whose root is always the smallest member.

    Linking the larger root under the smaller makes the final partition *and* every root
    independent of the order of unions, which is what lets Beam merge partial results from
    any bundles in any order (`merge`) and still get the same labels.
    """

    __slots__ = ("parent",)

    def __init__(self) -> None:
        self.parent: dict[Any, Any] = {}

    def add(self, x: Any) -> None:
        self.parent.setdefault(x, x)

    def find(self, x: Any) -> Any:
        parent = self.parent
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    def union(self, a: Any, b: Any) -> None:
        self.add(a)
        self.add(b)
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if rb < ra:
            ra, rb = rb, ra
        self.parent[rb] = ra

    def merge(self, other: UnionFind) -> None:
        """Absorb another union-find: its (node, parent) links span its components."""
        for node, parent in other.parent.items():
            self.union(node, parent)

    def labels(self) -> dict[Any, Any]:
        """Every node -> the smallest node of its component."""
        return {x: self.find(x) for x in self.parent}


def clusters(pairs: Iterable[tuple[K, K]], nodes: Iterable[K] = ()) -> dict[K, K]:
    """Connected components: node -> cluster id (the smallest node of its component).

    Every node in `nodes` or in a pair gets a label; an isolated node labels itself.
    """
    uf = UnionFind()
    for node in nodes:
        uf.add(node)
    for a, b in pairs:
        uf.union(a, b)
    return uf.labels()


def survivors(cluster_of: Mapping[K, K], order: Mapping[K, Any] | None = None) -> dict[K, K]:
    """Cluster id -> the member with the smallest (order key, id); order defaults to the id."""
    best: dict[K, tuple[Any, K]] = {}
    for node, cluster in cluster_of.items():
        key = (order[node] if order is not None else 0, node)
        if cluster not in best or key < best[cluster]:
            best[cluster] = key
    return {cluster: key[1] for cluster, key in best.items()}


def assign_clusters(members: Sequence[tuple[str, Any, np.ndarray]]) -> dict[str, NearDupMatch]:
    """One cluster's (id, order key, signature) members -> each member's match.

    Cluster id = smallest id; survivor = smallest (order key, id); jaccard = estimated Jaccard
    to the survivor (members joined transitively may be below the threshold to it).
    """
    cluster = min(m[0] for m in members)
    survivor_id, _, survivor_sig = min(members, key=lambda m: (m[1], m[0]))
    return {rid: NearDupMatch(cluster, survivor_id,
                              1.0 if rid == survivor_id else estimated_jaccard(sig, survivor_sig))
            for rid, _, sig in members}


# ----------------------------------------------------------------------------- one bucket


def bucket_edges(members: Iterable[tuple[str, Any, bytes]], params: MinHashParams,
                 max_distinct: int) -> tuple[list[tuple[str, str]], int, bool]:
    """Verified near-duplicate links inside one LSH bucket, as a spanning forest.

    Members are (id, order key, signature bytes). Returns (edges, pairs compared, truncated).
    Members with byte-identical signatures are linked to the first of them (Jaccard 1.0)
    without comparison. Among the distinct signatures, sorted by (order key, id):
    * up to `max_distinct` of them, every pair is compared: exact, the same links as
      comparing every pair of the bucket;
    * beyond that (a pathological bucket), each later signature is compared with the first
      `max_distinct` only, bounding the work to O(size * max_distinct); a link between two
      later members is then found only through another bucket or an anchor (`truncated`).
    Only a spanning forest of the verified links is returned: same components, fewer edges.
    """
    ordered = sorted(members, key=lambda m: (m[1], m[0]))
    edges: list[tuple[str, str]] = []
    first_of: dict[bytes, str] = {}
    distinct: list[tuple[str, bytes]] = []
    for rid, _, sig in ordered:
        head = first_of.setdefault(sig, rid)
        if head == rid:
            distinct.append((rid, sig))
        else:
            edges.append((head, rid))
    if len(distinct) < 2:
        return edges, 0, False
    ids = [rid for rid, _ in distinct]
    sigs = np.stack([signature_from_bytes(sig, params) for _, sig in distinct])
    anchors = min(len(distinct), max_distinct)
    uf = UnionFind()
    compared = 0
    for i in range(anchors):
        # Anchor i against every distinct signature after it: all pairs when nothing is cut.
        others = np.arange(i + 1, len(distinct))
        if not len(others):
            break
        equal = np.count_nonzero(sigs[others] == sigs[i], axis=1)
        compared += len(others)
        jaccard = equal.astype(np.float64) / float(params.num_perm)
        for j in others[jaccard >= params.threshold].tolist():
            uf.union(i, j)
    for node, root in uf.labels().items():
        if node != root:
            edges.append((ids[root], ids[node]))
    return edges, compared, len(distinct) > max_distinct


# ----------------------------------------------------------------------------- whole corpus


def find_near_duplicates(ids: Sequence[str], texts: Sequence[str], params: MinHashParams,
                         order: Sequence[Any] | None = None,
                         hasher: MinHasher | None = None) -> dict[str, NearDupMatch]:
    """The single-process path: signatures, banding, verification, components, survivors.

    Returns a match for every record in a cluster of two or more; the others are absent.
    `order` (one sortable key per record) picks survivors before the id does. Records whose
    text has no words are never clustered. Exact: every candidate pair is verified.
    """
    if len(ids) != len(texts) or (order is not None and len(order) != len(ids)):
        raise ValueError("ids, texts and order must have the same length")
    if len(set(ids)) != len(ids):
        raise ValueError("record ids must be unique")
    hasher = hasher or _hasher(params)
    all_sigs, sizes = hasher.signatures_and_sizes(texts)
    rows = np.flatnonzero(sizes)
    if len(rows) < 2:
        return {}
    sigs = all_sigs[rows]
    # Identical signatures are linked outright (Jaccard 1.0, and they collide in every band),
    # so banding and verification run on one representative per distinct signature.
    ordered, starts = _band_groups(sigs)
    run_sizes = np.diff(np.append(starts, len(sigs)))
    reps = ordered[starts]
    uf = UnionFind()
    for member, rep in zip(ordered.tolist(), np.repeat(reps, run_sizes).tolist(), strict=True):
        if member != rep:
            uf.union(rep, member)
    uniq = sigs[reps]
    pairs, _ = verify_pairs(uniq, candidate_pairs(uniq, params), params.threshold)
    for a, b in reps[pairs].tolist():
        uf.union(a, b)
    return _matches_from_components(uf.labels(), sigs, [ids[r] for r in rows.tolist()],
                                    None if order is None else [order[r] for r in rows.tolist()])


def _matches_from_components(labels: Mapping[int, int], sigs: np.ndarray, ids: Sequence[str],
                             order: Sequence[Any] | None) -> dict[str, NearDupMatch]:
    """`assign_clusters` for every component at once, Jaccards in one vectorized step."""
    best: dict[int, tuple[Any, str, int]] = {}  # root -> (order key, id, row) of the survivor
    smallest: dict[int, str] = {}  # root -> smallest id
    for row, root in labels.items():
        rid = ids[row]
        key = (order[row] if order is not None else 0, rid, row)
        if root not in best or key[:2] < best[root][:2]:
            best[root] = key
        if root not in smallest or rid < smallest[root]:
            smallest[root] = rid
    members = np.fromiter(labels.keys(), dtype=np.int64, count=len(labels))
    survivor_rows = np.fromiter((best[root][2] for root in labels.values()), dtype=np.int64,
                                count=len(labels))
    equal = np.count_nonzero(sigs[members] == sigs[survivor_rows], axis=1)
    jaccards = (equal.astype(np.float64) / float(sigs.shape[1])).tolist()
    out: dict[str, NearDupMatch] = {}
    for (row, root), jaccard in zip(labels.items(), jaccards, strict=True):
        survivor = best[root][1]
        rid = ids[row]
        out[rid] = NearDupMatch(smallest[root], survivor, 1.0 if rid == survivor else jaccard)
    return out


def judge(record: InstructionRecord, match: NearDupMatch | None) -> tuple[InstructionRecord,
                                                                           Verdict]:
    """A record and its verdict: unclustered and survivors kept, the rest near duplicates.

    Clustered records (survivor included) carry cluster, survivor and Jaccard to the survivor;
    a dropped one's score is that Jaccard.
    """
    if match is None:
        return record, Verdict.ok()
    record = dataclasses.replace(record, near_dup_cluster=match.cluster,
                                 near_dup_survivor=match.survivor,
                                 near_dup_jaccard=match.jaccard)
    if match.survivor == record.id:
        return record, Verdict.ok(match.jaccard)
    return record, Verdict.drop(Reason.NEAR_DUPLICATE, score=match.jaccard,
                                detail=f"near duplicate of {match.survivor} "
                                       f"(cluster {match.cluster})")
