"""Autoregressive generation: prefill once, then one token at a time from a static KV cache.

    >>> ids = generate(model, prompt_ids, max_new_tokens=32)                  # greedy
    >>> ids = generate(model, prompt_ids, 256, temperature=0.6, top_p=0.95, top_k=30, seed=0)
    >>> for tok in stream(model, prompt_ids, 64, stop_ids=[eos]): print(tok)

The logits of the last position go through the usual processors, in the same
order as transformers: repetition penalty (prompt + output), presence penalty
(output only, OpenAI/vLLM style), temperature, top-k, top-p, min-p, then a draw.
Temperature 0 means greedy (argmax), and then the other sampling settings are ignored.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch


def process_logits(logits: torch.Tensor, seen: torch.Tensor, generated: torch.Tensor, *, temperature=1.0,
                   top_k=0, top_p=1.0, min_p=0.0, repetition_penalty=1.0, presence_penalty=0.0) -> torch.Tensor:
    """logits: [batch, vocab] fp32 -> [batch, vocab] with filtered entries set to -inf.

    seen: [batch, vocab] bool, tokens in prompt or output; generated: same, output only.
    """
    logits = logits.float().clone()
    if repetition_penalty != 1.0:  # CTRL-style: shrink the logit of any token already seen
        penalized = torch.where(logits > 0, logits / repetition_penalty, logits * repetition_penalty)
        logits = torch.where(seen, penalized, logits)
    if presence_penalty:
        logits = logits - presence_penalty * generated.float()
    if temperature > 0:
        logits = logits / temperature
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop_sorted = cum - sorted_logits.softmax(-1) >= top_p  # keep the smallest prefix reaching top_p
        logits = logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), float("-inf"))
    if min_p > 0:
        probs = logits.softmax(-1)
        logits = logits.masked_fill(probs < min_p * probs.max(-1, keepdim=True).values, float("-inf"))
    return logits


def _check_prompt(model, input_ids: torch.Tensor, max_new_tokens: int) -> int:
    if input_ids.ndim != 2:
        raise ValueError(f"input_ids must be [batch, seq], got shape {tuple(input_ids.shape)}")
    if input_ids.shape[1] == 0:
        raise ValueError("the prompt is empty: give at least one token")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    vocab, context = model.config.vocab_size, model.config.max_position_embeddings
    if int(input_ids.min()) < 0 or int(input_ids.max()) >= vocab:
        bad = input_ids[(input_ids < 0) | (input_ids >= vocab)][0].item()
        raise ValueError(f"token id {bad} is outside the vocabulary (0 .. {vocab - 1})")
    if input_ids.shape[1] >= context:
        raise ValueError(f"the prompt has {input_ids.shape[1]} tokens, but the context holds {context}: "
                         "no room to generate")
    return min(max_new_tokens, context - input_ids.shape[1])


@torch.inference_mode()
def stream(model, input_ids: torch.Tensor, max_new_tokens: int, temperature: float = 0.0, top_k: int = 0,
           top_p: float = 1.0, min_p: float = 0.0, repetition_penalty: float = 1.0,
           presence_penalty: float = 0.0, stop_ids: Sequence[int] = (), seed: int | None = None
           ) -> Iterator[torch.Tensor]:
    """Yield the next tokens, [batch] int64 per step, until max_new_tokens or every row hit a stop id.

    input_ids: [batch, seq]; rows must have equal length (no padding). A row that
    has stopped keeps yielding its stop id. Generation also ends at the model's context.
    seed=None samples differently on every call; an int makes sampling reproducible.
    """
    n_new = _check_prompt(model, input_ids, max_new_tokens)
    batch, prompt_len = input_ids.shape
    device = input_ids.device
    gen = torch.Generator(device=device)
    if seed is not None:
        gen.manual_seed(seed)
    else:
        gen.seed()  # a fresh random seed; a new Generator would otherwise always start from the same one
    vocab = model.config.vocab_size
    seen = torch.zeros(batch, vocab, dtype=torch.bool, device=device).scatter_(1, input_ids, True)
    generated = torch.zeros_like(seen)
    stops = torch.tensor(list(stop_ids), dtype=torch.long, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    finished_with = torch.zeros(batch, dtype=torch.long, device=device)

    cache = model.new_cache(batch, prompt_len + n_new)  # allocated once for the whole call
    logits = model(input_ids, cache=cache, start=0, last_only=True)[:, -1]
    for step in range(n_new):
        if temperature == 0:
            logits = process_logits(logits, seen, generated, temperature=0, top_k=0, top_p=1.0, min_p=0.0,
                                    repetition_penalty=repetition_penalty, presence_penalty=presence_penalty)
            nxt = logits.argmax(-1)
        else:
            logits = process_logits(logits, seen, generated, temperature=temperature, top_k=top_k,
                                    top_p=top_p, min_p=min_p, repetition_penalty=repetition_penalty,
                                    presence_penalty=presence_penalty)
            nxt = torch.multinomial(logits.softmax(-1), 1, generator=gen).squeeze(1)
        nxt = torch.where(done, finished_with, nxt)
        yield nxt
        seen[torch.arange(batch), nxt] = True
        generated[torch.arange(batch), nxt] = True
        if len(stops):
            hit = torch.isin(nxt, stops) & ~done
            finished_with = torch.where(hit, nxt, finished_with)
            done |= hit
            if bool(done.all()):
                return
        if step + 1 < n_new:
            logits = model(nxt[:, None], cache=cache, start=prompt_len + step)[:, -1]


def generate(model, input_ids: torch.Tensor, max_new_tokens: int, temperature: float = 0.0, top_k: int = 0,
             top_p: float = 1.0, min_p: float = 0.0, repetition_penalty: float = 1.0,
             presence_penalty: float = 0.0, stop_ids: Sequence[int] = (), seed: int | None = None
             ) -> torch.Tensor:
    """input_ids: [batch, seq] -> [batch, seq + n] with n <= max_new_tokens (prompt + completion).

    Stops early once every row produced one of stop_ids (the stop id is kept).
    """
    steps = list(stream(model, input_ids, max_new_tokens, temperature, top_k, top_p, min_p,
                        repetition_penalty, presence_penalty, stop_ids, seed))
    if not steps:
        return input_ids.clone()
    return torch.cat([input_ids, torch.stack(steps, dim=1)], dim=1)
