"""EcomGPT-style rule filters: normalization and reason codes."""

from __future__ import annotations

import random

import pytest

from filters.rules import (
    RuleConfig,
    changed_fields,
    check_rules,
    judge,
    normalize_record,
    normalize_whitespace,
)
from schemas import InstructionRecord, Reason


def _rec(instruction: str = "Say hi.", inp: str = "", out: str = "Hi!") -> InstructionRecord:
    return InstructionRecord(id="x", content_hash="h", recipe="filter", stage="input", round=0,
                             instruction=instruction, input=inp, output=out)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("a  b\tc  ", "a b\tc"), ("a\r\nb\rc", "a\nb\nc"), ("a\n\n\n\nb", "a\n\nb"),
     ("line one \n   line two", "line one\n   line two"), ("x\u00a0y", "x y"), ("", ""),
     ("\n \n  First.  Second.\n\n", "  First. Second."),
     ("Say  it: `a   b` now  please", "Say it: `a   b` now please"),  # `code` spans kept
     # runs next to symbols stay: unfenced code and alignment
     ('echo "Usage: [Y|N]    | dry"\nx  = 1', 'echo "Usage: [Y|N]    | dry"\nx  = 1'),
     ("Roses  \nare red.   \n\nEnd.  ", "Roses  \nare red.\n\nEnd."),  # hard break kept
     ("> quoted   text\n>  - item   one", "> quoted text\n>  - item one")],
)
def test_normalize_whitespace(text: str, expected: str) -> None:
    assert normalize_whitespace(text) == expected


PYTHON = """Here is the fix:

```python
def walk(tree, depth=0):
    for node in tree:
        if node.children:\x20\x20\x20
            walk(node.children, depth + 1)
        else:
\t\t\tprint("  " * depth, node.name)


class Tree:
    pass
```"""

YAML = """services:
  web:
    image: "nginx:1.27"
    ports:
      - "8080:80"
    environment:
      GREETING: "hello    world"
"""

MAKEFILE = """CFLAGS = -O2 -Wall
all: app

app: main.o util.o
\t$(CC) $(CFLAGS) -o $@ $^

clean:
\trm -f *.o app
"""

NESTED_LIST = """Steps:

1. Install the tools
   - Python 3.11
     - with `venv   enabled`
   - Node 20
2. Run it:

       make all
       ./app --verbose

3. Done."""

FENCED_TRAILING = """A Markdown line break inside an example:

~~~markdown
Roses are red,\x20\x20
violets are blue.\x20\x20
~~~
"""


@pytest.mark.parametrize("text", [PYTHON, YAML, MAKEFILE, NESTED_LIST, FENCED_TRAILING],
                         ids=["python", "yaml", "makefile", "nested_list", "fenced_trailing"])
def test_code_and_structure_survive(text: str) -> None:
    """Real code and Markdown structure: every line's indentation stays; code stays whole."""
    out = normalize_whitespace(text)
    assert [_indent(x) for x in out.split("\n") if x.strip()] == \
        [_indent(x) for x in text.split("\n") if x.strip()]
    assert normalize_whitespace(out) == out


def test_fenced_and_indented_code_are_kept_byte_for_byte() -> None:
    out = normalize_whitespace(PYTHON)
    code = PYTHON[PYTHON.index("```python"):]
    assert code in out  # trailing spaces, the tabs and the two blank lines included
    assert normalize_whitespace(FENCED_TRAILING) == FENCED_TRAILING.rstrip("\n")
    assert "Roses are red,  \nviolets are blue.  \n" in normalize_whitespace(FENCED_TRAILING)
    out = normalize_whitespace(NESTED_LIST)
    assert "       make all\n       ./app --verbose" in out
    assert "`venv   enabled`" in out
    assert normalize_whitespace(MAKEFILE) == MAKEFILE.rstrip("\n")
    assert normalize_whitespace(YAML) == YAML.rstrip("\n")


def test_only_meaningless_whitespace_changes_around_code() -> None:
    text = ("Intro  with   spaces.   \r\n\r\n\r\n\r\n```sh\r\necho  'a   b'  \r\n```"
            "\r\n\r\n\r\nBye\u00a0now. ")
    assert normalize_whitespace(text) == (
        "Intro with spaces.\n\n```sh\necho  'a   b'  \n```\n\nBye now.")


def _indent(line: str) -> str:
    return line[:len(line) - len(line.lstrip(" \t"))]


_PIECES = ["word", "two  spaces", "tab\there", "nbsp\u00a0x", "`code   span`", "``", "~~~",
           "```", "```py", "- item", "1. step", "> quote", "  ", "\t", "\u00a0", "x = 1  # c",
           "trailing   ", "#", "**bold**", "|a  |b  |"]


def _random_text(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.randint(0, 14)):
        indent = rng.choice(["", " ", "  ", "   ", "    ", "      ", "\t", "\t\t", "  \t"])
        body = "".join(rng.choice(_PIECES) + rng.choice(["", " ", "  ", "   "])
                       for _ in range(rng.randint(0, 4)))
        lines.append(indent + body)
    return rng.choice(["\n", "\r\n", "\n", "\r"]).join(lines) + rng.choice(["", "\n", "\n\n\n"])


def test_property_idempotent_and_indentation_kept() -> None:
    """Seeded random texts: normalizing twice = once; non-blank lines keep their indentation."""
    rng = random.Random(12)
    for _ in range(3000):
        text = _random_text(rng)
        once = normalize_whitespace(text)
        assert normalize_whitespace(once) == once, repr(text)
        unified = text.replace("\r\n", "\n").replace("\r", "\n")
        before = [_indent(x) for x in unified.split("\n") if x.strip(" \t\u00a0")]
        after = [_indent(x) for x in once.split("\n") if x.strip(" \t\u00a0")]
        assert after == before, repr(text)


@pytest.mark.parametrize(
    ("record", "cfg", "reason"),
    [(_rec(), RuleConfig(), None),
     (_rec(instruction="  "), RuleConfig(), Reason.EMPTY_INSTRUCTION),
     (_rec(out=""), RuleConfig(), Reason.EMPTY_OUTPUT),
     (_rec(out=""), RuleConfig(require_output=False), None),
     (_rec(out="x" * 100), RuleConfig(max_chars=50), Reason.OVERLONG_INSTANCE),
     (_rec(inp="buy cheap Pills now"), RuleConfig(illegal_words=("cheap pills",)),
      Reason.ILLEGAL_WORD),
     (_rec(inp="spillsover"), RuleConfig(illegal_words=("pills",)), None),  # whole words
     ],
)
def test_rules(record, cfg, reason) -> None:
    verdict = check_rules(record, cfg)
    assert verdict.reason == reason and verdict.keep is (reason is None)


def test_overlong_score_is_the_size() -> None:
    verdict = check_rules(_rec(out="x" * 100), RuleConfig(max_chars=50))
    assert verdict.score == len("Say hi.") + 100


def test_judge_stores_normalized_text() -> None:
    record, verdict = judge(_rec(instruction="Say   hi. ", out="Hi!\n\n\n"), RuleConfig())
    assert (record.instruction, record.output) == ("Say hi.", "Hi!") and verdict.keep


def test_changed_fields_names_what_normalization_rewrote() -> None:
    before = _rec(instruction="Say  hi.", out="```\n  x  \n```")
    assert changed_fields(before, normalize_record(before)) == ("instruction",)
    assert changed_fields(before, before) == ()
