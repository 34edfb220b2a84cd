"""A small learned quality scorer: logistic regression over sentence embeddings, on CPU.

EcomGPT filters with a learned low-quality classifier after its rules; this is ours, trained
from labelled rows (`instructbeam train-classifier`): a JSONL of {instruction, input, output,
label} (1 good, 0 bad), or the verdicts a reviewer wrote (`<run>/review/verdicts.jsonl`,
append-only; the last line per id wins, `skip` is ignored).

Features: the embedding of the prompt (instruction + input), of the output, and their
element-wise product, standardized. The product is what lets a *linear* model see whether an
answer belongs to its prompt (a mismatched answer can be fluent on its own). The artifact is
a small JSON file (`quality_classifier.v1.json`): the weights, the standardization, the
embedder's name, the SHA-256 of the training rows and their counts, so a score can always be
traced to its training data.
Scoring needs only numpy and the embedder; scikit-learn is needed to train.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from filters.quality import CLASSIFIER
from filters.tag_embeddings import MINILM, embedder
from schemas.jsonl import TORN_SUFFIX, read_json_lines

ARTIFACT: Final = "quality_classifier.v1.json"
FORMAT: Final = "instructbeam/quality_classifier"
VERSION: Final = 1
SCORE_DIGITS: Final = 6
VERDICT_LABELS: Final = {"good": 1, "bad": 0}
#: Verdicts that carry no label: "skip", and "undone" (the review page's undo withdraws the
#: id's earlier verdict; pipelines/outputs/review.py writes it).
NO_LABEL: Final = ("skip", "undone")

Row = tuple[str, str, str]  # (instruction, input, output)


class LabelError(ValueError):
    """A labelled-rows file that cannot be used; the message names file and line."""


@dataclass(frozen=True, slots=True)
class Labelled:
    instruction: str
    input: str
    output: str
    label: int  # 1 good, 0 bad

    @property
    def row(self) -> Row:
        return (self.instruction, self.input, self.output)


def _text(data: dict[str, Any], key: str, where: str, required: bool = False) -> str:
    value = data.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise LabelError(f"{where}: field '{key}' must be a string")
    return value


def _label_line(data: dict[str, Any], where: str) -> Labelled:
    label = data.get("label")
    if isinstance(label, bool) or label not in (0, 1):
        raise LabelError(f"{where}: field 'label' must be 1 (good) or 0 (bad), got {label!r}")
    return Labelled(_text(data, "instruction", where, True), _text(data, "input", where),
                    _text(data, "output", where), int(label))


def read_labelled(path: Path) -> list[Labelled]:
    """Labelled rows from one JSONL file: label lines, or review verdict lines (detected by a
    `verdict` field; the last verdict per id wins, `skip` gives no row)."""
    rows: list[Labelled] = []
    verdicts: dict[str, Labelled | None] = {}
    torn: list[str] = []  # a review log cut mid-line by a crash: its last line is set aside
    for number, data in read_json_lines(path, LabelError, torn=torn):  # "\n" ends a line
        where = f"{path}:{number}"
        if "verdict" not in data:
            rows.append(_label_line(data, where))
            continue
        verdict, key = data.get("verdict"), data.get("id")
        if not isinstance(key, str) or not key:
            raise LabelError(f"{where}: a verdict line needs a string 'id'")
        if verdict in NO_LABEL:
            verdicts[key] = None
        elif verdict in VERDICT_LABELS:
            verdicts.pop(key, None)  # re-insert: the last verdict's place counts
            verdicts[key] = Labelled(_text(data, "instruction", where, True),
                                     _text(data, "input", where), _text(data, "output", where),
                                     VERDICT_LABELS[verdict])
        else:
            raise LabelError(f"{where}: field 'verdict' must be good, bad, skip or undone, got "
                             f"{verdict!r}")
    for problem in torn:  # only a review log is appended by a program that can crash
        if not verdicts:
            raise LabelError(problem.removesuffix(TORN_SUFFIX))
        warnings.warn(f"{path}: {problem}", stacklevel=2)
    return rows + [v for v in verdicts.values() if v is not None]


def training_sha256(rows: Sequence[Labelled]) -> str:
    """Hash of the training rows in order (what the artifact was fitted on)."""
    digest = hashlib.sha256()
    for r in rows:
        line = json.dumps([r.instruction, r.input, r.output, r.label], ensure_ascii=False)
        digest.update(line.encode("utf-8") + b"\n")
    return digest.hexdigest()


def features(rows: Sequence[Row], embed: Callable[[Sequence[str]], Any]) -> np.ndarray:
    """[prompt, output, prompt * output] embeddings, one row per input row."""
    prompts = [f"{i.strip()}\n{x.strip()}".strip() for i, x, _ in rows]
    outputs = [o.strip() for _, _, o in rows]
    p = np.asarray(embed(prompts), dtype=np.float64)
    o = np.asarray(embed(outputs), dtype=np.float64)
    return np.hstack([p, o, p * o])


@dataclass(frozen=True)
class ClassifierModel:
    """A fitted logistic regression and where it came from."""

    embedding: str
    coef: tuple[float, ...]
    intercept: float
    mean: tuple[float, ...]  # per-feature standardization, fitted on the training rows
    scale: tuple[float, ...]
    training_sha256: str
    rows: int
    positives: int
    c: float = 1.0
    score_name: str = CLASSIFIER

    def score(self, rows: Sequence[Row]) -> list[float]:
        """P(good) for each row, rounded to SCORE_DIGITS decimals: an embedder's last bits
        depend on the batch a row is encoded in (summation order), and Beam's batches vary
        from run to run, while the output should not."""
        if not rows:
            return []
        x = (features(rows, embedder(self.embedding)) - np.asarray(self.mean)) / np.asarray(
            self.scale)
        coef = np.asarray(self.coef)
        return [round(1.0 / (1.0 + math.exp(-(float(np.dot(r, coef)) + self.intercept))),
                      SCORE_DIGITS) for r in x]

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "embedding": self.embedding,
                "features": "prompt,output,prompt*output", "c": self.c,
                "training_sha256": self.training_sha256, "rows": self.rows,
                "positives": self.positives, "intercept": self.intercept,
                "coef": list(self.coef), "mean": list(self.mean), "scale": list(self.scale)}


def train_classifier(rows: Sequence[Labelled], embedding: str = MINILM, c: float = 1.0
                     ) -> ClassifierModel:
    """Fit on `rows` (both labels needed); deterministic (lbfgs, no shuffling)."""
    from sklearn.linear_model import LogisticRegression

    labels = [r.label for r in rows]
    if len(set(labels)) < 2:
        raise LabelError(f"training needs both good (1) and bad (0) rows; got {len(rows)} "
                         f"row(s), all {labels[0] if labels else 'absent'}")
    x = features([r.row for r in rows], embedder(embedding))
    # Standardized features: the product block is ~1/dim the size of the others, and one
    # regularization strength should treat every feature alike.
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    fit = LogisticRegression(C=c, max_iter=5000).fit((x - mean) / scale, np.asarray(labels))
    return ClassifierModel(embedding, tuple(float(v) for v in fit.coef_[0]),
                           float(fit.intercept_[0]), tuple(float(v) for v in mean),
                           tuple(float(v) for v in scale), training_sha256(rows), len(rows),
                           sum(labels), c)


def save_classifier(model: ClassifierModel, model_dir: Path) -> Path:
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / ARTIFACT
    path.write_text(json.dumps(model.to_json(), indent=1) + "\n", encoding="utf-8")
    return path


def load_classifier(model_dir: str | Path) -> ClassifierModel:
    """Read an artifact written by `save_classifier`; a wrong or newer format is an error."""
    path = Path(model_dir) / ARTIFACT
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LabelError(f"{path}: not a quality classifier ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or \
            data.get("version") != VERSION:
        raise LabelError(f"{path}: not a version-{VERSION} quality classifier")
    embedder(data["embedding"])  # an unknown embedder fails here, not on the first batch
    return ClassifierModel(data["embedding"], tuple(data["coef"]), float(data["intercept"]),
                           tuple(data["mean"]), tuple(data["scale"]), data["training_sha256"],
                           int(data["rows"]), int(data["positives"]), float(data.get("c", 1.0)))
