"""Reasoning with a thinking model: think traces, budget forcing, self-consistency, loop and
language-mix detectors, answer extraction. Chapter 09's reference module.

    >>> from qwqlearn import tinyqwq
    >>> from qwqlearn.reasoning import *
    >>> model, tok = tinyqwq.load()
    >>> reply = ask(model, tok, "What is 482 + 937?", on_text=TerminalPrinter())  # streams, thinking dimmed
    >>> reply.answer, reply.final_answer, reply.stopped_because
    ('The answer is 1419.', '1419', 'eos')
    >>> ask(model, tok, "What is 482 + 937?", max_thinking_tokens=20).stopped_because  # s1: cut, force </think>
    'budget'
    >>> ask(model, tok, "What is 482 + 937?", wait=2).waits_added    # s1: replace </think> by "Wait", twice
    2
    >>> result = vote(model, tok, "How many r's are in strawberry?", n=8, sampling=Sampling(seed=0))
    >>> result.answer, result.votes                                  # e.g. ('3', Counter({'3': 7, '2': 1}))
    >>> ask(model, tok, "What is 1 + 1?", detectors=[TailCycle()]).stopped_because  # 'loop: ...' if it loops
    >>> language_mix("Add the ones. Then the tens. 所以答案是一千四百一十九。").flagged[0].text
    '所以答案是一千四百一十九。'
    >>> chain((model, tok), boxed_extractor, "What is 482 + 937?").extracted   # reasoner -> extractor
    '\\boxed{1419}'

The pieces, top to bottom:

    prompt ─► [thinking ... </think>] ─► answer ─► extract_answer ─► answers_match
                 │   budget forcing: at N thinking tokens append "</think>\\n\\n"
                 │   wait forcing:   the model's </think> is swapped for "Wait" (K times)
                 └── detectors watch every token (n-gram repetition, exact tail cycle)

`ask` runs its own decode loop on a static KV cache (model.forward with a cache,
and `generate.process_logits` to sample): budget forcing needs to put tokens into
the sequence mid-stream, which a plain `generate` call cannot do. `vote` samples n
traces in one batch (the prompts are identical, so rows have equal length).

Why `math-verify` is optional: numbers ("1,419" == "1419.0" == "1419") are
compared here exactly with Fraction, which covers TinyQwQ and most benchmark
answers. For everything else (x = 3 vs 3, \\sqrt{4} vs 2, sets, intervals)
`answers_match` asks Hugging Face's `math-verify` when it is installed: it is
pure Python (sympy + the ANTLR runtime), works offline, and imports in about half
a second, so it is loaded only on first use. Without it, non-numeric answers must
match as strings.
"""

from __future__ import annotations

import codecs
import html
import re
import sys
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction

import regex
import torch

from qwqlearn.chat import format_chat
from qwqlearn.generate import process_logits, stream

__all__ = [
    "WAIT", "THINK_FORMATS", "GREEDY", "ThinkFormat", "Sampling", "Reply", "Vote", "Chained", "Detection",
    "ask", "vote", "sample_traces", "chain", "boxed_extractor", "build_prompt", "parse_response",
    "extract_boxed", "extract_answer", "as_number", "canonical", "answers_match", "check_answer",
    "majority_vote", "NgramRepetition", "TailCycle", "default_detectors", "find_loop",
    "language_mix", "script_shares", "LanguageReport", "Sentence",
    "TerminalPrinter", "NotebookPrinter", "printer",
]

WAIT = "Wait"  # what s1 appends when it refuses to let the model stop thinking


# -- how a template marks thinking ------------------------------------------------------------

@dataclass(frozen=True)
class ThinkFormat:
    """end: the text that ends the thinking; close: what budget forcing appends to end it;
    skip: what think=False appends to the prompt (an empty thinking block)."""
    end: str
    close: str
    skip: str


THINK_FORMATS = {
    "qwq-32b": ThinkFormat(end="</think>", close="</think>\n\n", skip="</think>\n\n"),
    # QwQ-32B-Preview has no tags: it thinks in the open and ends with a "**Final Answer**" section.
    "qwq-32b-preview": ThinkFormat(end="Final Answer", close="\n\n**Final Answer**\n\n", skip="**Final Answer**\n\n"),
    "qwen2.5": None,  # no thinking phase: everything is answer
}


@dataclass(frozen=True)
class Sampling:
    """Sampling settings; the defaults are QwQ-32B's recommendation (its card warns against greedy)."""
    temperature: float = 0.6
    top_p: float = 0.95
    top_k: int = 0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    seed: int | None = None


GREEDY = Sampling(temperature=0.0, top_p=1.0)


# -- results --------------------------------------------------------------------------------

@dataclass
class Reply:
    """One completion, split into its thinking and its answer.

    stopped_because: "eos" (the model ended its turn), "budget" (it ended its turn, but the
    thinking was cut by max_thinking_tokens), "max_tokens" (a token limit or the context
    ran out), or "loop: <what the detector saw>".
    tokens_used counts every token after the prompt, forced ones included.
    """
    text: str
    thinking: str
    answer: str
    tokens_used: int
    thinking_tokens: int
    stopped_because: str
    waits_added: int = 0
    loop: Detection | None = None
    seconds: float = 0.0

    @property
    def final_answer(self) -> str | None:
        """The extracted result: \\boxed{}, "Final Answer:", or "The answer is ..."."""
        return extract_answer(self.answer) or extract_answer(self.text)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens_used / self.seconds if self.seconds else 0.0


@dataclass
class Vote:
    """Self-consistency: the majority answer, the vote count per answer, and every trace."""
    answer: str | None
    votes: Counter
    traces: list[Reply]

    @property
    def agreement(self) -> float:
        """Share of all traces that voted for the winner."""
        return self.votes[self.answer] / len(self.traces) if self.traces and self.answer is not None else 0.0


# -- prompts and parsing --------------------------------------------------------------------

def build_prompt(question: str | list[dict], template: str = "qwq-32b", think: bool = True) -> str:
    """A question (or a list of chat messages) -> the prompt string, thinking open or skipped."""
    messages = [{"role": "user", "content": question}] if isinstance(question, str) else question
    prompt = format_chat(messages, template=template)
    fmt = THINK_FORMATS[template]
    return prompt + fmt.skip if fmt is not None and not think else prompt


# A "Final Answer" heading at the start of a line ("**Final Answer**", "### Final Answer:"), not
# "...so the final answer is" inside a sentence.
FINAL_ANSWER_RE = re.compile(r"^[ \t#]*\**Final Answer\**[ \t]*:?[ \t]*\**", re.IGNORECASE | re.MULTILINE)


def parse_response(text: str, thinking_open: bool = False) -> tuple[str, str]:
    """(thinking, answer) of a finished completion, both stripped.

    Tags: everything before the first </think> is thinking (a leading <think> is dropped).
    QwQ-Preview style: everything before the last "Final Answer" heading is thinking.
    Neither marker: all thinking if the prompt opened thinking (thinking_open), else all answer.
    """
    if "<think>" in text:
        text, thinking_open = text.split("<think>", 1)[1], True
    if "</think>" in text:
        thinking, _, answer = text.partition("</think>")
        return thinking.strip(), answer.strip()
    marks = list(FINAL_ANSWER_RE.finditer(text))
    if marks:
        return text[:marks[-1].start()].strip(), text[marks[-1].end():].strip()
    return (text.strip(), "") if thinking_open else ("", text.strip())


# -- answer extraction and checking ---------------------------------------------------------

def extract_boxed(text: str) -> str | None:
    """The content of the last \\boxed{...} (or \\fbox{...}), nested braces included; None if absent
    or unclosed."""
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    if not starts:
        return None
    depth, i = 1, starts[-1]
    while i < len(text):  # count braces: a regex cannot match nested ones
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[starts[-1]:i].strip()
        i += 1
    return None


ANSWER_IS_RE = re.compile(r"\banswer is:?\s*(.+?)(?:\.(?:\s|$)|\n|$)", re.IGNORECASE)


def extract_answer(text: str) -> str | None:
    """The final answer of a completion: the last \\boxed{}, else the line after the last
    "Final Answer", else the last "The answer is X". None if the text gives none."""
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed
    marks = list(FINAL_ANSWER_RE.finditer(text))
    if marks:
        line = next((ln for ln in text[marks[-1].end():].splitlines() if ln.strip()), "")
        return _clean(line) or None
    found = ANSWER_IS_RE.findall(text)
    return (_clean(found[-1]) or None) if found else None


_DECORATION_RE = re.compile(r"^[\s$*]+|[\s$*.]+$")


def _clean(answer: str) -> str:
    """Strip the decoration around an answer: spaces, $ and ** markup, a sentence's full stop."""
    return _DECORATION_RE.sub("", answer)


_NUMBER_RE = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+")
_FRAC_RE = re.compile(r"([-+]?)\\[dt]?frac\{(\d+)\}\{(\d+)\}")


def as_number(answer: str) -> Fraction | None:
    """'1,419' / '1419.0' / '$1419$' / '1/2' / '\\frac{1}{2}' -> an exact Fraction; None if not a number."""
    s = _clean(str(answer)).replace(" ", "")
    s = _FRAC_RE.sub(r"\1\2/\3", s)
    num, slash, den = s.partition("/")
    if not _NUMBER_RE.fullmatch(num) or (slash and not (den.isdigit() and int(den))):
        return None
    value = Fraction(num.replace(",", ""))  # Fraction reads "1419.0" exactly, no float rounding
    return value / int(den) if den else value


def canonical(answer: str) -> str:
    """A voting key: numbers in lowest terms ('1,419.0' -> '1419', '0.5' -> '1/2'), other
    answers with whitespace collapsed."""
    value = as_number(answer)
    if value is not None:
        return str(value)
    return " ".join(_clean(str(answer)).split())


def answers_match(answer, expected) -> bool:
    """Is `answer` equal to `expected`? Exact for numbers, string equality after canonical(),
    then math-verify (if installed) for LaTeX and symbolic answers. None never matches."""
    if answer is None or expected is None:
        return False
    a, b = str(answer), str(expected)
    if canonical(a) == canonical(b):
        return True
    if as_number(a) is not None and as_number(b) is not None:
        return False  # two different numbers: no need for a symbolic check
    return _math_verify(b, a)


def _math_verify(gold: str, answer: str) -> bool:
    try:
        from math_verify import parse, verify
    except ImportError:
        return False
    # math-verify's timeouts use signal.alarm, which only works in the main thread.
    limit = 5 if threading.current_thread() is threading.main_thread() else None
    gold_expr, answer_expr = (parse(_latex(s), parsing_timeout=limit) for s in (gold, answer))
    return verify(gold_expr, answer_expr, timeout_seconds=limit)


def _latex(answer: str) -> str:
    """math-verify reads LaTeX between delimiters: a bare answer gets $...$."""
    return answer if "$" in answer or "\\boxed" in answer else f"${answer}$"


def check_answer(text: str, expected) -> bool:
    """Does a completion's extracted answer match `expected`? expected: a value, or anything
    with an .answer (a TinyQwQ Problem), so `check_answer(text, problem)` is TinyQwQ's checker."""
    return answers_match(extract_answer(text), getattr(expected, "answer", expected))


def majority_vote(answers: Sequence[str | None]) -> tuple[str | None, Counter]:
    """(winner, votes) over canonical answers; None (no answer found) does not vote.
    Ties go to the answer seen first, since Counter.most_common keeps insertion order."""
    votes = Counter(canonical(a) for a in answers if a is not None)
    return (votes.most_common(1)[0][0] if votes else None), votes


# -- loop detectors -------------------------------------------------------------------------

@dataclass(frozen=True)
class Detection:
    """A loop found in the token stream: `tokens` is one turn of it, repeated `repeats` times
    `period` tokens apart; `text` is those tokens decoded (filled in by ask)."""
    detector: str
    period: int
    repeats: int
    tokens: tuple[int, ...]
    detail: str
    text: str | None = None

    def __str__(self) -> str:
        return self.detail + (f": {self.text!r}" if self.text is not None else "")


class NgramRepetition:
    """Flags an n-gram seen more than max_count times within the last `window` tokens.

    Catches loose loops too (the same phrase again and again with other text between),
    which an exact cycle check misses. O(1) per token: each n-gram keeps a queue of where
    it started, and starts that slid out of the window are dropped.
    """

    def __init__(self, n: int = 4, max_count: int = 8, window: int = 256):
        self.n, self.max_count, self.window = n, max_count, window
        self.reset()

    def reset(self) -> None:
        self.tokens: list[int] = []
        self.starts: defaultdict[tuple, deque] = defaultdict(deque)

    def update(self, token: int) -> Detection | None:
        self.tokens.append(int(token))
        start = len(self.tokens) - self.n
        if start < 0:
            return None
        starts = self.starts[tuple(self.tokens[start:])]
        starts.append(start)
        while starts[0] < len(self.tokens) - self.window:
            starts.popleft()
        if len(starts) <= self.max_count:
            return None
        period = starts[-1] - starts[-2]
        return Detection("ngram", period, len(starts), tuple(self.tokens[starts[-2]:starts[-1]]),
                         f"ngram: a {self.n}-gram occurs {len(starts)} times in the last {self.window} "
                         f"tokens, every {period} tokens")


class TailCycle:
    """Flags a stream whose last tokens are one block of `period` tokens repeated exactly,
    at least min_repeats times and over at least min_length tokens (so "..." or a row of
    dashes is not a loop). Periods up to max_period are watched; the shortest is reported.

    runs[p] counts how many recent tokens equal the token p positions earlier: the tail
    is p-periodic over runs[p] + p tokens. Updating it is O(max_period) per token.
    """

    def __init__(self, max_period: int = 64, min_repeats: int = 3, min_length: int = 48):
        self.max_period, self.min_repeats, self.min_length = max_period, min_repeats, min_length
        self.reset()

    def reset(self) -> None:
        self.tokens: list[int] = []
        self.runs = [0] * (self.max_period + 1)

    def update(self, token: int) -> Detection | None:
        t = self.tokens
        t.append(int(token))
        for p in range(1, min(self.max_period, len(t) - 1) + 1):
            self.runs[p] = self.runs[p] + 1 if t[-1] == t[-1 - p] else 0
        for p in range(1, self.max_period + 1):
            span = self.runs[p] + p
            if self.runs[p] and span >= max(p * self.min_repeats, self.min_length):
                return Detection("cycle", p, span // p, tuple(t[-p:]),
                                 f"cycle: the last {span} tokens repeat a block of {p} tokens {span // p} times")
        return None


def default_detectors() -> list:
    return [NgramRepetition(), TailCycle()]


def find_loop(tokens: Sequence[int], detectors=None) -> Detection | None:
    """Run detectors over a finished token sequence; the first detection, or None."""
    detectors = default_detectors() if detectors is None else detectors
    for d in detectors:
        d.reset()
    for tok in tokens:
        for d in detectors:
            hit = d.update(tok)
            if hit:
                return hit
    return None


# -- language mixing ------------------------------------------------------------------------

SCRIPTS = {"Latin": regex.compile(r"\p{Latin}"),
           "CJK": regex.compile(r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]")}
_LETTER = regex.compile(r"\p{L}")
_SENTENCE_END = regex.compile(r"(?<=[.!?])\s+|(?<=[。！？])|\n+")


@dataclass
class Sentence:
    text: str
    shares: dict[str, float]  # script -> share of the sentence's letters
    script: str               # the script with the largest share


@dataclass
class LanguageReport:
    """Per-sentence script shares; `flagged` are the sentences whose main script is not
    the text's (QwQ's model card lists such language mixing as a known limitation)."""
    main_script: str | None
    sentences: list[Sentence]

    @property
    def flagged(self) -> list[Sentence]:
        return [s for s in self.sentences if s.script != self.main_script]

    @property
    def mixed(self) -> bool:
        return bool(self.flagged)


def script_shares(text: str) -> dict[str, float]:
    """Share of letters in each script: Latin, CJK, other. Digits, spaces and punctuation don't count."""
    letters = _LETTER.findall(text)
    counts = Counter(next((name for name, pat in SCRIPTS.items() if pat.match(c)), "other") for c in letters)
    return {name: counts[name] / len(letters) for name in (*SCRIPTS, "other")} if letters else {}


def language_mix(text: str) -> LanguageReport:
    """Split into sentences (. ! ? 。！？ and newlines), measure each one's scripts, and take
    the script most sentences are written in as the text's (ties: the most letters)."""
    sentences = []
    for part in _SENTENCE_END.split(text):
        shares = script_shares(part)
        if shares:  # no letters (a formula, a bare number): nothing to judge
            sentences.append(Sentence(part.strip(), shares, max(shares, key=shares.get)))
    by_sentences = Counter(s.script for s in sentences)
    by_letters = script_shares(text)
    main = max(by_sentences, key=lambda k: (by_sentences[k], by_letters.get(k, 0)), default=None)
    return LanguageReport(main, sentences)


# -- streaming text -------------------------------------------------------------------------

class _Transcript:
    """Token ids in, text out: decodes incrementally (a character may span tokens), tracks
    the phase (thinking until the end marker shows up in the text) and counts tokens per phase."""

    def __init__(self, tokenizer, fmt: ThinkFormat | None, thinking: bool, on_text=None):
        self.tokenizer, self.fmt, self.on_text = tokenizer, fmt, on_text
        self.phase = "thinking" if thinking else "answer"
        self.utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.pieces: list[str] = []  # joined only at the end: += on a growing str is quadratic
        self.tail = ""               # the last characters, enough to see a marker cut across pieces
        self.counts = Counter()
        self.n_tokens = 0

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def add(self, ids: list[int], final: bool = False) -> None:
        piece = self.utf8.decode(self.tokenizer.decode_bytes(ids), final=final)
        self.n_tokens += len(ids)
        self.pieces.append(piece)
        window, self.tail = self.tail + piece, (self.tail + piece)[-64:]
        if self.phase == "thinking" and self.fmt.end in window:
            i = window.find(self.fmt.end)
            self._emit(window[len(window) - len(piece):i], "thinking")  # the marker itself is not shown
            self.phase = "answer"
            self._emit(window[i + len(self.fmt.end):], "answer")  # marker tokens count in neither phase
        else:
            self._emit(piece, self.phase)
            self.counts[self.phase] += len(ids)

    def _emit(self, piece: str, phase: str) -> None:
        if piece and self.on_text:
            self.on_text(piece, phase)


# -- the decode loop ------------------------------------------------------------------------

class _Decoder:
    """One sequence on a static KV cache. feed() appends tokens (sampled or injected) and
    computes the next logits; sample() draws from them. room is what the cache has left."""

    def __init__(self, model, prompt_ids: list[int], max_new_tokens: int, sampling: Sampling):
        context = model.config.max_position_embeddings
        if len(prompt_ids) >= context:
            raise ValueError(f"the prompt has {len(prompt_ids)} tokens, but the context holds {context}")
        self.model, self.sampling = model, sampling
        self.device = next(model.parameters()).device
        self.max_len = min(len(prompt_ids) + max_new_tokens, context)
        self.cache = model.new_cache(1, self.max_len)
        vocab = model.config.vocab_size
        self.seen = torch.zeros(1, vocab, dtype=torch.bool, device=self.device)  # for repetition_penalty
        self.generated = torch.zeros_like(self.seen)                             # for presence_penalty
        self.gen = None  # no seed: torch's global RNG, so each call differs
        if sampling.seed is not None:
            self.gen = torch.Generator(device=self.device).manual_seed(sampling.seed)
        self.pos = 0
        self.feed(prompt_ids)
        self.prompt_len = len(prompt_ids)

    @property
    def room(self) -> int:
        return self.max_len - self.pos

    def feed(self, ids: list[int]) -> None:
        x = torch.tensor([ids], device=self.device)
        self.logits = self.model(x, cache=self.cache, start=self.pos, last_only=True)[:, -1]
        self.seen[0, x[0]] = True
        self.pos += len(ids)

    def sample(self) -> int:
        s = self.sampling
        if s.temperature == 0:
            logits = process_logits(self.logits, self.seen, self.generated, temperature=0,
                                    repetition_penalty=s.repetition_penalty, presence_penalty=s.presence_penalty)
            tok = int(logits.argmax(-1))
        else:
            logits = process_logits(self.logits, self.seen, self.generated, temperature=s.temperature,
                                    top_k=s.top_k, top_p=s.top_p, min_p=s.min_p,
                                    repetition_penalty=s.repetition_penalty, presence_penalty=s.presence_penalty)
            tok = int(torch.multinomial(logits.softmax(-1), 1, generator=self.gen))
        self.generated[0, tok] = True
        return tok


def _check_thinking_options(tokenizer, fmt, template, max_thinking_tokens, wait) -> None:
    if fmt is None and (max_thinking_tokens is not None or wait):
        raise ValueError(f"template {template!r} has no thinking phase: budget forcing needs qwq-32b "
                         "or qwq-32b-preview")
    if wait and fmt.end not in tokenizer.special_tokens:
        raise ValueError(f"wait= swaps the end-of-thinking token for {WAIT!r}, but {fmt.end!r} is not a single "
                         f"token of this tokenizer (use the qwq-32b template with a tokenizer that has </think>)")


class _Thinker:
    """One ask() in progress: the decoder, the transcript, and the budget rules.
    step() makes one move (a sampled token, or a forced insertion) and says whether to stop."""

    def __init__(self, dec: _Decoder, out: _Transcript, tokenizer, max_thinking_tokens, max_answer_tokens,
                 wait, detectors):
        self.dec, self.out, self.tokenizer, self.detectors = dec, out, tokenizer, detectors
        self.max_thinking, self.max_answer, self.max_waits = max_thinking_tokens, max_answer_tokens, wait
        self.stops = set(tokenizer.stop_ids)
        self.end_id = tokenizer.special_tokens.get(out.fmt.end) if out.fmt else None
        self.wait_ids = tokenizer.encode(WAIT)
        self.waits, self.forced, self.loop = 0, False, None

    def step(self) -> str | None:
        """The reason to stop ("eos", "budget", "max_tokens", "loop: ..."), or None to go on."""
        out = self.out
        if self.dec.room == 0:
            return "max_tokens"
        if out.phase == "thinking" and self.max_thinking is not None and out.counts["thinking"] >= self.max_thinking:
            self.forced = True  # budget forcing: end the thinking for the model
            return self.inject(self.close_text())
        tok = self.dec.sample()
        if tok in self.stops:
            return "budget" if self.forced else "eos"
        if tok == self.end_id and out.phase == "thinking" and self.waits < self.max_waits and self.wait_fits():
            self.waits += 1  # the model's </think> is never fed: "Wait" takes its place
            return self.inject(WAIT)
        out.add([tok])
        self.loop = next(filter(None, (d.update(tok) for d in self.detectors)), None)
        if self.loop:
            self.loop = replace(self.loop, text=self.tokenizer.decode(self.loop.tokens))
            return f"loop: {self.loop}"
        if out.counts["answer"] >= self.max_answer:
            return "max_tokens"
        self.dec.feed([tok])
        return None

    def close_text(self) -> str:
        """The format's closing text, starting on a line of its own."""
        close, tail = self.out.fmt.close, self.out.tail
        return ("\n" if tail and not tail.endswith("\n") and not close.startswith("\n") else "") + close

    def wait_fits(self) -> bool:
        """A "Wait" that would overshoot the thinking budget is not added: the cap stays exact."""
        return self.max_thinking is None or self.out.counts["thinking"] + len(self.wait_ids) <= self.max_thinking

    def inject(self, text: str) -> str | None:
        ids = self.tokenizer.encode(text, allowed_special="all")
        if len(ids) > self.dec.room:
            return "max_tokens"
        self.out.add(ids)
        self.dec.feed(ids)
        return None


@torch.inference_mode()
def ask(model, tokenizer, question: str | list[dict], think: bool = True, template: str = "qwq-32b",
        max_thinking_tokens: int | None = None, max_answer_tokens: int = 1024, max_new_tokens: int = 4096,
        sampling: Sampling | None = None, wait: int = 0, detectors: Sequence = (),
        on_text: Callable[[str, str], None] | None = None) -> Reply:
    """Ask a question (or continue a chat: a list of messages); returns a Reply.

    think=False skips thinking (an empty thinking block). max_thinking_tokens: budget
    forcing, the thinking is cut at exactly this many tokens and the end-of-thinking text
    is appended. wait=K: the first K times the model ends its thinking, its </think> is
    replaced by "Wait" and it keeps thinking. detectors: objects with reset() and
    update(token) -> Detection | None; a detection stops generation. on_text(piece, phase)
    receives the text as it appears, phase "thinking" or "answer". sampling=None is greedy.
    max_new_tokens bounds everything after the prompt (and sizes the KV cache).
    """
    fmt = THINK_FORMATS[template]
    _check_thinking_options(tokenizer, fmt, template, max_thinking_tokens, wait)
    thinking = think and fmt is not None
    t0 = time.perf_counter()
    prompt_ids = tokenizer.encode(build_prompt(question, template, think), allowed_special="all")
    dec = _Decoder(model, prompt_ids, max_new_tokens, sampling or GREEDY)
    out = _Transcript(tokenizer, fmt, thinking, on_text)
    for d in detectors:
        d.reset()
    run = _Thinker(dec, out, tokenizer, max_thinking_tokens, max_answer_tokens, wait, detectors)
    while (stopped := run.step()) is None:
        pass
    out.add([], final=True)
    used = out.n_tokens + (stopped in ("eos", "budget"))  # the stop token was drawn too
    thought, answer = parse_response(out.text, thinking_open=thinking)
    return Reply(out.text, thought, answer, used, out.counts["thinking"], stopped, run.waits, run.loop,
                 time.perf_counter() - t0)


# -- self-consistency -----------------------------------------------------------------------

@torch.inference_mode()
def sample_traces(model, tokenizer, question: str | list[dict], n: int = 8, think: bool = True,
                  template: str = "qwq-32b", max_new_tokens: int = 4096, sampling: Sampling = Sampling()
                  ) -> list[Reply]:
    """n completions of one prompt in a single batch: the rows are the same prompt, so they
    have equal length and generate.stream needs no padding. seed=None draws a fresh seed."""
    fmt = THINK_FORMATS[template]
    ids = tokenizer.encode(build_prompt(question, template, think), allowed_special="all")
    device = next(model.parameters()).device
    seed = sampling.seed if sampling.seed is not None else int(torch.randint(2**31, ()))
    t0 = time.perf_counter()
    steps = list(stream(model, torch.tensor([ids] * n, device=device), max_new_tokens,
                        sampling.temperature, sampling.top_k, sampling.top_p, sampling.min_p,
                        sampling.repetition_penalty, sampling.presence_penalty, tokenizer.stop_ids, seed))
    seconds = time.perf_counter() - t0
    rows = torch.stack(steps, 1).tolist() if steps else [[] for _ in range(n)]
    return [_reply_from_ids(tokenizer, row, fmt, think and fmt is not None, seconds) for row in rows]


def _reply_from_ids(tokenizer, ids: list[int], fmt, thinking: bool, seconds: float) -> Reply:
    """A Reply for a finished row of a batch: cut at the first stop id, then split."""
    stops = set(tokenizer.stop_ids)
    end = next((i for i, t in enumerate(ids) if t in stops), None)
    body = ids if end is None else ids[:end]
    out = _Transcript(tokenizer, fmt, thinking)
    for tok in body:
        out.add([tok])
    out.add([], final=True)
    thought, answer = parse_response(out.text, thinking_open=thinking)
    return Reply(out.text, thought, answer, len(body) + (end is not None), out.counts["thinking"],
                 "eos" if end is not None else "max_tokens", seconds=seconds)


def vote(model, tokenizer, question: str | list[dict], n: int = 8, sampling: Sampling = Sampling(),
         extract: Callable[[str], str | None] = extract_answer, **ask_options) -> Vote:
    """Self-consistency (Wang et al. 2022): sample n traces, extract each answer, majority vote.

    The n traces are one batch. Options that change a trace's length mid-stream
    (max_thinking_tokens, wait, detectors, ...) need ask(), which runs one sequence at a
    time, so with them the traces are sampled one by one (seeds seed, seed+1, ...).
    """
    batchable = {"think", "template", "max_new_tokens"}
    if set(ask_options) <= batchable:
        traces = sample_traces(model, tokenizer, question, n, sampling=sampling, **ask_options)
    else:
        seed = sampling.seed if sampling.seed is not None else int(torch.randint(2**31, ()))
        traces = [ask(model, tokenizer, question, sampling=replace(sampling, seed=seed + i), **ask_options)
                  for i in range(n)]
    winner, votes = majority_vote([extract(t.answer) or extract(t.text) for t in traces])
    return Vote(winner, votes, traces)


# -- prompt chaining: a reasoning engine, then an extractor ---------------------------------

EXTRACT_PROMPT = ("Question: {question}\n\nA solution:\n{reasoning}\n\n"
                  "Reply with only the final answer of this solution, in the form \\boxed{{answer}}.")
EXTRACT_CHARS = 2000  # the end of a long trace is where its result is; a light extractor gets only that


@dataclass
class Chained:
    """reasoning: what the reasoner wrote; extracted: what the extractor made of it; answer:
    the extractor's \\boxed{} (or its text, stripped)."""
    question: str
    reasoning: str
    extracted: str
    answer: str | None


def boxed_extractor(question: str, reasoning: str) -> str:
    """A rule-based extractor: the reasoning's final answer, formatted as \\boxed{...}."""
    answer = extract_answer(reasoning)
    return f"\\boxed{{{answer}}}" if answer is not None else ""


def chain(reasoner, extractor, question: str, **ask_options) -> Chained:
    """Reasoning engine -> extractor. Each is a callable or a (model, tokenizer) pair:
    reasoner(question) -> text; extractor(question, reasoning) -> text.

    A model reasoner is called through ask(..., **ask_options). A model extractor gets
    EXTRACT_PROMPT with the end of the reasoning, without thinking (template qwen2.5), greedy.
    """
    if isinstance(reasoner, tuple):
        model, tokenizer = reasoner
        reasoning = ask(model, tokenizer, question, **ask_options).text
    else:
        reasoning = reasoner(question)
    if isinstance(extractor, tuple):
        model, tokenizer = extractor
        prompt = EXTRACT_PROMPT.format(question=question, reasoning=reasoning[-EXTRACT_CHARS:])
        extracted = ask(model, tokenizer, prompt, template="qwen2.5", max_answer_tokens=64, max_new_tokens=64).text
    else:
        extracted = extractor(question, reasoning)
    answer = extract_boxed(extracted)
    return Chained(question, reasoning, extracted, answer if answer is not None else (extracted.strip() or None))


# -- showing the stream ---------------------------------------------------------------------

class TerminalPrinter:
    """An on_text callback for a terminal: thinking dim (ANSI SGR 2), the answer plain.
    color=None colours only a real terminal; without colour, [thinking] / [answer] headings
    mark the phases instead (so piped output and logs stay readable)."""

    DIM, RESET = "\x1b[2m", "\x1b[0m"

    def __init__(self, file=None, color: bool | None = None):
        self.file = file or sys.stdout
        self.color = self.file.isatty() if color is None else color
        self.phase = None
        self.line_start = True

    def __call__(self, piece: str, phase: str) -> None:
        if phase != self.phase:
            piece = piece.lstrip("\n")  # the blank line after </think> is layout, not content
            if not piece:
                return
            if not self.line_start:
                self.file.write("\n")
            if self.color:
                self.file.write(self.DIM if phase == "thinking" else self.RESET)
            else:
                self.file.write(f"[{phase}]\n")
            self.phase = phase
        self.file.write(piece)
        self.line_start = piece.endswith("\n")
        self.file.flush()

    def close(self) -> None:
        """End the output: reset the style and finish the line."""
        self.file.write((self.RESET if self.color else "") + ("" if self.line_start else "\n"))
        self.file.flush()
        self.phase, self.line_start = None, True


class NotebookPrinter:
    """An on_text callback for Jupyter: one HTML output, thinking in grey, redrawn at most
    every `interval` seconds (a redraw per token would flood the front end)."""

    def __init__(self, interval: float = 0.1):
        from IPython.display import HTML, display

        self.HTML, self.interval = HTML, interval
        self.parts: list[tuple[str, str]] = []
        self.handle = display(HTML(""), display_id=True)
        if self.handle is None:  # IPython returns no handle outside a front end that can redraw
            raise RuntimeError("NotebookPrinter needs a Jupyter front end; use TerminalPrinter elsewhere")
        self.last = 0.0

    def __call__(self, piece: str, phase: str) -> None:
        self.parts.append((piece, phase))
        if time.perf_counter() - self.last > self.interval:
            self.close()

    def close(self) -> None:
        spans = "".join(f'<span style="color:#888">{html.escape(p)}</span>' if ph == "thinking" else html.escape(p)
                        for p, ph in self.parts)
        self.handle.update(self.HTML(f'<pre style="white-space:pre-wrap">{spans}</pre>'))
        self.last = time.perf_counter()


def printer(**kwargs):
    """The right on_text for where we run: NotebookPrinter in a Jupyter kernel, else TerminalPrinter.
    Call .close() when the reply is done."""
    try:
        from IPython import get_ipython

        in_kernel = type(get_ipython()).__name__ == "ZMQInteractiveShell"
    except ImportError:
        in_kernel = False
    return NotebookPrinter(**kwargs) if in_kernel else TerminalPrinter(**kwargs)
