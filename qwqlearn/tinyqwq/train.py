"""Train TinyQwQ from scratch on a CPU: tokenizer, model, data, one AdamW loop.

    python -m qwqlearn.tinyqwq.train                      # the shipped "reflect" model, ~12 min on 2 cores
    python -m qwqlearn.tinyqwq.train --quick              # ~1 minute, for the notebook and CI
    python -m qwqlearn.tinyqwq.train --variant direct     # same budget, answers without thinking
    python -m qwqlearn.tinyqwq.train --variant think      # same budget, traces without "Wait"
    python -m qwqlearn.tinyqwq.train --ship               # write into qwqlearn/tinyqwq/checkpoint/

The recipe, in the order this file runs it:

1. Tokenizer. Byte-level BPE trained with qwqlearn's own `train_bpe` on a sample
   of the task's text. Its vocabulary is small on purpose: an unseen word then
   splits into short pieces the model has learned to spell.
2. Model. Exactly Qwen2's architecture (RMSNorm, RoPE, GQA with QKV bias,
   SwiGLU, tied embeddings) via `qwqlearn.model`, at about a million parameters.
3. Data. An endless, seeded stream of ChatML conversations (`data.py`), one
   whole example per row, rows of similar length batched together; only the
   assistant's tokens count in the loss, because the model must learn to
   answer, not to ask.
4. Loop. Plain PyTorch AdamW with warm-up and a cosine decay, on 2 threads.
   Every variant gets the same number of steps of the same size, so the
   direct / think / reflect comparison is at equal compute.

Intermediate checkpoints go to runs/ (outside the package, git-ignored), each a
complete Hugging Face directory, so you can evaluate any of them and watch the
accuracy grow: `python -m qwqlearn.tinyqwq.evaluate --checkpoint runs/tinyqwq-reflect/step-00600`.
"""

from __future__ import annotations

import argparse
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from qwqlearn.config import QwenConfig
from qwqlearn.model import QwenForCausalLM
from qwqlearn.tinyqwq import data

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
CHECKPOINT_DIR = Path(__file__).parent / "checkpoint"   # the shipped reflect model; variants in subfolders


# -- 1. the recipe, in one place ----------------------------------------------------------------

@dataclass
class Recipe:
    variant: str = "reflect"      # direct | think | reflect
    seed: int = 0
    vocab_size: int = 512         # 256 bytes + 251 merges + 5 special tokens
    hidden_size: int = 128
    intermediate_size: int = 384
    num_layers: int = 4
    num_heads: int = 8
    num_kv_heads: int = 2
    context: int = 512            # max_position_embeddings
    batch_rows: int = 32          # examples per step (about 3,000 tokens)
    steps: int = 2700
    lr: float = 6e-3
    min_lr_ratio: float = 0.1
    warmup: int = 100
    weight_decay: float = 0.1
    checkpoints: int = 12         # intermediate checkpoints written to runs/

    @classmethod
    def quick(cls, variant: str = "reflect") -> "Recipe":
        """About a minute: enough for the traces' shape, not for accuracy."""
        return cls(variant=variant, steps=200, warmup=20, checkpoints=4)


def model_config(r: Recipe, tokenizer) -> QwenConfig:
    specials = tokenizer.special_tokens
    return QwenConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=r.hidden_size, intermediate_size=r.intermediate_size,
        num_hidden_layers=r.num_layers, num_attention_heads=r.num_heads, num_key_value_heads=r.num_kv_heads,
        max_position_embeddings=r.context, rope_theta=10_000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
        max_window_layers=r.num_layers, bos_token_id=specials["<|endoftext|>"],
        eos_token_id=specials["<|im_end|>"], torch_dtype="float32", name="TinyQwQ",
    )


# -- 2. tokenizer ---------------------------------------------------------------------------------

def tokenizer_corpus(seed: int = 0, n: int = 3000) -> str:
    """Text the BPE merges are learned from: prompts and completions of every variant.

    The same corpus for every variant, so all three models share one tokenizer.
    Only training-split problems are used (no held-out word shapes the vocabulary).
    The counting traces spell words token by token, but the tokens do not exist
    yet: here they are written letter by letter (a byte-level tokenizer's pieces).
    """
    from qwqlearn.tokenizer import Tokenizer

    letters = Tokenizer({bytes([b]): b for b in range(256)})
    rng = random.Random(f"tokenizer:{seed}")
    parts = []
    for i in range(n):
        family = "count" if i % 2 else "add"
        p = next(data.problems(family, 1, seed=rng.randrange(10**9), split="train", paraphrase=True))
        variant = ("direct", "think", "reflect")[i % 3]
        parts.append(data.prompt_text(p.question) + data.completion(p, variant, rng, tokenizer=letters)
                     + "<|im_end|>")
    return "\n".join(parts)


def build_tokenizer(r: Recipe):
    from qwqlearn.tokenizer import train_bpe

    # train_bpe's vocab_size counts bytes + merges; the special tokens come on top.
    return train_bpe(tokenizer_corpus(r.seed), r.vocab_size - len(SPECIAL_TOKENS),
                     special_tokens=SPECIAL_TOKENS, progress=False)


# -- 3. data: examples, loss masks, packing --------------------------------------------------------

def encode_example(tokenizer, p: data.Problem, variant: str, rng: random.Random):
    """(ids, mask): the prompt (mask 0) then the assistant's completion and <|im_end|> (mask 1).

    Prompt and completion are encoded separately, exactly as at inference time,
    where the prompt is encoded and the rest is generated token by token.
    """
    prompt = tokenizer.encode(data.prompt_text(p.question), allowed_special="all")
    answer = tokenizer.encode(data.completion(p, variant, rng, tokenizer=tokenizer), allowed_special="all") + [tokenizer.special_tokens["<|im_end|>"]]
    return prompt + answer, [0] * len(prompt) + [1] * len(answer)


def example_stream(tokenizer, variant: str, seed: int):
    """Endless training examples, half additions, half letter counts."""
    rng = random.Random(f"train:{variant}:{seed}")
    while True:
        family = "add" if rng.random() < 0.5 else "count"
        p = next(data.problems(family, 1, seed=rng.randrange(10**9), split="train", paraphrase=True))
        yield encode_example(tokenizer, p, variant, rng)


def padded_batches(examples, rows: int, pad_id: int, pool: int = 8):
    """[rows, length] batches with one whole example per row, padded at the end.

    Why not pack several examples into one row? QwenForCausalLM has no
    document mask, so a packed example would attend to the one before it, and
    that example's " +" and "?" would look just like its own: the very look-ups
    the task is about get a decoy. Instead rows are filled from a pool of
    `pool` batches sorted by length, so rows in a batch have similar lengths and
    little padding. Padding is masked out of the loss.
    Yields (input_ids, target_ids, loss_mask), all [rows, length - 1].
    """
    while True:
        batch_pool = sorted((next(examples) for _ in range(rows * pool)), key=lambda ex: len(ex[0]))
        chunks = [batch_pool[i:i + rows] for i in range(0, len(batch_pool), rows)]
        for chunk in chunks:
            length = max(len(ids) for ids, _ in chunk)
            ids = torch.full((rows, length), pad_id, dtype=torch.long)
            mask = torch.zeros((rows, length), dtype=torch.bool)
            for row, (ex_ids, ex_mask) in enumerate(chunk):
                ids[row, :len(ex_ids)] = torch.tensor(ex_ids)
                mask[row, :len(ex_ids)] = torch.tensor(ex_mask, dtype=torch.bool)
            # Next-token prediction: position t predicts token t+1; it counts if t+1 is an answer token.
            yield ids[:, :-1], ids[:, 1:], mask[:, 1:]


# -- 4. model and optimiser -------------------------------------------------------------------------

def init_weights(model: QwenForCausalLM, std: float = 0.02) -> None:
    """GPT-style init: small normal weights, zero biases. (PyTorch's defaults give an
    N(0, 1) embedding, whose tied lm_head would start with huge logits.)"""
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, torch.nn.Embedding):
            torch.nn.init.normal_(module.weight, std=std)


def make_optimizer(model: torch.nn.Module, r: Recipe) -> torch.optim.AdamW:
    """AdamW; weight decay only on matrices (not on norms' gains or biases)."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": r.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=r.lr, betas=(0.9, 0.95))


def lr_at(step: int, r: Recipe) -> float:
    """Linear warm-up, then cosine decay to min_lr_ratio * lr."""
    if step < r.warmup:
        return r.lr * (step + 1) / r.warmup
    progress = (step - r.warmup) / max(1, r.steps - r.warmup)
    return r.lr * (r.min_lr_ratio + (1 - r.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def save_checkpoint(model, tokenizer, path: Path, meta: dict | None = None) -> None:
    """A complete Hugging Face directory: config.json, model.safetensors, tokenizer files."""
    import json

    from qwqlearn.weights import save_pretrained

    save_pretrained(model, path)
    tokenizer.save_pretrained(path, chat_template="qwq-32b")
    cfg = model.config
    (path / "generation_config.json").write_text(json.dumps({
        "bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id,
        "pad_token_id": cfg.bos_token_id, "do_sample": False}, indent=2) + "\n")
    if meta:
        (path / "tinyqwq.json").write_text(json.dumps(meta, indent=2) + "\n")


# -- the loop -----------------------------------------------------------------------------------------

def train(r: Recipe, run_dir: Path = Path("runs/tinyqwq-reflect"), out: Path | None = None,
          progress: bool = True, threads: int = 2):
    """Train one variant; returns (model, tokenizer, seconds). Intermediate checkpoints go to run_dir."""
    t0 = time.perf_counter()
    torch.set_num_threads(threads)
    torch.manual_seed(r.seed)

    tokenizer = build_tokenizer(r)
    model = QwenForCausalLM(model_config(r, tokenizer))
    init_weights(model)
    model.train()
    optimizer = make_optimizer(model, r)
    pad = tokenizer.special_tokens["<|endoftext|>"]
    batches = padded_batches(example_stream(tokenizer, r.variant, r.seed), r.batch_rows, pad)
    save_every = max(1, r.steps // r.checkpoints)
    print(f"TinyQwQ-{r.variant}: {model.num_parameters():,} parameters, vocab {r.vocab_size}, "
          f"{r.steps} steps x {r.batch_rows} examples (tokenizer took {time.perf_counter() - t0:.0f}s)")

    bar = tqdm(range(r.steps), desc=f"train {r.variant}", disable=not progress, mininterval=1.0)
    seen_tokens, t_loop, smooth, history = 0, time.perf_counter(), None, []
    for step in bar:
        inputs, targets, mask = next(batches)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, r)
        logits = model(inputs)                                   # [rows, seq, vocab]
        losses = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
        loss = (losses * mask.flatten()).sum() / mask.sum()      # answer tokens only
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

        seen_tokens += inputs.numel()
        smooth = loss.item() if smooth is None else 0.95 * smooth + 0.05 * loss.item()
        bar.set_postfix(loss=f"{smooth:.3f}", tok_s=f"{seen_tokens / (time.perf_counter() - t_loop):,.0f}")
        if (step + 1) % save_every == 0 or step + 1 == r.steps:
            model.eval()
            path = run_dir / f"step-{step + 1:05d}"
            save_checkpoint(model, tokenizer, path, {"step": step + 1, "loss": round(smooth, 4)})
            acc = quick_accuracy(model, tokenizer)
            history.append({"step": step + 1, "loss": round(smooth, 4), **acc})
            bar.write(f"step {step + 1:5d}  loss {smooth:.3f}  held-out: " +
                      "  ".join(f"{k} {v:.0%}" for k, v in acc.items()) + f"  -> {path}")
            model.train()

    seconds = time.perf_counter() - t0
    model.eval()
    meta = {"variant": r.variant, "seed": r.seed, "steps": r.steps, "tokens": seen_tokens,
            "train_seconds": round(seconds), "final_loss": round(smooth, 4), "history": history}
    if out is not None:
        save_checkpoint(model, tokenizer, out, meta)
        print(f"wrote {out}")
    print(f"trained TinyQwQ-{r.variant} in {seconds / 60:.1f} min ({seen_tokens:,} tokens)")
    return model, tokenizer, seconds


def quick_accuracy(model, tokenizer, n: int = 32) -> dict[str, float]:
    """Greedy accuracy on a few held-out problems per family: a pulse, not the evaluation."""
    from qwqlearn.tinyqwq.evaluate import solve

    out = {}
    for family in ("add3", "count"):
        probs = list(data.problems(family, n, seed=123, split="test"))
        texts = solve(model, tokenizer, probs)
        out[family] = sum(data.check(p, t) for p, t in zip(probs, texts)) / n
    return out


def ship_path(variant: str) -> Path:
    """Where a variant lives in the package: reflect at the top, the others in subfolders."""
    return CHECKPOINT_DIR if variant == "reflect" else CHECKPOINT_DIR / variant


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", choices=["direct", "think", "reflect"], default="reflect")
    ap.add_argument("--quick", action="store_true", help="about one minute (notebook / CI)")
    ap.add_argument("--steps", type=int, help="override the number of optimizer steps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", type=Path, default=Path("runs"), help="where intermediate checkpoints go")
    ap.add_argument("--out", type=Path, help="final checkpoint directory (default runs/tinyqwq-<variant>/final)")
    ap.add_argument("--ship", action="store_true", help="write the final checkpoint into the package")
    ap.add_argument("--lr", type=float, help="override the peak learning rate")
    ap.add_argument("--rows", type=int, help="override the rows per batch")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (the budget assumes 2 cores)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    r = Recipe.quick(args.variant) if args.quick else Recipe(variant=args.variant)
    r.seed = args.seed
    if args.steps:
        r.steps = args.steps
    if args.lr:
        r.lr = args.lr
    if args.rows:
        r.batch_rows = args.rows
    run_dir = args.runs / f"tinyqwq-{args.variant}{'-quick' if args.quick else ''}"
    out = ship_path(args.variant) if args.ship else (args.out or run_dir / "final")
    train(r, run_dir, out, progress=not args.no_progress, threads=args.threads)


if __name__ == "__main__":
    main()
