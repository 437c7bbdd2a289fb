"""TinyQwQ: the shipped checkpoint is real HF layout, the task is checkable, held-out is held out."""

import random

import pytest
import torch

from qwqlearn import tinyqwq
from qwqlearn.tinyqwq import data

SHIPPED = (tinyqwq.CHECKPOINT_DIR / "model.safetensors").exists()
needs_checkpoint = pytest.mark.skipif(not SHIPPED, reason="no shipped TinyQwQ checkpoint yet")


# -- the task ------------------------------------------------------------------------------------

def test_problems_are_reproducible_and_correct():
    a = list(tinyqwq.problems("add3", 20, seed=1))
    assert a == list(tinyqwq.problems("add3", 20, seed=1))
    assert all(p.answer == p.a + p.b and 100 <= p.a <= 999 and 100 <= p.b <= 999 for p in a)
    assert all(p.question == f"What is {p.a} + {p.b}?" for p in a)
    c = list(tinyqwq.problems("count", 20, seed=1))
    assert all(p.answer == p.word.count(p.letter) for p in c)
    assert all(p.question == f"How many {p.letter}'s are in {p.word}?" for p in c)


def test_held_out_problems_never_appear_in_training():
    test_pairs = {tuple(sorted((p.a, p.b))) for fam in ("add3", "add4")
                  for p in tinyqwq.problems(fam, 300, seed=0, split="test")}
    test_words = {p.word for p in tinyqwq.problems("count", 300, seed=0, split="test")}
    assert "strawberry" not in {p.word for p in tinyqwq.problems("count", 3000, seed=0, split="train")}
    rng = random.Random(0)
    for _ in range(3000):  # what train.py's example stream draws from
        p = data._sample("add", rng, "train", paraphrase=True)
        assert tuple(sorted((p.a, p.b))) not in test_pairs
        q = data._sample("count", rng, "train", paraphrase=True)
        assert q.word not in test_words
    assert data.split_of_word("strawberry") == "test"


def test_traces_are_correct_and_slips_are_repaired():
    p = data.make_addition(482, 937)
    think = data.completion(p, "think")
    assert "\ntens 8+3=11, so 19\nhundreds 4+9+1=14, so 1419\n" in think and "Wait" not in think
    assert think.endswith("</think>\n\nThe answer is 1419.")
    slipped = data.completion(p, "reflect", random.Random(3), slip=True)
    assert ". Wait, that is wrong: " in slipped and slipped.endswith("The answer is 1419.")
    assert data.completion(p, "direct") == "</think>\n\nThe answer is 1419."
    # unequal lengths: the shorter operand is padded with zeros, the last carry leads the sum
    assert data.addition_lines(5, 97)[1:3] == ["ones 5+7=12, so 2", "tens 0+9+1=10, so 102"]


def test_count_trace_spells_the_tokens_the_model_sees():
    pieces = [" st", "ra", "w", "b", "er", "ry"]
    lines = data.count_lines("strawberry", "r", pieces)
    assert lines[1:7] == [" st: s t", "ra: r=1 a", "w: w", "b: b", "er: e r=2", "ry: r=3 y"]
    assert lines[-1] == "Check: the count went up 3 times, so 3 r's."
    assert data.count_lines("kiwi", "z", [" k", "iwi"])[-1] == "Check: the count never went up, so 0 z's."
    with pytest.raises(ValueError, match="do not spell"):
        data.count_lines("strawberry", "r", [" st", "raw"])
    slipped = data.count_lines("strawberry", "r", pieces, slip_at=3, wrong=2)
    assert slipped[2] == "ra: r=1 a=2. Wait, that is wrong: a is not r, so a"
    # the trace's token lines are the very tokens of the question's word
    _, tok = tinyqwq.load()
    q = data.make_count("strawberry", "r")
    word_ids = tok.encode(" strawberry")
    trace_ids = tok.encode("\n".join(data.count_lines(q.word, q.letter)))
    assert all(i in trace_ids for i in word_ids)


def test_injected_prefix_ends_in_the_wrong_number():
    rng = random.Random(0)
    for p in [*data.problems("add3", 20), *data.problems("count", 20)]:
        prefix = data.injected_prefix(p, rng)
        assert "Wait" not in prefix and prefix[-1].isdigit()
        full = data.completion(p, "think")
        assert not full.startswith(prefix)  # the prefix really holds a wrong step


def test_check_scores_final_answers():
    p = data.make_addition(482, 937)
    assert tinyqwq.check(p, "...\n</think>\n\nThe answer is 1419.")
    assert not tinyqwq.check(p, "...\n</think>\n\nThe answer is 1418.")
    assert not tinyqwq.check(p, "1419")                      # no final-answer sentence
    assert tinyqwq.check(p, "The answer is 12. Wait, that is wrong. The answer is 1419.")  # the last one counts


def test_questions_are_parsed_or_refused():
    assert data.parse_question("What is 482 + 937?").answer == 1419
    assert data.parse_question("How many r's are in strawberry?").answer == 3
    assert data.parse_question("What is the capital of France?") is None
    text, value = tinyqwq.answer("What is the capital of France?")
    assert value is None and "I can only do" in text
    assert tinyqwq.answer("What is 12345678 + 1?")[1] is None     # longer than it was trained on


# -- the shipped checkpoint ------------------------------------------------------------------------

@needs_checkpoint
def test_checkpoint_loads_in_transformers_with_equal_logits():
    from transformers import AutoModelForCausalLM

    from qwqlearn.weights import load_pretrained

    path = tinyqwq.CHECKPOINT_DIR
    hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    assert type(hf).__name__ == "Qwen2ForCausalLM"
    ours = load_pretrained(path).eval()
    model, tok = tinyqwq.load()
    ids = torch.tensor([tok.encode(data.prompt_text("What is 482 + 937?"), allowed_special="all")])
    with torch.no_grad():
        ref = hf(ids).logits
        assert (ours(ids) - ref).abs().max().item() <= 1e-5
        assert (model(ids) - ref).abs().max().item() <= 1e-5


@needs_checkpoint
def test_tokenizer_loads_in_auto_tokenizer_with_identical_ids():
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(tinyqwq.CHECKPOINT_DIR)
    _, tok = tinyqwq.load()
    p = data.make_count("strawberry", "r")
    text = data.prompt_text(p.question) + data.completion(p, "reflect", random.Random(1), slip=True) + "<|im_end|>"
    assert hf.encode(text, add_special_tokens=False) == tok.encode(text, allowed_special="all")
    for special in ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"):
        assert hf.convert_tokens_to_ids(special) == tok.special_tokens[special]
    # digits are always single tokens
    assert all(len(tok.encode(d)) == 1 for d in "0123456789")


# Greedy decoding of a fixed checkpoint is deterministic, so these floors are exact
# regressions guards set a little under the shipped model's measured accuracy
# (see `python -m qwqlearn.tinyqwq.evaluate`), not the targets.
# Measured on these 32 problems per family: add3 32, add4 32, count 29.
MIN_CORRECT_OF_32 = {"add3": 30, "add4": 28, "count": 26}


@needs_checkpoint
@pytest.mark.parametrize("family", sorted(MIN_CORRECT_OF_32))
def test_shipped_model_solves_held_out_problems(family):
    from qwqlearn.tinyqwq.evaluate import solve

    model, tok = tinyqwq.load()
    probs = list(tinyqwq.problems(family, 32, seed=7))
    texts = solve(model, tok, probs)
    assert sum(tinyqwq.check(p, t) for p, t in zip(probs, texts)) >= MIN_CORRECT_OF_32[family]
    assert all("</think>" in t and tinyqwq.extract_answer(t) is not None for t in texts)


@needs_checkpoint
def test_answer_on_canonical_questions():
    text, value = tinyqwq.answer("What is 482 + 937?")
    assert text.startswith("Add the columns") and value == 1419
    text, value = tinyqwq.answer("How many r's are in strawberry?", mode="reflect")
    assert text.startswith("Count the r's, token by token:\n") and value == 3
