"""qwqlearn.reasoning: parsers, extraction, detectors, budget forcing, self-consistency, chaining.

The decode-loop tests use a scripted fake model (the next token is a fixed function of
the last one), so every token of a trace is known in advance; a few tests run TinyQwQ.
"""

import io
import random
from collections import Counter
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from qwqlearn import tinyqwq
from qwqlearn.reasoning import (
    GREEDY, NgramRepetition, NotebookPrinter, Sampling, TailCycle, TerminalPrinter, answers_match, as_number, ask,
    boxed_extractor, build_prompt, canonical, chain, check_answer, extract_answer, extract_boxed, find_loop,
    language_mix, majority_vote, parse_response, script_shares, vote,
)
from qwqlearn.tinyqwq import data
from qwqlearn.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def tiny():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 1M-parameter model runs faster on one thread than on two busy ones
    yield tinyqwq.load()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tok():
    """A toy byte-level tokenizer whose ids are known: every byte, "\n\n", and the chat specials."""
    specials = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>")
    return Tokenizer({bytes([b]): b for b in range(256)} | {b"\n\n": 256},
                     {s: 257 + i for i, s in enumerate(specials)})


class ScriptedModel(nn.Module):
    """A fake QwenForCausalLM: the next token is next_of[last token] (else `default`), or a
    draw from probs_after[last token] = {token: probability}. Records every id fed to it."""

    def __init__(self, next_of: dict, default: int, probs_after: dict | None = None, vocab=262, context=512):
        super().__init__()
        self.config = SimpleNamespace(vocab_size=vocab, max_position_embeddings=context)
        self.anchor = nn.Parameter(torch.zeros(()))  # so the decoder can ask for the device
        logits = F.one_hot(torch.full((vocab,), default), vocab).float() * 50 - 25
        for last, nxt in next_of.items():
            logits[last] = F.one_hot(torch.tensor(nxt), vocab).float() * 50 - 25
        for last, probs in (probs_after or {}).items():
            logits[last] = torch.full((vocab,), -1e4)
            for t, p in probs.items():
                logits[last, t] = torch.tensor(p).log()
        self.register_buffer("table", logits)
        self.fed: list[int] = []

    def new_cache(self, batch, max_len):
        return None

    def forward(self, input_ids, cache=None, start=0, last_only=False):
        if input_ids.shape[0] == 1:
            self.fed += input_ids[0].tolist()
        logits = self.table[input_ids]
        return logits[:, -1:] if last_only else logits


def ids(tok, text):
    return tok.encode(text, allowed_special="all")


def one(tok, text):
    (i,) = ids(tok, text)
    return i


# -- parsing and extraction -------------------------------------------------------------------

def test_parse_response_tags_preview_and_plain():
    assert parse_response("step 1\nstep 2\n</think>\n\nThe answer is 4.") == ("step 1\nstep 2", "The answer is 4.")
    assert parse_response("<think>\nhmm\n</think>\nok") == ("hmm", "ok")
    preview = "Let me add.\n2 + 2 = 4.\n\n**Final Answer**\n\n\\[ \\boxed{4} \\]"
    assert parse_response(preview) == ("Let me add.\n2 + 2 = 4.", "\\[ \\boxed{4} \\]")
    assert parse_response("still thinking", thinking_open=True) == ("still thinking", "")
    assert parse_response("just an answer") == ("", "just an answer")
    assert parse_response("the final answer is 4", thinking_open=True) == ("the final answer is 4", "")


def test_extract_boxed_nested_last_and_unclosed():
    assert extract_boxed(r"so \boxed{\frac{1}{2}} done") == r"\frac{1}{2}"
    assert extract_boxed(r"\boxed{1} then \boxed{\{a, b\}}") == r"\{a, b\}"
    assert extract_boxed(r"\boxed{ 1419 }") == "1419"
    assert extract_boxed(r"\fbox{7}") == "7"
    assert extract_boxed(r"\boxed{}") == ""
    assert extract_boxed(r"\boxed{\frac{1}{2}") is None
    assert extract_boxed("no box") is None


@pytest.mark.parametrize("text, expected", [
    ("**Final Answer**\n\n\\[ \\boxed{1419} \\]", "1419"),
    ("Final Answer: 42.", "42"),
    ("**Final Answer:** $x = 3$", "x = 3"),
    ("The answer is 3.5.", "3.5"),
    ("so the final answer is 4.", "4"),  # "final answer" inside a sentence is no heading
    ("so the answer is 1,419\nbye", "1,419"),
    ("The answer is 12. Then the answer is 13.", "13"),
    ("The answer is 5, and \\boxed{6}", "6"),  # a box beats prose
    ("no conclusion here", None),
])
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_numeric_equivalence():
    assert as_number("1,419") == as_number("1419.0") == as_number("1419") == as_number("$1419$.") == 1419
    assert as_number(r"\frac{1}{2}") == as_number("1/2") == as_number("0.5") == as_number(".5")
    assert as_number("1,41") is None and as_number("1/0") is None and as_number("x") is None
    assert canonical("1,419.0") == "1419" and canonical("  x  = 3 ") == "x = 3"
    assert answers_match("1,419", "1419.0") and answers_match("1419", 1419)
    assert not answers_match("1418", "1419") and not answers_match(None, "1")


def test_math_verify_symbolic():
    pytest.importorskip("math_verify")
    assert answers_match(r"\frac{2}{4}", r"\dfrac{1}{2}")
    assert answers_match(r"\sqrt{4}", "2")
    assert not answers_match(r"\frac{1}{3}", "0.5")


def test_check_answer_agrees_with_tinyqwq_checker():
    rng = random.Random(0)
    for p in [*data.problems("add3", 20), *data.problems("count", 20)]:
        right = data.completion(p, "reflect", rng)
        wrong = right.replace(f"The answer is {p.answer}.", f"The answer is {p.answer + 1}.")
        for text in (right, wrong, right.split("</think>")[0]):
            assert check_answer(text, p) == data.check(p, text)


# -- loop detectors ---------------------------------------------------------------------------

def first_hit(detector, tokens):
    detector.reset()
    for i, t in enumerate(tokens):
        hit = detector.update(t)
        if hit:
            return i, hit
    return None, None


def test_ngram_catches_a_repeated_phrase_at_the_ninth_occurrence():
    i, hit = first_hit(NgramRepetition(), [1, 2, 3, 4, 5, 6] * 20)
    assert i == 6 * 8 + 3  # the 4-gram (1, 2, 3, 4) is complete for the 9th time
    assert (hit.detector, hit.period, hit.repeats, hit.tokens) == ("ngram", 6, 9, (1, 2, 3, 4, 5, 6))


def test_ngram_catches_a_loose_loop_that_is_no_exact_cycle():
    rng = random.Random(0)
    tokens = []
    for _ in range(12):  # "Let me recheck" + different filler each time
        tokens += [100, 101, 102, 103] + [rng.randrange(200, 400) for _ in range(rng.randrange(3, 12))]
    assert first_hit(NgramRepetition(), tokens)[1] is not None
    assert find_loop(tokens, [TailCycle()]) is None


def test_ngram_window_forgets_old_occurrences():
    rng = random.Random(1)
    tokens = []
    for _ in range(12):  # the phrase comes back only every ~60 tokens: at most 5 in any 256
        tokens += [100, 101, 102, 103] + [rng.randrange(200, 400) for _ in range(56)]
    assert first_hit(NgramRepetition(), tokens)[1] is None


def test_tail_cycle_exact_repeat_reports_smallest_period():
    i, hit = first_hit(TailCycle(), [7, 8, 9] * 16)
    assert i == 47 and (hit.detector, hit.period, hit.repeats, hit.tokens) == ("cycle", 3, 16, (7, 8, 9))
    _, hit = first_hit(TailCycle(min_length=10), [5] * 3 + [1, 2] * 30)
    assert hit.period == 2  # not 4 or 6, which are cycles too
    assert first_hit(TailCycle(), [0] * 20)[1] is None  # a short run of dashes is no loop


def test_normal_traces_are_not_flagged(tiny):
    tok = tiny[1]
    rng = random.Random(0)
    for family in ("add3", "add4", "count"):
        for p in data.problems(family, 40, split="train"):
            for slip in (False, True):
                assert find_loop(ids(tok, data.completion(p, "reflect", rng, slip=slip))) is None


def test_normal_english_reasoning_is_not_flagged():
    qwen = Tokenizer.from_qwen()
    text = ("Okay, so I need to add 482 and 937. Let me start with the ones place: 2 plus 7 is 9. "
            "Then the tens: 8 plus 3 is 11, so I write 1 and carry 1. Wait, let me double-check that. "
            "8 plus 3 is 11, yes. Now the hundreds: 4 plus 9 is 13, plus the carry makes 14. "
            "So the result is 1419. Let me verify by subtracting: 1419 minus 937 is 482. Yes, that's right. "
            "Hmm, maybe I should check the ones place again. 2 plus 7 is 9, and 1419 ends in 9. Good. ")
    assert find_loop(qwen.encode(text)) is None
    looping = text + "Wait, let me double-check the tens place: 8 plus 3 is 11. " * 12
    hit = find_loop(qwen.encode(looping))
    assert hit is not None and "double-check" in qwen.decode(hit.tokens)


# -- language mixing --------------------------------------------------------------------------

def test_language_mix_flags_the_cjk_sentence():
    text = ("First, add the ones: 2 + 7 = 9. Then the tens give 11, so carry one. "
            "所以百位是十四。 The total is 1419.")
    report = language_mix(text)
    assert report.main_script == "Latin" and report.mixed
    assert [s.text for s in report.flagged] == ["所以百位是十四。"]
    assert all(abs(sum(s.shares.values()) - 1) < 1e-9 for s in report.sentences)
    assert not language_mix("All English here. Nothing else! 42.").mixed
    assert script_shares("ab 中文") == {"Latin": 0.5, "CJK": 0.5, "other": 0.0}
    assert script_shares("1 + 2 = 3") == {}


# -- the decode loop: budget forcing and Wait -------------------------------------------------

def thinking_model(tok, think_next: dict, answer="7"):
    """Prompt ends in "<think>\\n" -> thinking per think_next; </think> -> "\\n\\n" -> answer -> <|im_end|>."""
    nl, gap, end = one(tok, "\n"), one(tok, "\n\n"), one(tok, "</think>")
    ans, eos = one(tok, answer), one(tok, "<|im_end|>")
    return ScriptedModel({**think_next, end: gap, gap: ans, ans: eos}, default=nl)


def test_budget_forcing_caps_thinking_at_exactly_n_tokens(tok):
    a = one(tok, "a")
    model = thinking_model(tok, {one(tok, "\n"): a, a: a})  # thinks "aaaa..." forever
    prompt_len = len(ids(tok, build_prompt("q")))
    r = ask(model, tok, "q", max_thinking_tokens=5)
    assert (r.thinking, r.thinking_tokens, r.answer, r.stopped_because) == ("aaaaa", 5, "7", "budget")
    completion = model.fed[prompt_len:]
    assert completion == [a] * 5 + ids(tok, "\n</think>\n\n") + [one(tok, "7")]
    assert r.tokens_used == len(completion) + 1  # + the <|im_end|> that ended it
    assert r.text == "aaaaa\n</think>\n\n7"


def test_budget_zero_answers_at_once_and_think_false_skips(tok):
    a = one(tok, "a")
    model = thinking_model(tok, {one(tok, "\n"): a, a: a})
    r = ask(model, tok, "q", max_thinking_tokens=0)
    assert (r.thinking, r.answer, r.thinking_tokens, r.text) == ("", "7", 0, "</think>\n\n7")
    r = ask(model, tok, "q", think=False)
    assert (r.thinking, r.answer, r.stopped_because) == ("", "7", "eos")


def test_wait_replaces_end_of_thinking_k_times(tok):
    a, b, wait_last = one(tok, "a"), one(tok, "b"), ids(tok, "Wait")[-1]
    model = thinking_model(tok, {one(tok, "\n"): a, a: b, b: one(tok, "</think>"), wait_last: a})
    seen = []
    r = ask(model, tok, "q", wait=2, on_text=lambda piece, phase: seen.append((piece, phase)))
    assert r.thinking == "abWaitabWaitab" and r.answer == "7" and r.waits_added == 2
    assert model.fed.count(one(tok, "</think>")) == 1  # only the third </think> got through
    assert "".join(p for p, ph in seen if ph == "thinking") == "abWaitabWaitab"
    assert "".join(p for p, ph in seen if ph == "answer") == "\n\n7"
    assert r.stopped_because == "eos" and r.thinking_tokens == 6 + 2 * len(ids(tok, "Wait"))


def test_budget_wins_over_wait(tok):
    a, b, wait_last = one(tok, "a"), one(tok, "b"), ids(tok, "Wait")[-1]
    model = thinking_model(tok, {one(tok, "\n"): a, a: b, b: one(tok, "</think>"), wait_last: a})
    r = ask(model, tok, "q", wait=5, max_thinking_tokens=6)  # a, b, W, a, i, t: the budget is spent
    assert (r.thinking, r.thinking_tokens, r.waits_added, r.stopped_because) == ("abWait", 6, 1, "budget")
    r = ask(model, tok, "q", wait=5, max_thinking_tokens=5)  # 2 + a 4-token "Wait" > 5: </think> passes
    assert (r.thinking, r.thinking_tokens, r.waits_added, r.stopped_because) == ("ab", 2, 0, "eos")


def test_detector_stops_ask_with_loop_reason(tok):
    a, b, c = one(tok, "a"), one(tok, "b"), one(tok, "c")
    model = thinking_model(tok, {one(tok, "\n"): a, a: b, b: c, c: a})  # abcabc... never ends
    r = ask(model, tok, "q", detectors=[TailCycle(min_length=12)])
    assert r.stopped_because.startswith("loop: cycle") and r.loop.period == 3
    assert r.loop.text in ("abc", "bca", "cab") and r.thinking_tokens == 12


def test_limits_end_with_max_tokens(tok):
    a = one(tok, "a")
    forever = thinking_model(tok, {one(tok, "\n"): a, a: a})
    assert ask(forever, tok, "q", max_new_tokens=10).stopped_because == "max_tokens"
    assert ask(forever, tok, "q", max_new_tokens=10).tokens_used == 10
    chatty = ScriptedModel({}, default=a)  # answers "aaaa..." without thinking
    r = ask(chatty, tok, "q", think=False, max_answer_tokens=3)
    assert (r.answer, r.stopped_because) == ("aaa", "max_tokens")


def test_budget_forcing_in_the_preview_style(tok):
    a = one(tok, "a")
    model = thinking_model(tok, {one(tok, "\n"): a, a: a})
    r = ask(model, tok, "q", template="qwq-32b-preview", max_thinking_tokens=3)
    assert r.text == "aaa\n\n**Final Answer**\n\n7"
    assert (r.thinking, r.answer, r.final_answer, r.stopped_because) == ("aaa", "7", "7", "budget")


def test_wait_needs_a_thinking_token(tok):
    model = ScriptedModel({}, default=0)
    with pytest.raises(ValueError, match="no thinking phase"):
        ask(model, tok, "q", template="qwen2.5", wait=1)
    with pytest.raises(ValueError, match="not a single token"):
        ask(model, tok, "q", template="qwq-32b-preview", wait=1)


# -- TinyQwQ, the real thing ------------------------------------------------------------------

def test_ask_on_tinyqwq_matches_generate(tiny):
    from qwqlearn.tinyqwq.evaluate import solve

    model, tok = tiny
    p = next(data.problems("add3", 1))
    r = ask(model, tok, p.question)
    assert r.text == solve(model, tok, [p])[0]  # our decode loop == generate(), token for token
    assert r.stopped_because == "eos" and r.thinking.startswith("Add the columns, starting from the ones:")
    assert r.answer.startswith("The answer is ") and r.final_answer == str(extract_answer(r.answer))


def test_budget_forcing_on_tinyqwq(tiny):
    model, tok = tiny
    r = ask(model, tok, "What is 482 + 937?", max_thinking_tokens=20)
    assert r.thinking_tokens == 20 and "</think>" in r.text
    assert r.stopped_because in ("budget", "max_tokens")


# -- self-consistency -------------------------------------------------------------------------

def test_majority_vote_groups_equivalent_answers():
    winner, votes = majority_vote(["1419", "1,419", None, "1418", "1419.0", "1418"])
    assert winner == "1419" and votes == Counter({"1419": 3, "1418": 2})
    assert majority_vote(["b", "a", "a", "b"])[0] == "b"  # a tie goes to the first seen
    assert majority_vote([None, None]) == (None, Counter())


def test_vote_samples_a_batch_and_counts(tok):
    gap, eos, dot = one(tok, "\n\n"), one(tok, "<|im_end|>"), one(tok, ".")
    three, four, five = one(tok, "3"), one(tok, "4"), one(tok, "5")
    model = ScriptedModel({one(tok, "</think>"): gap, three: dot, four: dot, five: dot, dot: eos},
                          default=one(tok, "</think>"),
                          probs_after={gap: {three: 0.6, four: 0.3, five: 0.1}})
    result = vote(model, tok, "q", n=40, sampling=Sampling(seed=0), extract=lambda text: text.rstrip("."))
    assert sum(result.votes.values()) == 40 and len(result.traces) == 40
    assert result.answer == "3" and set(result.votes) <= {"3", "4", "5"} and result.votes["4"] > 0
    assert result.agreement == result.votes["3"] / 40
    assert all(t.stopped_because == "eos" and t.text.endswith(".") for t in result.traces)


def test_vote_with_budget_runs_ask_per_trace(tiny):
    model, tok = tiny
    result = vote(model, tok, "What is 12 + 34?", n=2, sampling=Sampling(seed=0), max_thinking_tokens=10)
    assert len(result.traces) == 2 and all(t.thinking_tokens == 10 for t in result.traces)


# -- chaining and display ---------------------------------------------------------------------

def test_chain_with_callables_and_tinyqwq(tiny):
    c = chain(lambda q: "Hmm... so the answer is 1,419.", boxed_extractor, "What is 482 + 937?")
    assert (c.extracted, c.answer) == (r"\boxed{1,419}", "1,419")
    model, tok = tiny
    c = chain((model, tok), boxed_extractor, "What is 12 + 34?")
    assert c.answer == extract_answer(c.reasoning) and "</think>" in c.reasoning
    c = chain(lambda q: "I think 7", (model, tok), "q")  # any model can be the extractor
    assert isinstance(c.extracted, str)


def test_terminal_printer_dims_thinking():
    out = io.StringIO()
    p = TerminalPrinter(out, color=True)
    for piece, phase in [("step", "thinking"), (" 1\n", "thinking"), ("\n\n", "answer"), ("4", "answer")]:
        p(piece, phase)
    p.close()
    assert out.getvalue() == "\x1b[2mstep 1\n\x1b[0m4\x1b[0m\n"
    out = io.StringIO()
    p = TerminalPrinter(out, color=False)
    p("hm", "thinking"), p("\n\n4", "answer"), p.close()
    assert out.getvalue() == "[thinking]\nhm\n[answer]\n4\n"


def test_notebook_printer_greys_thinking(monkeypatch):
    import IPython.display

    shown = []
    handle = SimpleNamespace(update=lambda obj: shown.append(obj.data))
    monkeypatch.setattr(IPython.display, "display", lambda obj, display_id: handle)
    p = NotebookPrinter(interval=3600)
    p("1 < 2", "thinking"), p("ok", "answer"), p.close()
    assert shown[-1] == '<pre style="white-space:pre-wrap"><span style="color:#888">1 &lt; 2</span>ok</pre>'


def test_greedy_is_default_and_deterministic(tiny):
    model, tok = tiny
    q = "How many r's are in strawberry?"
    assert ask(model, tok, q).text == ask(model, tok, q, sampling=GREEDY).text
    s = Sampling(seed=3)
    assert ask(model, tok, q, sampling=s).text == ask(model, tok, q, sampling=s).text
