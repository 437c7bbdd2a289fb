"""Grouped-query attention with QKV bias, RoPE and a KV cache, as in Qwen2.

    >>> attn = GQAttention(hidden_size=5120, n_heads=40, n_kv_heads=8)   # QwQ-32B shapes
    >>> cos, sin = rope_cos_sin(torch.arange(7), rope_inv_freq(128, 1e6), torch.float32)
    >>> y = attn(torch.randn(1, 7, 5120), cos, sin)                        # [batch, seq, hidden]

Every group of n_heads / n_kv_heads query heads (5 in QwQ-32B) shares one key
and one value head, which shrinks the KV cache by that factor. q, k and v read
the same input, so they are one matmul against a fused [(H + 2*KV) * D, hidden]
weight with its bias (Qwen2 has biases on q, k, v, none on o_proj).
"""

import torch
import torch.nn.functional as F
from torch import nn

from qwqlearn.rope import apply_rope


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """[batch, kv_heads, seq, d] -> [batch, kv_heads * n_rep, seq, d]: each kv head serves n_rep query heads."""
    b, kv, s, d = x.shape
    return x[:, :, None].expand(b, kv, n_rep, s, d).reshape(b, kv * n_rep, s, d)


def attention_mask(start: int, seq: int, sliding_window: int | None = None, device=None) -> torch.Tensor:
    """Bool [seq, start + seq]: query at position start+i may see key j iff j <= start+i
    (and, for a sliding-window layer, start+i - j < sliding_window)."""
    q_pos = torch.arange(start, start + seq, device=device)[:, None]
    k_pos = torch.arange(start + seq, device=device)[None, :]
    allowed = k_pos <= q_pos
    if sliding_window is not None:
        allowed &= k_pos > q_pos - sliding_window
    return allowed


def decode_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """One new token attending to every cached position, GQA without copying keys.

    q: [batch, H, 1, D]; k, v: [batch, KV, T, D] -> [batch, H, 1, D].
    Query head h belongs to kv head h // n_rep, so viewing q as [batch, KV, n_rep, D]
    lines every group up with its shared key/value head. The few multiply-adds
    here run in fp32: on CPU that is faster than bf16 batched matmuls (and than
    scaled_dot_product_attention, whose flash kernel is built for long queries).
    """
    b, H, _, D = q.shape
    KV = k.shape[1]
    scores = q.view(b, KV, H // KV, D).float() @ k.float().transpose(-1, -2) * D**-0.5  # [batch, KV, n_rep, T]
    return (scores.softmax(-1) @ v.float()).to(q.dtype).view(b, H, 1, D)


class GQAttention(nn.Module):
    def __init__(self, hidden_size: int, n_heads: int, n_kv_heads: int, layer_idx: int = 0,
                 sliding_window: int | None = None):
        super().__init__()
        self.n_heads, self.n_kv_heads = n_heads, n_kv_heads
        self.head_dim = hidden_size // n_heads
        self.layer_idx = layer_idx
        self.sliding_window = sliding_window
        self.qkv_proj = nn.Linear(hidden_size, (n_heads + 2 * n_kv_heads) * self.head_dim, bias=True)
        self.o_proj = nn.Linear(n_heads * self.head_dim, hidden_size, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache=None, start: int = 0):
        """x: [batch, seq, hidden]; cos, sin: [seq, head_dim] for positions start .. start+seq-1.

        With a KVCache, this step's keys and values are written at `start` and
        attention reads every cached position before it. Returns [batch, seq, hidden].
        """
        b, s, _ = x.shape
        H, KV, D = self.n_heads, self.n_kv_heads, self.head_dim
        q, k, v = self.qkv_proj(x).split([H * D, KV * D, KV * D], dim=-1)
        q = q.view(b, s, H, D).transpose(1, 2)   # [b, H, s, D]
        k = k.view(b, s, KV, D).transpose(1, 2)  # [b, KV, s, D]
        v = v.view(b, s, KV, D).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            k, v = cache.update(self.layer_idx, start, k, v)  # [b, KV, start + s, D]

        kv_len = k.shape[2]
        if s == 1 and self.sliding_window is None:
            y = decode_attention(q, k, v)
            return self.o_proj(y.transpose(1, 2).reshape(b, s, H * D))
        mask, causal = None, False
        if self.sliding_window is not None and kv_len > self.sliding_window:
            mask = attention_mask(kv_len - s, s, self.sliding_window, x.device)
        elif s == kv_len:
            causal = True           # plain prefill: the usual lower-triangular mask
        else:
            mask = attention_mask(kv_len - s, s, None, x.device)  # a chunk after cached tokens
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=KV != H)
        return self.o_proj(y.transpose(1, 2).reshape(b, s, H * D))
