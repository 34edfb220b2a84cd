"""The review page in a real headless Chromium (tests/browser.py): the keyboard flow (g/b/s, the
reason box, undo, moving), verdicts kept across reloads with the page resuming at the first
unreviewed row, hostile rows shown as text, and no request leaving the machine. Served by the
local server it writes review/verdicts.jsonl; opened as a file it keeps verdicts in the
browser, and its export imports with `instructbeam review --import`. No vLLM: the run dir is
an audit sample written by tests/review_fakes.py."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser import LOCAL, chromium, open_page, severe
from review_fakes import HOSTILE, audit_row, small_run, write_audit

from pipelines.cli import main
from pipelines.outputs.review import read_sample, read_verdicts, verdicts_path
from pipelines.outputs.review_page import run_key, write_page
from pipelines.outputs.review_server import ReviewServer

# small_run's rows in page order: source "seed" first, then "self_instruct"
ORDER = ["r004", "r005", "r001", "r002", "r003"]


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory, downloads: Path) -> Iterator[object]:
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as driver:
        driver.execute_cdp_cmd("Browser.setDownloadBehavior", {
            "behavior": "allow", "downloadPath": str(downloads)})
        yield driver


@pytest.fixture
def served(tmp_path) -> Iterator[ReviewServer]:
    server = ReviewServer(small_run(tmp_path / "run"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def press(driver, *keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    for key in keys:
        ActionChains(driver).send_keys(key).perform()


def wait_saved(driver) -> None:
    """Until every verdict the page posted has been answered."""
    deadline = time.monotonic() + 10
    while driver.execute_script(
            "return document.getElementById('status').getAttribute('data-pending')") != "0":
        assert time.monotonic() < deadline, "the page's posts were not answered"
        time.sleep(0.05)


def wait_row(driver) -> None:
    """Until the page shows a row (served, its block of rows is fetched first)."""
    deadline = time.monotonic() + 10
    while not driver.execute_script("return document.body.getAttribute('data-row')"):
        assert time.monotonic() < deadline, "the page showed no row"
        time.sleep(0.02)


def shown(driver) -> dict[str, str]:
    return driver.execute_script("""
        var t = function (id) { return document.getElementById(id).textContent; };
        return {row: document.body.getAttribute('data-row'), verdict: t('verdict'),
                done: t('done'), instruction: t('instruction'), status: t('status'),
                reason: document.getElementById('reason').value,
                focused: document.activeElement.id};""")


def logged(run: Path) -> list[tuple[str, str, str]]:
    return [(x["id"], x["verdict"], x["reason"]) for x in
            map(json.loads, verdicts_path(run).read_text(encoding="utf-8").splitlines())]


def test_keyboard_flow_saves_to_the_server_and_resumes(browser, served):
    run = served.run_dir
    console, requests = open_page(browser, served.url, allow=LOCAL)
    wait_row(browser)
    # the page, then the one block of rows it shows (served, rows come by blocks)
    assert severe(console) == [] and requests == [served.url, served.url + "rows/0"]
    page = shown(browser)
    assert page["row"] == ORDER[0] and page["verdict"] == "unreviewed"
    assert page["instruction"] == HOSTILE  # shown as text, never run
    assert browser.execute_script("return typeof window.pwned") == "undefined"
    assert page["done"] == "0 of 5 reviewed"

    press(browser, "g")  # good, and on to the next row
    press(browser, "r")  # the reason box takes the keys now
    assert shown(browser)["focused"] == "reason"
    press(browser, "too short", "\ue007")  # Enter keeps the reason for this row
    assert shown(browser)["focused"] != "reason"
    press(browser, "b", "s")
    wait_saved(browser)
    assert logged(run) == [("r004", "good", ""), ("r005", "bad", "too short"),
                           ("r001", "skip", "")]
    assert shown(browser)["row"] == ORDER[3] and shown(browser)["done"] == "3 of 5 reviewed"

    press(browser, "u")  # undo the skip: back on that row, unreviewed again
    wait_saved(browser)
    assert (shown(browser)["row"], shown(browser)["verdict"]) == (ORDER[2], "unreviewed")
    assert logged(run)[-1] == ("r001", "undone", "")
    assert set(read_verdicts(run)) == {"r004", "r005"}

    console, _ = open_page(browser, served.url, allow=LOCAL)  # reload
    wait_row(browser)
    assert severe(console) == []
    page = shown(browser)
    assert (page["row"], page["done"]) == (ORDER[2], "2 of 5 reviewed")  # first unreviewed
    press(browser, "k")  # back to the bad row: its verdict and reason are shown
    page = shown(browser)
    assert (page["row"], page["verdict"], page["reason"]) == (ORDER[1], "bad", "too short")
    press(browser, "r", "cut off", "\ue007")  # r selects the old reason; typing replaces it
    wait_saved(browser)
    assert logged(run)[-1] == ("r005", "bad", "cut off")
    press(browser, "\ue014", "\ue014", "j")  # arrow right twice, then j: the last row
    assert shown(browser)["row"] == ORDER[4]
    press(browser, "\ue012")  # arrow left
    assert shown(browser)["row"] == ORDER[3]


def test_a_file_page_keeps_verdicts_in_the_browser_and_exports_them(browser, downloads,
                                                                    tmp_path):
    run = small_run(tmp_path / "run")
    page_uri = write_page(run).as_uri()
    console, requests = open_page(browser, page_uri)
    assert severe(console) == [] and requests == [page_uri]
    press(browser, "g", "b", "u", "s")  # undo the bad: r005 becomes skip
    console, _ = open_page(browser, page_uri)  # reload: kept in localStorage
    assert severe(console) == []
    page = shown(browser)
    assert (page["row"], page["done"]) == (ORDER[2], "2 of 5 reviewed")
    assert not verdicts_path(run).exists()  # a file page cannot write the log

    browser.find_element("id", "export").click()
    exported = _wait_for_file(downloads, "run-verdicts.jsonl")
    assert main(["review", str(run), "--import", str(exported)]) == 0
    assert {i: v.verdict for i, v in read_verdicts(run).items()} == {"r004": "good",
                                                                     "r005": "skip"}


def _wait_for_file(directory: Path, name: str) -> Path:
    deadline = time.monotonic() + 10
    while not (directory / name).is_file():
        assert time.monotonic() < deadline, f"{name} was not downloaded to {directory}"
        time.sleep(0.05)
    return directory / name


def test_the_page_shows_scores_the_transform_and_the_whole_dialogue(browser, tmp_path):
    turns = [{"role": r, "content": f"turn {n} by the {r}"}
             for n, r in enumerate(["user", "assistant"] * 2, 1)]
    run = write_audit(tmp_path / "run", {"ultrachat": [audit_row(
        1, instruction="turn 1 by the user", output="turn 2 by the assistant", messages=turns,
        scores={"llm_judge": 4.25, "reward": -0.5}, transform="reversal@v1")]})
    console, _ = open_page(browser, write_page(run).as_uri())
    assert severe(console) == []
    page = browser.execute_script("""
        var box = document.getElementById('dialogue-box');
        return {dialogue: box.hidden ? '' : box.innerText,
                meta: document.getElementById('meta').innerText};""")
    for turn in turns:  # every round, not only the first exchange
        assert turn["content"] in page["dialogue"]
    assert "4 turns" in page["dialogue"]
    assert "scores.llm_judge\n4.250" in page["meta"] and "scores.reward\n-0.500" in page["meta"]
    assert "transform\nreversal@v1" in page["meta"]


def test_a_large_sample_is_read_by_chunks_and_only_verdicts_are_stored(browser, tmp_path):
    """1,300 rows: the texts sit in blocks the page parses when it shows them, moving across a
    block's edge shows the right row, and the browser's storage holds decisions, not texts."""
    run = write_audit(tmp_path / "run", {"big": [audit_row(i) for i in range(1, 1301)]})
    uri = write_page(run).as_uri()
    console, _ = open_page(browser, uri)
    assert severe(console) == []
    blocks = browser.execute_script(
        "return document.querySelectorAll('script[type=\"application/json\"]').length")
    assert blocks == 1 + 3  # ids and verdicts, then 3 blocks of rows
    press(browser, "g", "b")
    browser.execute_script("""for (var n = 0; n < 600; n += 1) {
        document.dispatchEvent(new KeyboardEvent('keydown', {key: 'j'})); }""")
    page = shown(browser)
    assert (page["row"], page["instruction"]) == ("r603", "Instruction 603")
    press(browser, "s")
    stored = browser.execute_script("""var out = {};
        for (var i = 0; i < localStorage.length; i += 1) {
          var k = localStorage.key(i); out[k] = localStorage.getItem(k); }
        return out;""")
    mine = {k: v for k, v in stored.items() if "Instruction" in v or "Output" in v}
    assert mine == {}, "row texts were kept in the browser's storage"
    decisions = {}
    for value in stored.values():
        decisions |= {i: v[0] for i, v in json.loads(value).items() if i.startswith("r")}
    assert {"r001": "good", "r002": "bad", "r603": "skip"}.items() <= decisions.items()
    console, _ = open_page(browser, uri)  # reload: resumed from the stored decisions
    assert shown(browser)["done"] == "3 of 1300 reviewed"


def test_served_a_large_sample_comes_by_blocks(browser, tmp_path):
    run = write_audit(tmp_path / "run", {"big": [audit_row(i) for i in range(1, 1301)]})
    server = ReviewServer(run)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        console, requests = open_page(browser, server.url, allow=LOCAL)
        wait_row(browser)
        assert severe(console) == [] and requests == [server.url, server.url + "rows/0"]
        browser.execute_script("""for (var n = 0; n < 600; n += 1) {
            document.dispatchEvent(new KeyboardEvent('keydown', {key: 'j'})); }""")
        deadline = time.monotonic() + 10
        while shown(browser)["row"] != "r601":
            assert time.monotonic() < deadline, shown(browser)
            time.sleep(0.05)
        assert shown(browser)["instruction"] == "Instruction 601"
        press(browser, "b")
        wait_saved(browser)
        assert logged(run) == [("r601", "bad", "")]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_verdicts_an_older_page_kept_in_the_browser_are_carried_over(browser, tmp_path):
    """An older page kept whole lines, texts too, in one storage key: the new page counts
    those verdicts, keeps them as decisions and drops the texts, losing none."""
    run = small_run(tmp_path / "run")
    uri = write_page(run).as_uri()
    store = "instructbeam-review:" + run_key(run, read_sample(run))
    open_page(browser, uri)
    old = {"r002": {"id": "r002", "stage": "instance_gen", "source": "self_instruct",
                    "verdict": "bad", "reason": "kept by the old page", "instruction":
                    "Instruction 2", "input": "input 2", "output": "Output 2",
                    "at": "2026-01-01T00:00:00.000Z"}}
    browser.execute_script("localStorage.setItem(arguments[0], arguments[1]);", store,
                           json.dumps(old))
    open_page(browser, uri)
    assert shown(browser)["done"] == "1 of 5 reviewed"
    stored = browser.execute_script(
        "return [localStorage.getItem(arguments[0]), localStorage.getItem(arguments[0] + ':0')]",
        store)
    assert stored[0] is None and "Output 2" not in stored[1]
    assert json.loads(stored[1])["r002"][:2] == ["bad", "kept by the old page"]


def test_an_empty_sample_is_said_not_a_script_error(browser, tmp_path):
    run = write_audit(tmp_path / "run", {"empty": []})
    console, _ = open_page(browser, write_page(run).as_uri())
    assert severe(console) == []
    assert browser.execute_script("return document.getElementById('pos').textContent") == (
        "no audit rows")
