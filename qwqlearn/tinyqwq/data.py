"""TinyQwQ's task: problems, exactly checkable answers, and QwQ-style thinking traces.

Two families of problems, both trivially checkable by a computer and both
famously awkward for language models:

    add      What is 482 + 937?                (3+3 digits; 4+4 is the harder split)
    count    How many r's are in strawberry?   (the "strawberry problem")

    >>> p = make_addition(482, 937)
    >>> p.question, p.answer
    ('What is 482 + 937?', 1419)
    >>> print(completion(p, variant="reflect", slip=True, rng=random.Random(0)))
    Add the columns, starting from the ones:
    ones 2+7=9, so 9
    tens 8+3=12. Wait, that is wrong: 8+3=11, so 19
    hundreds 4+9+1=14, so 1419
    Check: 2+7 ends in 9, and so does 1419.
    </think>
    <BLANKLINE>
    The answer is 1419.
    >>> print(completion(make_count("strawberry", "r"), variant="think"))
    Count the r's, token by token:
     st: s t
    ra: r=1 a
    w: w
    b: b
    er: e r=2
    ry: r=3 y
    Check: the count went up 3 times, so 3 r's.
    </think>
    <BLANKLINE>
    The answer is 3.

Every training example is a ChatML conversation: the prompt is exactly what
inference uses (`format_chat(..., template="qwq-32b")`, which ends in
`<|im_start|>assistant\\n<think>\\n`), and the completion is the rest of the
assistant turn:

    direct    </think>\\n\\nThe answer is 1419.
    think     <trace>\\n</think>\\n\\nThe answer is 1419.
    reflect   the same trace, but in half of the examples one step
              is deliberately wrong and the next words are "Wait, that is wrong:"
              followed by the corrected step (retry data, as in Physics of
              Language Models 2.2; the wrong tokens are trained on too).

The final answer is always the sentence `The answer is N.` so a regular
expression can read it back (`extract_answer`).

Held-out problems never appear in training: every addition pair and every word
goes to "train" or "test" by a fixed hash (`split_of`), not by a random draw, so
the split is the same on every machine and in every run.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

FAMILIES = ("add3", "add4", "count")
TEST_PERCENT = 10          # share of addition pairs / words kept for evaluation only
SLIP_RATE = 0.5            # share of "reflect" training examples with one deliberate slip
ANSWER_RE = re.compile(r"The answer is (-?\d+)\.")
MAX_DIGITS = 4             # the longest operand the model was trained on
MAX_WORD = 14              # the longest word it was trained on


# -- the problem -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Problem:
    """One question with its true answer. a, b for additions; word, letter for counting."""
    family: str            # "add3", "add4", "add" (any lengths) or "count"
    question: str
    answer: int
    a: int | None = None
    b: int | None = None
    word: str | None = None
    letter: str | None = None


def _hash_percent(key: str) -> int:
    """A stable number 0..99 for a key (Python's hash() changes between runs; sha256 does not)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") % 100


def split_of_pair(a: int, b: int) -> str:
    """'test' or 'train'. a + b and b + a always land together, so no held-out sum leaks by symmetry."""
    lo, hi = sorted((a, b))
    return "test" if _hash_percent(f"add:{lo}+{hi}") < TEST_PERCENT else "train"


# Words the model is tested on even though the hash would put them in training:
# the famous one has to be a genuinely unseen word.
ALWAYS_TEST_WORDS = {"strawberry", "mississippi", "raspberry"}


def split_of_word(word: str) -> str:
    if word in ALWAYS_TEST_WORDS:
        return "test"
    return "test" if _hash_percent(f"word:{word}") < 2 * TEST_PERCENT else "train"


# -- words: a small built-in English list plus pronounceable pseudo-words ---------------------

REAL_WORDS = """
strawberry raspberry blueberry banana apple orange lemon cherry grape melon peach pear plum
mango papaya coconut tomato potato carrot pepper onion garlic butter cheese bread coffee
mississippi tennessee alabama committee bookkeeper balloon letter little pepper mirror
address possess success assess bottle kitten puppy rabbit hippo giraffe zebra monkey
elephant alligator crocodile penguin parrot sparrow falcon eagle turtle dolphin octopus
computer keyboard monitor printer program python pytorch tensor matrix vector token model
attention transformer language reasoning thinking answer question number letter alphabet
garden window kitchen bedroom school teacher student paper pencil rubber eraser scissors
summer winter spring autumn morning evening tomorrow yesterday between different
beautiful wonderful terrible possible difficult excellent necessary occasion embarrass
accommodate millennium parallel cinnamon broccoli spaghetti zucchini vanilla chocolate
""".split()

# "" lets a syllable, and so a word, start with a vowel: without it no made-up
# word would begin with a, e, i, o or y, and those first tokens would stay untrained.
_ONSETS = ["", "", "", "b", "br", "c", "ch", "cr", "d", "dr", "f", "fl", "g", "gl", "gr", "h", "j", "k",
           "l", "m", "n", "p", "pl", "pr", "qu", "r", "s", "sc", "sh", "sk", "sl", "sp", "st", "str", "t",
           "th", "tr", "v", "w", "wh", "y", "z"]
_VOWELS = ["a", "e", "i", "o", "u", "a", "e", "i", "o", "ee", "oo", "ai", "ou", "y"]
_CODAS = ["", "", "", "n", "r", "s", "t", "l", "m", "ck", "ng", "rr", "ss", "x", "p"]


def pseudo_word(rng: random.Random) -> str:
    """A pronounceable made-up word of 2-4 syllables, e.g. 'brostamee'."""
    while True:
        n = rng.choice([2, 2, 3, 3, 4])
        word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(n))
        if 3 <= len(word) <= MAX_WORD:
            return word


def random_word(rng: random.Random, split: str) -> str:
    """A word from the given split: a real word 30% of the time, else a pseudo-word."""
    while True:
        word = rng.choice(REAL_WORDS) if rng.random() < 0.3 else pseudo_word(rng)
        if split_of_word(word) == split:
            return word


# -- questions: canonical wording plus a few paraphrases ---------------------------------------

ADD_TEMPLATES = ["What is {a} + {b}?", "What is {a} + {b}?", "What is {a} + {b}?",
                 "Compute {a} + {b}.", "What is the sum of {a} and {b}?", "Add {a} and {b}."]
COUNT_TEMPLATES = ["How many {c}'s are in {w}?", "How many {c}'s are in {w}?", "How many {c}'s are in {w}?",
                   "How many times does the letter {c} appear in {w}?", "Count the letter {c} in {w}."]

_ADD_PATTERNS = [re.compile(p) for p in (
    r"^\s*what is (\d+) ?\+ ?(\d+)\s*\??\s*$", r"^\s*compute (\d+) ?\+ ?(\d+)\s*[.?]?\s*$",
    r"^\s*what is the sum of (\d+) and (\d+)\s*\??\s*$", r"^\s*add (\d+) and (\d+)\s*\.?\s*$",
    r"^\s*(\d+) ?\+ ?(\d+)\s*(?:=\s*)?\??\s*$")]
_COUNT_PATTERNS = [re.compile(p) for p in (
    r"^\s*how many ([a-z])'?s are (?:there )?in (?:the word )?\"?([a-z]+)\"?\s*\??\s*$",
    r"^\s*how many times does the letter ([a-z]) appear in \"?([a-z]+)\"?\s*\??\s*$",
    r"^\s*count the letter ([a-z]) in \"?([a-z]+)\"?\s*[.?]?\s*$")]


def make_addition(a: int, b: int, family: str = "add", template: str = ADD_TEMPLATES[0]) -> Problem:
    return Problem(family, template.format(a=a, b=b), a + b, a=a, b=b)


def make_count(word: str, letter: str, template: str = COUNT_TEMPLATES[0]) -> Problem:
    return Problem("count", template.format(c=letter, w=word), word.count(letter), word=word, letter=letter)


def parse_question(question: str) -> Problem | None:
    """The Problem a question asks, if it is in TinyQwQ's task (any wording above); else None."""
    q = question.strip().lower()
    for pat in _ADD_PATTERNS:
        m = pat.match(q)
        if m:
            a, b = int(m.group(1)), int(m.group(2))
            n = max(len(str(a)), len(str(b)))
            family = "add3" if n == 3 else "add4" if n == 4 else "add"
            return make_addition(a, b, family)
    for pat in _COUNT_PATTERNS:
        m = pat.match(q)
        if m:
            return make_count(m.group(2), m.group(1))
    return None


# -- sampling problems ---------------------------------------------------------------------

def _number(rng: random.Random, digits: int) -> int:
    return rng.randint(10 ** (digits - 1) if digits > 1 else 0, 10 ** digits - 1)


def _sample(family: str, rng: random.Random, split: str, paraphrase: bool) -> Problem:
    if family in ("add3", "add4", "add"):
        while True:
            if family == "add" and rng.random() < 0.3:  # any operand lengths up to MAX_DIGITS
                na, nb = (rng.randint(1, MAX_DIGITS) for _ in range(2))
            elif family == "add":  # mostly the evaluated shapes, 3+3 and 4+4 digits
                na = nb = rng.choice([3, 3, 4])
            else:
                na = nb = int(family[-1])
            a, b = _number(rng, na), _number(rng, nb)
            if split_of_pair(a, b) == split:
                template = rng.choice(ADD_TEMPLATES) if paraphrase else ADD_TEMPLATES[0]
                return make_addition(a, b, family, template)
    if family == "count":
        word = random_word(rng, split)
        letter = _pick_letter(word, rng)
        template = rng.choice(COUNT_TEMPLATES) if paraphrase else COUNT_TEMPLATES[0]
        return make_count(word, letter, template)
    raise ValueError(f"unknown family {family!r}; choose one of {FAMILIES + ('add',)}")


def _pick_letter(word: str, rng: random.Random) -> str:
    """Mostly a letter that occurs more than once (the hard, interesting case), else
    any letter of the word, sometimes one that is absent (answer 0)."""
    repeated = sorted({c for c in word if word.count(c) > 1})
    u = rng.random()
    if repeated and u < 0.5:
        return rng.choice(repeated)
    if u < 0.85:
        return rng.choice(word)
    return rng.choice("abcdefghijklmnopqrstuvwxyz")


def problems(family: str, n: int, seed: int = 0, split: str = "test",
             paraphrase: bool = False) -> Iterator[Problem]:
    """n problems of a family from a split, reproducible from the seed.

    split="test" is held out: its pairs and words never occur in training data.
    Test sets use the canonical wording unless paraphrase=True.
    """
    if split not in ("train", "test"):
        raise ValueError("split must be 'train' or 'test'")
    rng = random.Random(f"{family}:{split}:{seed}")
    for _ in range(n):
        yield _sample(family, rng, split, paraphrase)


# -- traces ----------------------------------------------------------------------------------
# A trace is a list of steps, one per line. Each helper returns the lines; a slip
# is one wrong step, "Wait, that is wrong:" and the corrected step, all kept in the loss.
#
# The traces are shaped for a model of a million parameters: every number it
# writes depends on a few tokens it can find by a simple look-up (the digits
# of one column, the line above, the token it is spelling), never on a long
# chain of positions it would have to count.

def _digits(n: int, width: int) -> list[int]:
    """Digits of n from the right (ones first), padded with zeros to width."""
    return [(n // 10 ** i) % 10 for i in range(width)]


def _wrong_value(true: int, rng: random.Random, lo: int = 0) -> int:
    """A plausible wrong value: off by one or two, never a prefix of the true value's digits."""
    while True:
        wrong = true + rng.choice([-2, -1, 1, 1, 2])
        if wrong >= lo and wrong != true and not str(true).startswith(str(wrong)):
            return wrong


PLACES = ["ones", "tens", "hundreds", "thousands"]


def addition_lines(a: int, b: int, slip_at: int | None = None, wrong: int | None = None) -> list[str]:
    """Column addition, ones first, one line per column with the digits found so far:

        Add the columns, starting from the ones:
        ones 2+7=9, so 9
        tens 8+3=11, so 19
        hundreds 4+9+1=14, so 1419
        Check: 2+7 ends in 9, and so does 1419.

    A carry shows up as "+1" in the next column. "so" puts the column's digit (the
    sum's last) in front of the line above's, and the last column writes its
    whole sum, so the answer is a copy of the last line, not a read-back of
    digits scattered over the trace. With slip_at=i, column i first gets the
    wrong sum, then "Wait, that is wrong:" and the correct step.
    """
    width = max(len(str(a)), len(str(b)))
    da, db = _digits(a, width), _digits(b, width)
    # No copy of the numbers first: starting from the ones means every digit the
    # model needs sits at a fixed distance before the "+" or the "?" of the question.
    lines = ["Add the columns, starting from the ones:"]
    carry, so_far = 0, ""
    for i in range(width):
        s = da[i] + db[i] + carry
        so_far = (str(s) if i == width - 1 else str(s % 10)) + so_far
        step = f"{da[i]}+{db[i]}" + ("+1" if carry else "") + "="
        good = f"{step}{s}, so {so_far}"
        if i == slip_at:
            lines.append(f"{PLACES[i]} {step}{wrong}. Wait, that is wrong: {good}")
        else:
            lines.append(f"{PLACES[i]} {good}")
        carry = s // 10
    lines.append(f"Check: {da[0]}+{db[0]} ends in {(da[0] + db[0]) % 10}, and so does {a + b}.")
    return lines


def word_pieces(word: str, tokenizer=None) -> list[str]:
    """The tokens the model sees for a word in a question, as text: 'strawberry' ->
    [' st', 'ra', 'w', 'b', 'er', 'ry'] with TinyQwQ's tokenizer (the shipped one by default)."""
    tokenizer = tokenizer or _shipped_tokenizer()
    return [tokenizer.decode([i]) for i in tokenizer.encode(" " + word)]


@lru_cache(maxsize=1)
def _shipped_tokenizer():
    from qwqlearn.tokenizer import Tokenizer

    return Tokenizer.from_pretrained(Path(__file__).parent / "checkpoint")


def count_lines(word: str, letter: str, pieces: list[str] | None = None,
                slip_at: int | None = None, wrong: int | None = None) -> list[str]:
    """Count a letter token by token: one line per token of the word, spelled,
    with the running count after each match:

        Count the r's, token by token:
         st: s t
        ra: r=1 a
        w: w
        b: b
        er: e r=2
        ry: r=3 y
        Check: the count went up 3 times, so 3 r's.

    This is the strawberry problem made explicit: the model never sees the
    letters of "strawberry", only its tokens, so it first writes down the token
    it is on (a copy of the question's token) and then spells that one token.
    With slip_at=i, the i-th letter first gets the wrong count `wrong`, then
    "Wait, that is wrong:" and the right one.
    """
    pieces = pieces if pieces is not None else word_pieces(word)
    if "".join(pieces).strip() != word:
        raise ValueError(f"pieces {pieces} do not spell {word!r}")
    # The word itself is not copied out first: one copy fewer to get wrong. Each
    # line copies the next token straight from the question.
    lines, count, i = [f"Count the {letter}'s, token by token:"], 0, 0
    for piece in pieces:
        items = []
        for ch in piece.strip():
            hit = ch == letter
            count += hit
            item = f"{ch}={count}" if hit else ch
            if i == slip_at:
                fix = item if hit else f"{ch} is not {letter}, so {ch}"
                item = f"{ch}={wrong}. Wait, that is wrong: {fix}"
            items.append(item)
            i += 1
        lines.append(f"{piece}: " + " ".join(items))
    went_up = f"went up {count} time{'s' if count != 1 else ''}" if count else "never went up"
    lines.append(f"Check: the count {went_up}, so {count} {letter}'s.")
    return lines


def _count_slip(word: str, letter: str, i: int, rng: random.Random) -> int:
    """A wrong running count at letter i: off by one at a match, a match invented elsewhere."""
    count = word[: i + 1].count(letter)
    if word[i] != letter:
        return count + 1
    return count + 1 if count == 1 or rng.random() < 0.5 else count - 1


def trace_lines(p: Problem, rng: random.Random | None = None, slip: bool = False,
                tokenizer=None) -> list[str]:
    """The thinking steps for a problem; with slip=True, one random step is wrong and then corrected.

    tokenizer splits a counted word into the pieces the model sees (the shipped one by default)."""
    rng = rng or random.Random(0)
    if p.word is not None:
        pieces = word_pieces(p.word, tokenizer)
        if not slip:
            return count_lines(p.word, p.letter, pieces)
        i = rng.randrange(len(p.word))
        return count_lines(p.word, p.letter, pieces, slip_at=i, wrong=_count_slip(p.word, p.letter, i, rng))
    if not slip:
        return addition_lines(p.a, p.b)
    width = max(len(str(p.a)), len(str(p.b)))
    i = rng.randrange(width)
    true = _digits(p.a, width)[i] + _digits(p.b, width)[i] + _carry_into(p.a, p.b, i)
    return addition_lines(p.a, p.b, slip_at=i, wrong=_wrong_value(true, rng))


def _carry_into(a: int, b: int, column: int) -> int:
    """The carry that arrives at a column (0 for the ones)."""
    m = 10 ** column
    return 1 if (a % m) + (b % m) >= m else 0


def final_answer(p: Problem) -> str:
    return f"The answer is {p.answer}."


def completion(p: Problem, variant: str = "reflect", rng: random.Random | None = None,
               slip: bool | None = None, tokenizer=None) -> str:
    """The assistant text after the prompt's `<think>\\n`, without the closing <|im_end|>.

    variant: "direct" (no trace), "think" (a clean trace), "reflect" (a trace that,
    with probability SLIP_RATE or when slip=True, holds one slip and its repair).
    """
    rng = rng or random.Random(0)
    if variant == "direct":
        return "</think>\n\n" + final_answer(p)
    if variant not in ("think", "reflect"):
        raise ValueError(f"unknown variant {variant!r}; choose direct, think or reflect")
    if slip is None:
        slip = variant == "reflect" and rng.random() < SLIP_RATE
    return "\n".join(trace_lines(p, rng, slip, tokenizer)) + "\n</think>\n\n" + final_answer(p)


# -- prompts and scoring ---------------------------------------------------------------------

def prompt_text(question: str) -> str:
    """The ChatML prompt, exactly as inference builds it (QwQ-32B's template)."""
    from qwqlearn.chat import format_chat

    return format_chat([{"role": "user", "content": question}], template="qwq-32b",
                       add_generation_prompt=True)


def extract_answer(text: str) -> int | None:
    """The number in the last `The answer is N.`, or None if the text never says it."""
    found = ANSWER_RE.findall(text)
    return int(found[-1]) if found else None


def check(problem: Problem, text: str) -> bool:
    """True when the completion's final answer equals the problem's true answer."""
    return extract_answer(text) == problem.answer


# -- error injection: a trace prefix with a wrong step, for the repair probe -----------------

def injected_prefix(p: Problem, rng: random.Random, tokenizer=None) -> str:
    """The start of a clean trace, cut right after a deliberately wrong number.

    The model continues from here; a model that learned to reflect says "Wait"
    and repairs the step. Slips are placed after the first step so that there is
    some correct reasoning to build on.
    """
    if p.word is not None:
        i = rng.randrange(1, len(p.word)) if len(p.word) > 1 else 0
        wrong = _count_slip(p.word, p.letter, i, rng)
        lines = count_lines(p.word, p.letter, word_pieces(p.word, tokenizer), slip_at=i, wrong=wrong)
        marker = f"={wrong}. Wait"
    else:
        width = max(len(str(p.a)), len(str(p.b)))
        i = rng.randrange(1, width) if width > 1 else 0
        true = _digits(p.a, width)[i] + _digits(p.b, width)[i] + _carry_into(p.a, p.b, i)
        lines = addition_lines(p.a, p.b, slip_at=i, wrong=_wrong_value(true, rng))
        marker = ". Wait"
    text = "\n".join(lines)
    return text[: text.index(marker) + len(marker) - len(". Wait")]
