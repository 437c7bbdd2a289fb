"""Evaluate TinyQwQ on held-out problems: does thinking help, and does reflection repair?

    python -m qwqlearn.tinyqwq.evaluate                  # the three shipped variants, one table
    python -m qwqlearn.tinyqwq.evaluate --n 100          # fewer problems, faster
    python -m qwqlearn.tinyqwq.evaluate --checkpoint runs/tinyqwq-reflect/step-00400

Three measurements, all greedy (temperature 0) on problems whose numbers and
words never appeared in training:

1. Exact-match accuracy per family: 3-digit addition, 4-digit addition, and
   letter counting in unseen words, for the direct / think / reflect variants
   trained on the same budget.
2. Spontaneous reflection: how often a completion says "Wait", and how often
   such a completion still ends with the right answer.
3. Error injection: the assistant turn is pre-filled with a correct start of the
   trace followed by one wrong number (a wrong column sum, or a wrong running
   count), and the model continues. Does it notice ("Wait") and does it repair
   the answer? A model never shown a repair has no reason to do either.
"""

from __future__ import annotations

import argparse
import random
import time
from collections import defaultdict
from pathlib import Path

import torch

from qwqlearn.tinyqwq import data

FAMILY_NAMES = {"add3": "3-digit add", "add4": "4-digit add", "count": "count (unseen words)"}


# -- generation, batched ----------------------------------------------------------------------

@torch.inference_mode()
def solve(model, tokenizer, problems, prefixes=None, max_new_tokens: int = 240, batch_size: int = 64):
    """Greedy completions (the text after the prompt's `<think>\\n`) for a list of problems.

    prefixes: optional text per problem that is pre-filled into the assistant turn
    (the returned text starts with it). Prompts of equal token length are batched
    together, since qwqlearn.generate takes equal-length rows without padding.
    """
    from qwqlearn.generate import generate

    end = tokenizer.special_tokens["<|im_end|>"]
    prefixes = prefixes or [""] * len(problems)
    encoded = []
    for p, pre in zip(problems, prefixes):
        ids = tokenizer.encode(data.prompt_text(p.question), allowed_special="all")
        encoded.append(ids + (tokenizer.encode(pre) if pre else []))
    by_length = defaultdict(list)
    for i, ids in enumerate(encoded):
        by_length[len(ids)].append(i)

    texts = [""] * len(problems)
    for length, idx in by_length.items():
        for start in range(0, len(idx), batch_size):
            chunk = idx[start:start + batch_size]
            prompt = torch.tensor([encoded[i] for i in chunk])
            budget = min(max_new_tokens, model.config.max_position_embeddings - length - 1)
            out = generate(model, prompt, budget, stop_ids=[end])
            for row, i in enumerate(chunk):
                new = out[row, length:].tolist()
                new = new[: new.index(end)] if end in new else new
                texts[i] = prefixes[i] + tokenizer.decode(new)
    return texts


# -- the three measurements ------------------------------------------------------------------------

def accuracy(model, tokenizer, family: str, n: int, seed: int = 0) -> dict:
    """Exact match on n held-out problems, plus how often the model said "Wait"."""
    probs = list(data.problems(family, n, seed=seed, split="test"))
    texts = solve(model, tokenizer, probs)
    correct = [data.check(p, t) for p, t in zip(probs, texts)]
    waits = [("Wait" in t) for t in texts]
    return {"acc": sum(correct) / n, "wait": sum(waits),
            "wait_ok": sum(c for c, w in zip(correct, waits) if w), "n": n}


def injection_probe(model, tokenizer, family: str, n: int, seed: int = 0) -> dict:
    """Pre-fill a trace with one wrong step; count notices ("Wait") and repairs (right answer)."""
    probs = list(data.problems(family, n, seed=seed + 1, split="test"))
    rng = random.Random(f"inject:{family}:{seed}")
    prefixes = [data.injected_prefix(p, rng) for p in probs]
    texts = solve(model, tokenizer, probs, prefixes)
    noticed = [("Wait" in t[len(pre):]) for t, pre in zip(texts, prefixes)]
    repaired = [data.check(p, t) for p, t in zip(probs, texts)]
    return {"noticed": sum(noticed) / n, "repaired": sum(repaired) / n, "n": n}


def evaluate(models: dict, n: int = 200, seed: int = 0) -> dict:
    """models: {variant name: (model, tokenizer)} -> nested dict of results."""
    results = {}
    for name, (model, tok) in models.items():
        r = {fam: accuracy(model, tok, fam, n if fam != "add4" else n // 2, seed) for fam in data.FAMILIES}
        if name != "direct":
            r["inject"] = {fam: injection_probe(model, tok, fam, n // 2, seed) for fam in ("add3", "count")}
        results[name] = r
    return results


def format_table(results: dict, n: int) -> str:
    lines = [f"TinyQwQ on held-out problems (greedy; {n} per family, {n // 2} for 4-digit and injection)",
             "",
             f"{'variant':<9}{'3-digit add':>12}{'4-digit add':>12}{'count':>8}"
             f"{'says Wait':>11}{'Wait->right':>12}{'inject add':>12}{'inject count':>14}",
             "-" * 90]
    for name, r in results.items():
        waits = sum(r[f]["wait"] for f in data.FAMILIES)
        wait_ok = sum(r[f]["wait_ok"] for f in data.FAMILIES)
        total = sum(r[f]["n"] for f in data.FAMILIES)
        wait = f"{waits / total:.1%}"
        wait_right = f"{wait_ok}/{waits}" if waits else "-"
        inj = {f: (f"{r['inject'][f]['noticed']:.0%}/{r['inject'][f]['repaired']:.0%}" if "inject" in r else "-")
               for f in ("add3", "count")}
        lines.append(f"{name:<9}{r['add3']['acc']:>12.1%}{r['add4']['acc']:>12.1%}{r['count']['acc']:>8.1%}"
                     f"{wait:>11}{wait_right:>12}{inj['add3']:>12}{inj['count']:>14}")
    lines += ["",
              "count = letter counting in words outside the training list.",
              "says Wait: share of all completions that reflect; Wait->right: of those, how many end correct.",
              "inject X: a wrong step is pre-filled mid-trace; noticed (says Wait) / repaired (right answer)."]
    return "\n".join(lines)


def main(argv=None) -> None:
    from qwqlearn.tinyqwq import load

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200, help="held-out problems per family")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--checkpoint", type=Path, action="append",
                    help="evaluate this checkpoint directory instead (repeatable)")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)

    t0 = time.perf_counter()
    if args.checkpoint:
        models = {str(p): load(path=p) for p in args.checkpoint}
    else:
        models = {v: load(variant=v) for v in ("direct", "think", "reflect")}
    results = evaluate(models, args.n, args.seed)
    print(format_table(results, args.n))
    print(f"\n(evaluated in {time.perf_counter() - t0:.0f}s)")


if __name__ == "__main__":
    main()
