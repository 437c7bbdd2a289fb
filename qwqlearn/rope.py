"""Rotary position embeddings (RoPE), split-half convention as in Qwen2.

    >>> inv_freq = rope_inv_freq(head_dim=128, theta=1e6)      # [64]
    >>> cos, sin = rope_cos_sin(torch.arange(10), inv_freq, torch.bfloat16)  # [10, 128] each
    >>> q = apply_rope(torch.randn(1, 40, 10, 128), cos, sin)  # [batch, heads, seq, head_dim]

Each pair of channels (i, i + head_dim/2) is a 2-D point rotated by the angle
position * inv_freq[i]. Because rotations compose, the dot product of a rotated
query at position m with a rotated key at position n depends only on m - n.

Angles are computed in fp32 and only the final cos/sin are cast: in bf16 the
angle itself (position * freq, up to tens of thousands of radians) would be
off by whole turns.
"""

import torch


def rope_inv_freq(head_dim: int, theta: float) -> torch.Tensor:
    """[head_dim // 2] fp32 frequencies theta^(-2i/head_dim), i = 0 .. head_dim/2 - 1."""
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float) / head_dim))


def rope_cos_sin(positions: torch.Tensor, inv_freq: torch.Tensor, dtype: torch.dtype):
    """positions: [seq] int -> (cos, sin), each [seq, head_dim] in `dtype`."""
    angles = positions.float()[:, None] * inv_freq.float()[None, :]  # [seq, head_dim/2]
    angles = torch.cat((angles, angles), dim=-1)  # same angle for channel i and i + head_dim/2
    return angles.cos().to(dtype), angles.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """[..., d] -> [..., d]: (x1, x2) -> (-x2, x1), the 90-degree turn of every pair."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [batch, heads, seq, head_dim]; cos, sin: [seq, head_dim] -> rotated x, same shape."""
    return x * cos + rotate_half(x) * sin
