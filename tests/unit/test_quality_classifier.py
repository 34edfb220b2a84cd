"""The learned quality scorer: labelled rows and review verdicts in, a versioned artifact out,
the same scores after loading it; the CLI command's good and bad paths."""

from __future__ import annotations

import json
import re

import pytest

from filters.quality_classifier import (
    ARTIFACT,
    LabelError,
    Labelled,
    load_classifier,
    read_labelled,
    save_classifier,
    train_classifier,
    training_sha256,
)
from pipelines.cli import main
from pipelines.outputs.review import SampleRow, append_verdicts, make_verdict, verdicts_path

TRIGRAM = "char-trigram"  # no model to load: fast and deterministic

GOOD = [("Name a red fruit.", "", "An apple is a red fruit."),
        ("Translate to French.", "cat", "chat"),
        ("Add two and three.", "", "Two plus three is five."),
        ("Name a planet.", "", "Mars is a planet."),
        ("Give an antonym of hot.", "", "Cold is the antonym of hot."),
        ("Spell the word cat backwards.", "", "tac")]
# The same prompts with another prompt's answer: fluent, but not an answer to them.
BAD = [(i, x, GOOD[(k + 2) % len(GOOD)][2]) for k, (i, x, _) in enumerate(GOOD)]


def _labelled() -> list[Labelled]:
    return ([Labelled(*row, 1) for row in GOOD] + [Labelled(*row, 0) for row in BAD])


def _write(path, lines) -> str:
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return str(path)


def test_label_lines_and_verdicts_last_one_wins_skip_ignored(tmp_path):
    path = tmp_path / "verdicts.jsonl"
    _write(path, [
        {"id": "a", "verdict": "bad", "instruction": "I", "input": "", "output": "O"},
        {"id": "b", "verdict": "good", "instruction": "J", "output": "P"},
        {"id": "a", "verdict": "good", "instruction": "I", "input": "", "output": "O"},
        {"id": "b", "verdict": "skip", "instruction": "J", "output": "P"},
        {"id": "c", "verdict": "skip", "instruction": "K", "output": "Q"},
        {"instruction": "L", "input": "x", "output": "R", "label": 0},
    ])
    assert read_labelled(path) == [Labelled("L", "x", "R", 0), Labelled("I", "", "O", 1)]


@pytest.mark.parametrize(("line", "problem"), [
    ("not json", "malformed JSON"),
    (json.dumps({"instruction": "I", "output": "O", "label": 2}), "must be 1 (good) or 0"),
    (json.dumps({"instruction": "I", "output": "O", "label": True}), "must be 1 (good) or 0"),
    (json.dumps({"output": "O", "label": 1}), "'instruction' must be a string"),
    (json.dumps({"id": "a", "verdict": "meh", "instruction": "I"}), "good, bad, skip or undone"),
    (json.dumps({"verdict": "good", "instruction": "I"}), "needs a string 'id'"),
])
def test_bad_label_lines_name_file_and_line(tmp_path, line, problem):
    path = tmp_path / "labels.jsonl"
    path.write_text(json.dumps({"instruction": "I", "output": "O", "label": 1}) + "\n" + line)
    with pytest.raises(LabelError, match=f"labels.jsonl:2: .*{re.escape(problem)}"):
        read_labelled(path)


def test_train_save_load_round_trip_scores_the_same(tmp_path):
    rows = _labelled()
    model = train_classifier(rows, TRIGRAM)
    assert model.rows == 12 and model.positives == 6
    assert model.training_sha256 == training_sha256(rows)
    save_classifier(model, tmp_path / "m")
    loaded = load_classifier(tmp_path / "m")
    assert loaded == model
    probe = [r.row for r in rows]
    assert loaded.score(probe) == pytest.approx(model.score(probe))
    scores = model.score(probe)
    # It learns its training set: every good row above every bad one.
    assert min(scores[:6]) > max(scores[6:])


def test_training_needs_both_labels_and_the_hash_follows_the_data():
    with pytest.raises(LabelError, match="both good"):
        train_classifier([Labelled(*GOOD[0], 1)], TRIGRAM)
    rows = _labelled()
    assert training_sha256(rows) != training_sha256(rows[:-1])


def test_loading_rejects_other_files(tmp_path):
    (tmp_path / ARTIFACT).write_text(json.dumps({"format": "something else"}))
    with pytest.raises(LabelError, match="not a version-1 quality classifier"):
        load_classifier(tmp_path)
    with pytest.raises(LabelError, match="not a quality classifier"):
        load_classifier(tmp_path / "missing")


def test_cli_trains_from_labels_and_a_run_folders_verdicts(tmp_path, capsys):
    labels = _write(tmp_path / "labels.jsonl",
                    [{"instruction": i, "input": x, "output": o, "label": 1} for i, x, o in GOOD])
    run_dir = tmp_path / "run"
    (run_dir / "review").mkdir(parents=True)
    _write(run_dir / "review" / "verdicts.jsonl",
           [{"id": str(k), "stage": "data", "source": "s", "verdict": "bad", "reason": "",
             "instruction": i, "input": x, "output": o, "at": "2026-01-01T00:00:00Z"}
            for k, (i, x, o) in enumerate(BAD)])
    out = tmp_path / "model"
    assert main(["train-classifier", labels, str(run_dir), "--out", str(out),
                 "--embedding", TRIGRAM]) == 0
    assert "trained on 12 rows (6 good)" in capsys.readouterr().out
    assert load_classifier(out).training_sha256 == training_sha256(_labelled())


@pytest.mark.parametrize("args", [["--embedding", "nope"], ["--c", "0"]])
def test_cli_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, args):
    labels = _write(tmp_path / "labels.jsonl",
                    [{"instruction": "I", "output": "O", "label": 1}])
    out = tmp_path / "model"
    assert main(["train-classifier", labels, "--out", str(out), *args]) == 2
    assert main(["train-classifier", labels, "--out", str(out),
                 "--embedding", TRIGRAM]) == 2  # one label only
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: ") for line in err)
    assert "both good" in err[1]
    assert not out.exists()


def test_verdicts_written_by_the_review_page_train_what_is_in_force(tmp_path):
    """The review log's own writer: an undo withdraws the verdict before it (no label), and a
    text holding U+2028 stays one line."""
    rows = [SampleRow(id=i, source="machine", stage="instance_gen", instruction=f"I{i}\u2028x",
                      input="", output=f"O{i}") for i in "abc"]
    append_verdicts(tmp_path, [make_verdict(rows[0], "good"), make_verdict(rows[1], "bad"),
                               make_verdict(rows[2], "good"), make_verdict(rows[2], "undone")])
    labelled = read_labelled(verdicts_path(tmp_path))
    assert labelled == [Labelled("Ia\u2028x", "", "Oa", 1), Labelled("Ib\u2028x", "", "Ob", 0)]


def test_a_review_log_torn_by_a_crash_still_trains_and_says_so(tmp_path):
    from filters.quality_classifier import read_labelled

    log = tmp_path / "verdicts.jsonl"
    whole = {"id": "a", "verdict": "good", "instruction": "Say hi.", "input": "",
             "output": "Hi!"}
    log.write_text(json.dumps(whole) + "\n" + '{"id": "b", "verdict": "ba')
    with pytest.warns(UserWarning, match="unfinished last line"):
        rows = read_labelled(log)
    assert [(r.instruction, r.label) for r in rows] == [("Say hi.", 1)]
