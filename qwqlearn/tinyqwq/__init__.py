"""TinyQwQ: a ~1M-parameter Qwen2-architecture reasoning model, trained on a CPU.

It ships inside the package as a real Hugging Face checkpoint (config.json,
model.safetensors, tokenizer files), so every notebook and test has a trained
model that runs offline in seconds and whose outputs mean something:

    >>> from qwqlearn import tinyqwq
    >>> model, tok = tinyqwq.load()                       # the shipped "reflect" model
    >>> text, value = tinyqwq.answer("What is 482 + 937?")
    >>> value
    1419
    >>> tinyqwq.answer("How many r's are in strawberry?")[1]
    3

Its whole world is two task families (see `data.py`): addition of whole
numbers up to 4 digits, and counting a letter in a word. Three variants were
trained on the same budget: "direct" (answer only), "think" (a step-by-step
<think> trace) and "reflect" (traces that sometimes slip and say "Wait").

    load(variant="reflect")            -> (QwenForCausalLM, Tokenizer)
    problems(family, n, seed, split)   -> held-out (or training) Problems with true answers
    check(problem, text)               -> is the completion's final answer right?
    answer(question, mode="reflect")   -> (completion, extracted answer or None)

Retrain with `python -m qwqlearn.tinyqwq.train`, evaluate with
`python -m qwqlearn.tinyqwq.evaluate`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from qwqlearn.tinyqwq.data import (FAMILIES, MAX_DIGITS, MAX_WORD, Problem, check, completion,
                                   extract_answer, parse_question, problems, prompt_text)

CHECKPOINT_DIR = Path(__file__).parent / "checkpoint"
VARIANTS = ("direct", "think", "reflect")
OFF_TASK = ("I can only do addition of whole numbers (up to {d} digits each) and counting a letter "
            "in a single word (up to {w} letters), e.g. \"What is 482 + 937?\" or "
            "\"How many r's are in strawberry?\"").format(d=MAX_DIGITS, w=MAX_WORD)

__all__ = ["CHECKPOINT_DIR", "FAMILIES", "VARIANTS", "Problem", "answer", "check", "checkpoint_path",
           "completion", "extract_answer", "load", "problems", "prompt_text"]


def checkpoint_path(variant: str = "reflect") -> Path:
    """The shipped checkpoint directory of a variant (reflect at the top, the others in subfolders)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {VARIANTS}")
    return CHECKPOINT_DIR if variant == "reflect" else CHECKPOINT_DIR / variant


def load(device: str = "cpu", variant: str = "reflect", path: str | Path | None = None):
    """(model, tokenizer) of a TinyQwQ checkpoint, in eval mode. path overrides the shipped one."""
    from qwqlearn.tokenizer import Tokenizer
    from qwqlearn.weights import load_pretrained

    path = Path(path) if path is not None else checkpoint_path(variant)
    if not (path / "model.safetensors").exists():
        raise FileNotFoundError(f"no TinyQwQ checkpoint at {path}; train one with "
                                f"`python -m qwqlearn.tinyqwq.train --variant {variant}`")
    model = load_pretrained(path, device=device).eval()
    return model, Tokenizer.from_pretrained(path)


@lru_cache(maxsize=3)
def _shipped(variant: str):
    return load(variant=variant)


def answer(question: str, mode: str = "reflect", model=None, tokenizer=None,
           max_new_tokens: int = 240) -> tuple[str, int | None]:
    """Ask TinyQwQ a question; returns (completion text, the number it answered or None).

    mode picks the shipped variant: "direct", "think" or "reflect" (ignored when
    model and tokenizer are given). A question outside the task gets an honest
    refusal instead of a made-up answer, since the model has never seen one.
    """
    problem = parse_question(question)
    if problem is None or not _in_range(problem):
        return OFF_TASK, None
    if model is None:
        model, tokenizer = _shipped(mode)
    elif tokenizer is None:
        raise ValueError("pass the tokenizer along with the model")
    from qwqlearn.tinyqwq.evaluate import solve

    text = solve(model, tokenizer, [problem], max_new_tokens=max_new_tokens)[0]
    return text, extract_answer(text)


def _in_range(p: Problem) -> bool:
    if p.word is not None:
        return 1 <= len(p.word) <= MAX_WORD
    return max(len(str(p.a)), len(str(p.b))) <= MAX_DIGITS
