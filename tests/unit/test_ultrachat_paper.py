"""UltraChat as the paper describes it (issue 24): what was silently wrong, and the paper's
steps that were missing. Each test failed on the code before the fix."""

from __future__ import annotations

import random
import re

from filters.dialogue_stats import mtld, words

_OLD_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")  # the ASCII tokenizer MTLD is usually run with


def test_words_are_unicode_words():
    assert words("Café naïve") == ["café", "naïve"]
    assert words("nai\u0308ve") == ["naïve"]  # combining diaeresis: the same word
    assert words("Привет, мир") == ["привет", "мир"]
    chinese = words("今天天气很好，我们去公园散步吧")
    assert len(chinese) == 14 and mtld(chinese) > 0


def test_words_match_the_ascii_tokenizer_on_english():
    rng = random.Random(7)
    alphabet = "abcdefghij XYZ 0129 ' , . - _ \n don't it's rock'n'roll 90's x'1"
    for _ in range(500):
        text = "".join(rng.choice(alphabet.split(" ")) + rng.choice(" '.,_-")
                       for _ in range(rng.randint(0, 40)))
        assert words(text) == _OLD_WORD.findall(text.lower()), text
