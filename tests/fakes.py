"""A scripted OpenAI-compatible server for pipeline tests, with optional fault injection.

It answers the Self-Instruct prompts deterministically from (prompt, seed), so the real
pipeline (HTTP client, retries, cache, Beam) runs against it exactly as against vLLM. Fault
injection is bounded in count and decided by a seeded RNG, and every injected fault is
counted so tests can check that each one shows up as a retry or a failed record.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERBS = ["Explain", "Describe", "Summarize", "Compare", "List", "Suggest", "Outline",
         "Evaluate", "Classify", "Translate", "Rewrite", "Estimate", "Identify", "Predict"]
TOPICS = ["the water cycle", "compound interest", "a healthy breakfast", "renewable energy",
          "the French revolution", "binary search", "photosynthesis", "remote work",
          "electric cars", "a job interview", "volcano formation", "the stock market",
          "sleep hygiene", "climate change", "machine learning", "a birthday party",
          "public transport", "ocean tides", "vaccines", "urban gardening", "chess openings",
          "the immune system", "inflation", "solar panels", "time management"]
AUDIENCES = ["for a ten year old", "in two sentences", "for a busy manager",
             "using a simple analogy", "with three concrete examples", "in plain English",
             "as a short poem", "for a beginner programmer", "in a formal tone"]
BAD = ["Draw a map of the city center and its parks.",  # blacklisted keyword
       "Write a program that prints the first ten primes.",  # forbidden prefix
       "Sort it.",  # too short
       "- list three fruits that are red"]  # leading punctuation


@dataclass
class FaultPlan:
    """Per-request fault rates; at most `max_faults` faults are injected in total."""

    p_500: float = 0.0
    p_429: float = 0.0
    p_delay: float = 0.0
    p_drop: float = 0.0
    p_garbled: float = 0.0
    delay_s: float = 3.0
    max_faults: int = 0
    seed: int = 7


@dataclass
class ServerStats:
    requests: int = 0
    answered: int = 0
    faults: Counter = field(default_factory=Counter)
    answered_keys: list = field(default_factory=list)  # (sha256(prompt), seed) per answer
    unauthorized: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def total_faults(self) -> int:
        return sum(self.faults.values())


def _rng(*parts: object) -> random.Random:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()
    return random.Random(int(digest[:12], 16))


def instruction_answer(prompt: str, seed: int) -> tuple[str, str]:
    rng = _rng(prompt, seed)
    items = []
    for _ in range(rng.randint(2, 5)):
        roll = rng.random()
        if roll < 0.12:
            items.append(rng.choice(BAD))
        elif roll < 0.2:
            # repeat an in-context instruction: must be rejected as not novel
            shown = re.findall(r"^\d+\. (.+)$", prompt, flags=re.M)
            items.append(rng.choice(shown) if shown else "Explain gravity to a child please.")
        else:
            items.append(f"{rng.choice(VERBS)} {rng.choice(TOPICS)} {rng.choice(AUDIENCES)}.")
    n = int(re.findall(r"(\d+)\.$", prompt)[0]) if re.search(r"(\d+)\.$", prompt) else 9
    text = " " + items[0] + "".join(f"\n{n + i}. {item}" for i, item in enumerate(items[1:], 1))
    finish = "length" if rng.random() < 0.08 else "stop"
    return text, finish


def clf_answer(prompt: str) -> str:
    task = prompt.rsplit("Task:", 1)[-1]
    return " Yes" if int(hashlib.sha256(task.encode()).hexdigest(), 16) % 3 == 0 else " No"


def instance_answer(prompt: str, seed: int) -> tuple[str, str]:
    rng = _rng(prompt, seed, "instances")
    if "Class label:" in prompt.rsplit("Task:", 1)[-1] or _is_output_first(prompt):
        labels = rng.sample(["Positive", "Negative", "Neutral", "Yes", "No"], 2)
        text = "".join(f"Class label: {lab}\nSentence: An example sentence about {lab.lower()} "
                       f"number {rng.randint(1, 99)}.\n" for lab in labels)
        return text, "stop"
    roll = rng.random()
    if roll < 0.1:
        return "Example 1\nInput: same text\nOutput: one\nExample 2\nInput: same text\n" \
               "Output: two\n", "stop"  # conflicting outputs: the task's instances drop
    if roll < 0.15:
        return "I am not sure what to do here.", "stop"  # unparsable: no instances
    count = rng.randint(1, 3)
    text = "".join(f"Example {i}\nInput: case {rng.randint(1, 999)}\nOutput: answer "
                   f"{rng.randint(1, 999)}\n" for i in range(1, count + 1))
    return text, "length" if rng.random() < 0.1 else "stop"


def _is_output_first(prompt: str) -> bool:
    return prompt.count("Class label:") >= 3


def is_instruction_prompt(prompt: str) -> bool:
    """A Self-Instruct instruction prompt (not classification, not instances)."""
    return not (prompt.rstrip().endswith("Is it classification?")
                or (prompt.endswith("\n") and "Task:" in prompt))


def scripted_completion(prompt: str, seed: int) -> tuple[str, str]:
    if prompt.rstrip().endswith("Is it classification?"):
        return clf_answer(prompt), "stop"
    if prompt.endswith("\n") and "Task:" in prompt:
        return instance_answer(prompt, seed)
    return instruction_answer(prompt, seed)


class ScriptedServer:
    def __init__(self, faults: FaultPlan | None = None, model: str = "scripted", *,
                 api_key: str | None = None, hold_after: int | None = None,
                 answer_delay_s: float = 0.0, outage: range | None = None,
                 outage_of: Callable[[str], bool] = lambda prompt: True) -> None:
        """`hold_after=K`: answer K requests, then hold every later one until `stop()`
        (lets a test kill a client at a known point). `answer_delay_s`: every answer takes
        that long (so a test can see which requests were in flight together); `timeline`
        records ("arrive" | "answer", time.monotonic(), prompt) per request. `outage`: the
        requests (numbered from 0 in arrival order, retries included) answered 503; only
        the requests whose prompt `outage_of` accepts are numbered and may meet it."""
        self.outage = outage
        self.outage_of = outage_of
        self._posts = 0
        self.answer_delay_s = answer_delay_s
        self.timeline: list[tuple[str, float, str]] = []
        self.faults = faults or FaultPlan()
        self.model = model
        self.api_key = api_key
        self.hold_after = hold_after
        self.holding = threading.Event()
        self._release = threading.Event()
        self.stats = ServerStats()
        self._fault_rng = random.Random(self.faults.seed)
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return

            def do_GET(self) -> None:
                self._send(200, {"data": [{"id": server.model}]})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                if server.api_key and self.headers.get("Authorization") != \
                        f"Bearer {server.api_key}":
                    with server.stats.lock:
                        server.stats.unauthorized += 1
                    self._send(401, {"error": {"message": "bad key"}})
                    return
                prompt = body.get("prompt") or body["messages"][-1]["content"]
                with server.stats.lock:
                    server.timeline.append(("arrive", time.monotonic(), prompt))
                    counted = server.outage_of(prompt)
                    number, server._posts = server._posts, server._posts + counted
                if server.outage is not None and counted and number in server.outage:
                    with server.stats.lock:
                        server.stats.faults["outage"] += 1
                    self._send(503, {"error": {"message": "the server is down"}})
                    return
                time.sleep(server.answer_delay_s)
                if server._must_hold():
                    server.holding.set()
                    server._release.wait()
                    return
                fault = server._pick_fault()
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if fault == "delay":
                    time.sleep(server.faults.delay_s)
                if fault in ("500", "429"):
                    self._send(int(fault), {"error": {"message": f"injected {fault}"}})
                    return
                if fault == "garbled":
                    self._send_raw(200, b'{"choices": [{"text": "trunc')
                    return
                # A delayed answer arrives after the client gave up: not a completed call.
                self._send(200, server._answer(body, completed=fault != "delay"))
                with server.stats.lock:
                    server.timeline.append(("answer", time.monotonic(), prompt))

            def _send(self, code: int, payload: dict) -> None:
                self._send_raw(code, json.dumps(payload).encode())

            def _send_raw(self, code: int, raw: bytes) -> None:
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def _must_hold(self) -> bool:
        with self.stats.lock:
            return self.hold_after is not None and self.stats.answered >= self.hold_after

    def stop(self) -> None:
        self._release.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def _pick_fault(self) -> str | None:
        plan = self.faults
        with self.stats.lock:
            self.stats.requests += 1
            if self.stats.total_faults >= plan.max_faults:
                return None
            roll = self._fault_rng.random()
            for name, p in (("500", plan.p_500), ("429", plan.p_429), ("delay", plan.p_delay),
                            ("drop", plan.p_drop), ("garbled", plan.p_garbled)):
                if roll < p:
                    self.stats.faults[name] += 1
                    return name
                roll -= p
            return None

    def _answer(self, body: dict, completed: bool = True) -> dict:
        prompt = body.get("prompt") or body["messages"][-1]["content"]
        seed = int(body.get("seed") or 0)
        text, finish = scripted_completion(prompt, seed)
        with self.stats.lock:
            self.stats.answered += completed
            if completed:
                self.stats.answered_keys.append(
                    (hashlib.sha256(prompt.encode()).hexdigest(), seed))
        return {
            "id": "cmpl-scripted", "object": "text_completion", "model": body.get("model"),
            "choices": [{"index": 0, "text": text, "finish_reason": finish}],
            "usage": {"prompt_tokens": len(prompt.split()),
                      "completion_tokens": len(text.split())},
        }
