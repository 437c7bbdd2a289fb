"""Instant feedback for the notebook exercises: your function against the reference.

    >>> from qwqlearn import check
    >>> check.rmsnorm(my_rmsnorm)
    ✅ rmsnorm: matches Qwen2RMSNorm on 3 cases (max |Δ| 0.0e+00).

Each checker runs the learner's function on a few cases, compares it with
qwqlearn's own implementation, and when it differs, tries the usual mistakes
(no eps, LayerNorm's mean subtraction, wrong half rotated, ...) to say which
one it is. A stub that still raises NotImplementedError gets a friendly nudge,
never a traceback. A pass is recorded with qwqlearn.progress.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable

import torch
import torch.nn.functional as F

from qwqlearn import progress


class _Fail(Exception):
    pass


def exercise(chapter: str, name: str, reference: str):
    """Register a checker: run it, print one verdict line, record a pass. Returns True/False."""
    progress.EXERCISES.setdefault(chapter, []).append(name)

    def wrap(body: Callable) -> Callable:
        def checker(fn: Callable, *args, **kwargs) -> bool:
            try:
                detail = body(fn, *args, **kwargs)
            except NotImplementedError:
                print(f"⏳ {name}: not implemented yet. Replace `raise NotImplementedError` with your code, "
                      "then run this cell again.")
                return False
            except _Fail as e:
                print(f"❌ {name}: {e}")
                return False
            except Exception as e:  # the learner's code crashed: show where, briefly
                frame = traceback.extract_tb(e.__traceback__)[-1]
                print(f"❌ {name}: your function raised {type(e).__name__}: {e} "
                      f"(line {frame.lineno}: {frame.line})")
                return False
            print(f"✅ {name}: matches {reference}{detail}")
            progress.record(chapter, name)
            return True
        checker.__name__ = body.__name__
        checker.__doc__ = body.__doc__
        return checker
    return wrap


def _compare(got, want: torch.Tensor, what: str, tol: float, mistakes: dict[str, torch.Tensor] = {}) -> float:
    """Raise _Fail with a specific message unless got ≈ want; return max |Δ|."""
    if not isinstance(got, torch.Tensor):
        raise _Fail(f"{what}: expected a torch.Tensor, got {type(got).__name__}")
    if got.shape != want.shape:
        raise _Fail(f"{what}: expected shape {tuple(want.shape)}, got {tuple(got.shape)}")
    if got.dtype != want.dtype:
        raise _Fail(f"{what}: expected dtype {want.dtype}, got {got.dtype}")
    diff = (got.float() - want.float()).abs().max().item()
    if diff <= tol:
        return diff
    for hint, wrong in mistakes.items():
        if wrong.shape == got.shape and (got.float() - wrong.float()).abs().max().item() <= tol:
            raise _Fail(f"{what}: off by up to {diff:.3g}. Your result matches what you get if you {hint}.")
    raise _Fail(f"{what}: values differ from the reference by up to {diff:.3g} (tolerance {tol:g}).")


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- chapter 01 ---------------------------------------------------------------------------

@exercise("01", "bpe_merge", "the reference merge")
def bpe_merge(merge: Callable) -> str:
    """merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]: replace every
    non-overlapping occurrence of pair, left to right."""
    cases = [([1, 2, 3, 1, 2], (1, 2), 9, [9, 3, 9]), ([5, 5, 5], (5, 5), 7, [7, 5]),
             ([1, 2], (2, 1), 9, [1, 2]), ([], (1, 2), 9, []), ([4, 1, 2, 1, 2, 2], (1, 2), 8, [4, 8, 8, 2])]
    for ids, pair, new, want in cases:
        got = merge(list(ids), pair, new)
        if got != want:
            hint = " Overlapping pairs: after a merge, skip both of its tokens." if ids == [5, 5, 5] else ""
            raise _Fail(f"merge({ids}, {pair}, {new}) returned {got}, expected {want}.{hint}")
    return f" on {len(cases)} cases, including overlaps and an empty list."


# -- chapter 02 ---------------------------------------------------------------------------

@exercise("02", "rmsnorm", "Qwen2RMSNorm")
def rmsnorm(fn: Callable) -> str:
    """fn(x: [..., hidden], weight: [hidden], eps: float) -> [..., hidden], same dtype as x."""
    from transformers.models.qwen2.modeling_qwen2 import Qwen2RMSNorm

    worst = 0.0
    for i, dtype in enumerate((torch.float32, torch.float32, torch.bfloat16)):
        x = (torch.randn(2, 5, 64, generator=_gen(i)) * (1 + 9 * i)).to(dtype)
        w = (1 + 0.1 * torch.randn(64, generator=_gen(10 + i))).to(dtype)
        eps = 1e-6 if i else 1e-1  # a big eps in case 0 makes a forgotten eps visible
        ref = Qwen2RMSNorm(64, eps).to(dtype)
        ref.weight.data.copy_(w)
        want = ref(x).detach()
        x32 = x.float()
        mistakes = {
            "forget eps": (w * (x32 / x32.pow(2).mean(-1, keepdim=True).sqrt()).to(dtype)),
            "subtract the mean first (that is LayerNorm)":
                w * ((x32 - x32.mean(-1, keepdim=True)) * torch.rsqrt(x32.var(-1, unbiased=False, keepdim=True) + eps)).to(dtype),
            "divide by the root of the sum instead of the mean":
                w * (x32 * torch.rsqrt(x32.pow(2).sum(-1, keepdim=True) + eps)).to(dtype),
            "forget the weight": (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(dtype),
            "compute in bf16 instead of upcasting to fp32":
                w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)),
        }
        tol = 1e-5 if dtype == torch.float32 else 0.0
        worst = max(worst, _compare(fn(x, w, eps), want, f"case {i} ({str(dtype)[6:]})", tol, mistakes))
    return f" on 3 cases, fp32 and bf16 (max |Δ| {worst:.1e})."


# -- chapter 03 ---------------------------------------------------------------------------

@exercise("03", "apply_rope", "transformers' apply_rotary_pos_emb")
def apply_rope(fn: Callable) -> str:
    """fn(x: [batch, heads, seq, head_dim], cos: [seq, head_dim], sin: [seq, head_dim]) -> same shape as x."""
    from qwqlearn.rope import rope_cos_sin, rope_inv_freq

    x = torch.randn(1, 3, 6, 16, generator=_gen(3))
    cos, sin = rope_cos_sin(torch.arange(6), rope_inv_freq(16, 1e4), torch.float32)
    from transformers.models.qwen2.modeling_qwen2 import apply_rotary_pos_emb

    want, _ = apply_rotary_pos_emb(x, x, cos[None], sin[None])
    x1, x2 = x[..., :8], x[..., 8:]
    interleaved = torch.stack((-x[..., 1::2], x[..., ::2]), -1).flatten(-2)
    mistakes = {
        "rotate the other way ((x2, -x1) instead of (-x2, x1))": x * cos + torch.cat((x2, -x1), -1) * sin,
        "pair neighbouring channels (2i, 2i+1) — that is GPT-J/LLaMA-Meta style, not Qwen's split halves":
            x * cos + interleaved * sin,
        "swap cos and sin": x * sin + torch.cat((-x2, x1), -1) * cos,
    }
    d = _compare(fn(x, cos, sin), want, "rotated x", 1e-6, mistakes)
    return f" (max |Δ| {d:.1e})."


# -- chapter 04 ---------------------------------------------------------------------------

@exercise("04", "repeat_kv", "transformers' repeat_kv")
def repeat_kv(fn: Callable) -> str:
    """fn(x: [batch, kv_heads, seq, head_dim], n_rep: int) -> [batch, kv_heads * n_rep, seq, head_dim]."""
    from transformers.models.qwen2.modeling_qwen2 import repeat_kv as ref

    x = torch.randn(2, 3, 4, 5, generator=_gen(4))
    mistakes = {"tile the heads (k0,k1,k2,k0,k1,k2,...) instead of repeating each one (k0,k0,k1,k1,...)":
                x.repeat(1, 5, 1, 1)}
    _compare(fn(x, 5), ref(x, 5), "repeat_kv(x, 5)", 0.0, mistakes)
    _compare(fn(x, 1), x, "repeat_kv(x, 1)", 0.0)
    return ": query head h reads kv head h // n_rep."


@exercise("04", "causal_attention", "F.scaled_dot_product_attention(is_causal=True)")
def causal_attention(fn: Callable) -> str:
    """fn(q, k, v: [batch, heads, seq, head_dim]) -> [batch, heads, seq, head_dim]."""
    q, k, v = (torch.randn(1, 2, 7, 8, generator=_gen(i)) for i in (5, 6, 7))
    want = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    scores = q @ k.transpose(-1, -2)
    mask = torch.ones(7, 7, dtype=torch.bool).tril()
    mistakes = {
        "forget the causal mask": F.scaled_dot_product_attention(q, k, v),
        "forget to scale by 1/sqrt(head_dim)": scores.masked_fill(~mask, float("-inf")).softmax(-1) @ v,
        "mask the diagonal too (a token must see itself)":
            (scores / 8**0.5).masked_fill(~mask.tril(-1), float("-inf")).softmax(-1).nan_to_num() @ v,
        "softmax over the wrong axis": (scores / 8**0.5).masked_fill(~mask, float("-inf")).softmax(-2).nan_to_num() @ v,
    }
    d = _compare(fn(q, k, v), want, "attention output", 1e-5, mistakes)
    return f" (max |Δ| {d:.1e})."


# -- chapter 05 ---------------------------------------------------------------------------

@exercise("05", "swiglu", "Qwen2MLP")
def swiglu(fn: Callable) -> str:
    """fn(x: [..., hidden], w_gate: [inter, hidden], w_up: [inter, hidden], w_down: [hidden, inter]) -> [..., hidden]."""
    x = torch.randn(2, 3, 16, generator=_gen(8))
    wg, wu = torch.randn(40, 16, generator=_gen(9)) / 4, torch.randn(40, 16, generator=_gen(10)) / 4
    wd = torch.randn(16, 40, generator=_gen(11)) / 6
    gate, up = x @ wg.T, x @ wu.T
    want = (F.silu(gate) * up) @ wd.T
    mistakes = {
        "apply SiLU to the up projection instead of the gate": (gate * F.silu(up)) @ wd.T,
        "use ReLU instead of SiLU": (F.relu(gate) * up) @ wd.T,
        "use sigmoid instead of SiLU (SiLU is x * sigmoid(x))": (torch.sigmoid(gate) * up) @ wd.T,
        "forget the up projection (no gating)": F.silu(gate) @ wd.T,
    }
    d = _compare(fn(x, wg, wu, wd), want, "MLP output", 1e-5, mistakes)
    return f" (max |Δ| {d:.1e})."


# -- chapter 06 ---------------------------------------------------------------------------

@exercise("06", "decoder_layer", "qwqlearn's DecoderLayer (itself verified against Qwen2DecoderLayer)")
def decoder_layer(fn: Callable, layer) -> str:
    """fn(layer, x, cos, sin) -> [batch, seq, hidden]: one pre-norm block from the layer's parts."""
    import copy

    from qwqlearn.rope import rope_cos_sin, rope_inv_freq

    layer = copy.deepcopy(layer)  # distinct norm gains, so mixing up the two norms shows
    with torch.no_grad():
        for i, norm in enumerate((layer.input_layernorm, layer.post_attention_layernorm)):
            norm.weight.copy_(1 + 0.3 * torch.randn(norm.weight.shape, generator=_gen(30 + i)))
    x = torch.randn(1, 6, layer.self_attn.n_heads * layer.self_attn.head_dim, generator=_gen(12))
    cos, sin = rope_cos_sin(torch.arange(6), rope_inv_freq(layer.self_attn.head_dim, 1e6), x.dtype)
    with torch.no_grad():
        want = layer(x, cos, sin)
        attn = lambda h: layer.self_attn(h, cos, sin)  # noqa: E731
        h_post = x + attn(layer.input_layernorm(x))
        mistakes = {
            "normalize after the residual add (post-norm) instead of before": layer.post_attention_layernorm(
                layer.input_layernorm(x + attn(x)) + layer.mlp(layer.input_layernorm(x + attn(x)))),
            "forget the residual connections": layer.mlp(layer.post_attention_layernorm(attn(layer.input_layernorm(x)))),
            "reuse input_layernorm before the MLP": h_post + layer.mlp(layer.input_layernorm(h_post)),
        }
        d = _compare(fn(layer, x, cos, sin), want, "layer output", 1e-5, mistakes)
    return f" (max |Δ| {d:.1e})."


# -- chapter 07 ---------------------------------------------------------------------------

@exercise("07", "top_p_filter", "qwqlearn.generate.process_logits(top_p=...)")
def top_p_filter(fn: Callable) -> str:
    """fn(logits: [vocab], top_p: float) -> [vocab] with the tokens outside the nucleus set to -inf."""
    from qwqlearn.generate import process_logits

    none = torch.zeros(1, 50, dtype=torch.bool)
    for i, p in enumerate((0.5, 0.9, 0.99, 1e-6)):
        logits = torch.randn(50, generator=_gen(20 + i)) * 3
        want = process_logits(logits[None], none, none, top_p=p)[0]
        got = fn(logits.clone(), p)
        if not isinstance(got, torch.Tensor) or got.shape != want.shape:
            raise _Fail(f"expected a tensor of shape {tuple(want.shape)}, got {getattr(got, 'shape', type(got))}")
        kept, want_kept = torch.isfinite(got), torch.isfinite(want)
        if not torch.equal(kept, want_kept):
            n, m = int(kept.sum()), int(want_kept.sum())
            hint = ("keep the token that crosses top_p too (the nucleus is the smallest set whose "
                    "probability reaches top_p)") if n == m - 1 else "sort probabilities in descending order"
            if p == 1e-6 and n == 0:
                hint = "always keep at least the most likely token"
            raise _Fail(f"top_p={p}: you kept {n} tokens, the reference keeps {m}. Hint: {hint}.")
        _compare(got[kept], want[want_kept], f"top_p={p} kept logits", 1e-6)
    return " on 4 cases, including a tiny top_p."


# -- chapter 10 ---------------------------------------------------------------------------

def _addition_trace(a: int, b: int, ones_first: bool = True, carry: bool = True,
                    final_carry: bool = True) -> list[str]:
    """tinyqwq.data.addition_lines without a slip, or with one of its classic mistakes."""
    from qwqlearn.tinyqwq.data import PLACES

    width = max(len(str(a)), len(str(b)))
    da, db = ([(n // 10 ** i) % 10 for i in range(width)] for n in (a, b))
    order = list(range(width)) if ones_first else list(range(width - 1, -1, -1))
    lines, c, so_far = ["Add the columns, starting from the ones:"], 0, ""
    for i in order:
        s = da[i] + db[i] + c
        so_far = (str(s) if i == order[-1] and final_carry else str(s % 10)) + so_far
        lines.append(f"{PLACES[i]} {da[i]}+{db[i]}{'+1' if c else ''}={s}, so {so_far}")
        c = s // 10 if carry else 0
    lines.append(f"Check: {da[0]}+{db[0]} ends in {(da[0] + db[0]) % 10}, and so does {int(so_far)}.")
    return lines


@exercise("10", "addition_trace", "tinyqwq.data.addition_lines")
def addition_trace(fn: Callable) -> str:
    """fn(a: int, b: int) -> list[str]: TinyQwQ's column-addition trace, one line per step."""
    from qwqlearn.tinyqwq.data import addition_lines

    cases = [(482, 937), (5, 7), (999, 1), (1234, 8766), (40, 2), (0, 0), (9876, 5)]
    for a, b in cases:
        want = addition_lines(a, b)
        got = fn(a, b)
        if isinstance(got, str):
            raise _Fail(f"({a}, {b}): return a list of lines, not one string (try text.split('\\n')).")
        if not isinstance(got, list) or not all(isinstance(line, str) for line in got):
            raise _Fail(f"({a}, {b}): expected a list of str, got {type(got).__name__}.")
        if got == want:
            continue
        mistakes = {
            "start from the leftmost digit (the model reads ones first)": _addition_trace(a, b, ones_first=False),
            "forget to pass the carry on to the next column": _addition_trace(a, b, carry=False),
            "forget the last carry in front of the sum": _addition_trace(a, b, final_carry=False),
        }
        for hint, wrong in mistakes.items():
            if got == wrong:
                raise _Fail(f"({a}, {b}): your trace matches what you get if you {hint}.")
        if len(got) != len(want):
            raise _Fail(f"({a}, {b}): expected {len(want)} lines, got {len(got)}.")
        i = next(i for i, (g, w) in enumerate(zip(got, want)) if g != w)
        raise _Fail(f"({a}, {b}), line {i}: got {got[i]!r}, expected {want[i]!r}.")
    return f" on {len(cases)} additions, including carries into a new digit and operands of unequal length."


# -- chapter 09 ---------------------------------------------------------------------------

@exercise("09", "ngram_loop", "qwqlearn.reasoning.NgramRepetition (via find_loop)")
def ngram_loop(fn: Callable) -> str:
    """fn(tokens: list[int], n: int, max_count: int) -> bool: True when some n-gram (overlapping
    windows) occurs more than max_count times in tokens."""
    from qwqlearn.reasoning import NgramRepetition, find_loop

    def counts(tokens, n, step):
        seen: dict = {}
        for i in range(0, len(tokens) - n + 1, step):
            seen[tuple(tokens[i:i + n])] = seen.get(tuple(tokens[i:i + n]), 0) + 1
        return seen

    cases = [([7] * 10, 2, 5),                         # overlapping: (7, 7) occurs 9 times
             ([1, 2, 3] * 4, 3, 4),                    # exactly... 4 times: not more than 4
             ([1, 2, 3] * 4, 3, 3),                    # 4 > 3
             ([5, 1, 2, 9, 1, 2], 2, 1),               # the last n-gram (1, 2) is the repeat
             ([1, 2, 3, 4], 5, 0),                     # shorter than n: no n-gram at all
             ([], 3, 0),
             ([3, 1, 4, 1, 5, 9, 2, 6], 1, 1),         # 1 occurs twice
             ([3, 1, 4, 1, 5, 9, 2, 6], 2, 1)]         # all bigrams distinct
    for tokens, n, k in cases:
        want = find_loop(tokens, [NgramRepetition(n, k, window=len(tokens) + n)]) is not None
        got = fn(list(tokens), n, k)
        if not isinstance(got, bool):
            raise _Fail(f"ngram_loop({tokens}, n={n}, max_count={k}) returned {got!r}; return True or False")
        if got == want:
            continue
        c_over, c_step = counts(tokens, n, 1), counts(tokens, n, n)
        hints = []
        if want and not any(v > k for v in c_step.values()):
            hints.append("count overlapping windows: slide by one token, not by n")
        if not want and any(v == k for v in c_over.values()):
            hints.append("flag an n-gram seen *more than* max_count times (>), not max_count times (>=)")
        if want and not any(v > k for v in counts(tokens[:-1], n, 1).values()):
            hints.append("include the last n-gram: range(len(tokens) - n + 1)")
        hint = f" Hint: {hints[0]}." if hints else ""
        raise _Fail(f"ngram_loop({tokens}, n={n}, max_count={k}) returned {got}, expected {want}.{hint}")
    return f" on {len(cases)} token streams, overlaps and the 'more than' edge included."


# -- chapter 00 ---------------------------------------------------------------------------

def _param_count_mistakes(cfg) -> dict[str, int]:
    """The count a learner gets with one classic slip, as the difference from the right count."""
    h, L, kv = cfg.hidden_size, cfg.num_hidden_layers, cfg.num_key_value_heads * cfg.head_dim
    tied_extra = cfg.vocab_size * h if cfg.tie_word_embeddings else 0
    return {
        "forget the q/k/v biases (Qwen2 has a bias on q, k and v, none on o_proj or the MLP)": -L * (h + 2 * kv),
        "count the tied embedding twice (a tied lm_head is the same matrix as embed_tokens)": tied_extra,
        "forget the RMSNorm weights (two per layer plus the final norm)": -(2 * L + 1) * h,
        "forget the final norm (after the last layer)": -h,
        "size k_proj and v_proj with num_attention_heads instead of num_key_value_heads":
            2 * L * (h * h + h - kv * h - kv),
        "forget the untied lm_head": -(cfg.vocab_size * h if not cfg.tie_word_embeddings else 0),
    }


@exercise("00", "param_count", "QwenForCausalLM.num_parameters()")
def param_count(fn: Callable) -> str:
    """fn(config: QwenConfig) -> int: the parameters of QwenForCausalLM(config), a tied lm_head counted once."""
    from qwqlearn.config import QwenConfig
    from qwqlearn.model import QwenForCausalLM

    names = ("qwq-32b-preview", "qwen2.5-0.5b", "qwen2.5-7b", "tiny")
    for name in names:
        cfg = QwenConfig.preset(name)
        with torch.device("meta"):
            want = QwenForCausalLM(cfg).num_parameters()
        got = fn(cfg)
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if isinstance(got, bool) or not isinstance(got, int):
            raise _Fail(f"{name}: expected an int, got {type(got).__name__} {got!r} "
                        "(count exactly: integer arithmetic, no / or 1e9)")
        if got == want:
            continue
        for hint, delta in _param_count_mistakes(cfg).items():
            if delta and got == want + delta:
                raise _Fail(f"{name}: you count {got:,}, the model has {want:,}. "
                            f"Your count matches what you get if you {hint}.")
        raise _Fail(f"{name}: you count {got:,}, the model has {want:,} (off by {got - want:+,}).")
    return f" on {len(names)} presets, tied and untied, from 0.5B to 32B."


# -- chapter 08 ---------------------------------------------------------------------------

def _nf4_block_cases() -> list[tuple[str, torch.Tensor]]:
    """Blocks of 64 floats: weight-like, a negative absmax, exact midpoints, and all zeros."""
    from qwqlearn.quant import nf4_code

    code = nf4_code()
    midpoints = (code[:-1] + code[1:]) / 2
    weights = 0.02 * torch.randn(64, generator=_gen(80))
    negative = torch.randn(64, generator=_gen(81))
    negative[17] = -4.0  # the absolute maximum is negative
    on_midpoints = torch.cat([midpoints.repeat(4), midpoints[:3], torch.ones(1)])  # absmax 1 exactly
    return [("a block of weight-like values (std 0.02)", weights), ("a block whose absmax is negative", negative),
            ("a block with values exactly on the midpoints between codes", on_midpoints),
            ("an all-zero block", torch.zeros(64))]


@exercise("08", "nf4_block", "qwqlearn.quant.quantize_nf4 (and so bitsandbytes)")
def nf4_block(fn: Callable) -> str:
    """fn(block: [64] float32) -> (indices: [64] integer tensor in 0..15, absmax: float32 scalar).

    Before packing: indices[i] is the position in nf4_code() of the value chosen for block[i]."""
    from qwqlearn.quant import _nf4_midpoints, nf4_code, quantize_nf4

    code, midpoints = nf4_code(), _nf4_midpoints(torch.device("cpu"))
    for what, block in _nf4_block_cases():
        packed, absmax = quantize_nf4(block, blocksize=64)
        want = torch.stack([packed >> 4, packed & 0x0F], dim=-1).reshape(-1).long()
        out = fn(block.clone())
        if not isinstance(out, tuple) or len(out) != 2:
            raise _Fail(f"{what}: return a pair (indices, absmax), got {type(out).__name__}")
        idx, got_absmax = out
        if not isinstance(idx, torch.Tensor) or idx.shape != (64,):
            raise _Fail(f"{what}: indices should be a tensor of shape (64,), got {getattr(idx, 'shape', type(idx))}")
        got_absmax = torch.as_tensor(got_absmax).float().reshape(())
        if got_absmax.item() != absmax.item():
            hint = (" Take the largest absolute value (block.abs().max()), not the largest value."
                    if got_absmax.item() == block.max().item() else "")
            raise _Fail(f"{what}: absmax {got_absmax.item():.6g}, expected {absmax.item():.6g}.{hint}")
        if idx.is_floating_point():
            if torch.equal(idx.float(), code[want]):
                raise _Fail(f"{what}: you returned the code values; return their indices (0..15) instead.")
            raise _Fail(f"{what}: indices should be an integer tensor, got {idx.dtype}")
        if torch.equal(idx.long(), want):
            continue
        if block.abs().max() == 0:
            raise _Fail(f"{what}: absmax is 0, so guard the division: every value is then code 0.0, index "
                        f"{int(want[0])}.")
        scaled = block / absmax
        mistakes = {
            "pick the nearest code to the raw weight without dividing by absmax first":
                torch.bucketize(block, midpoints),
            "send a value exactly on a midpoint to the upper code (bitsandbytes keeps it on the lower "
            "one: a value moves up only when it is strictly greater than the midpoint)":
                torch.bucketize(scaled, midpoints, right=True),
            "take the code with the smallest distance (argmin |x - code|): in float32 a value on a midpoint "
            "can then land on the upper code; compare with the 15 midpoints instead, index = how many "
            "midpoints lie strictly below the value":
                (scaled[:, None] - code).abs().argmin(-1),
            "divide by the largest value instead of the largest absolute value":
                torch.bucketize(block / block.max(), midpoints),
        }
        got = idx.long()
        wrong = int((got != want).sum())
        for hint, alt in mistakes.items():
            if torch.equal(got, alt):
                raise _Fail(f"{what}: {wrong} of 64 indices differ. They match what you get if you {hint}.")
        i = int((got != want).nonzero()[0])
        raise _Fail(f"{what}: {wrong} of 64 indices differ; e.g. block[{i}] = {block[i].item():.6g} "
                    f"(÷ absmax = {scaled[i].item():.6g}) should be index {int(want[i])} "
                    f"(code {code[want[i]].item():+.4f}), you gave {int(got[i])}.")
    return " on 4 blocks, including exact midpoints, a negative absmax and all zeros."
