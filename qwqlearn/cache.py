"""A static, preallocated KV cache (gpt-fast style).

    >>> cache = KVCache(n_layers=64, batch=1, n_kv_heads=8, max_len=4096, head_dim=128,
    ...                 dtype=torch.bfloat16)
    >>> cache.nbytes / 4096          # 256 KiB per token for QwQ-32B in bf16
    262144.0

Keys and values of every layer live in two tensors allocated once:
[layers, batch, kv_heads, max_len, head_dim]. Each step writes the new
positions in place (a slice assignment) and attention reads a view of the filled
prefix, so decoding never reallocates or concatenates per token.
"""

import torch
from torch import nn


class KVCache(nn.Module):
    def __init__(self, n_layers, batch, n_kv_heads, max_len, head_dim, dtype=torch.float32, device=None):
        super().__init__()
        shape = (n_layers, batch, n_kv_heads, max_len, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.max_len = max_len

    @classmethod
    def for_model(cls, config, batch: int, max_len: int, dtype=torch.float32, device=None) -> "KVCache":
        return cls(config.num_hidden_layers, batch, config.num_key_value_heads, max_len, config.head_dim,
                   dtype=dtype, device=device)

    @property
    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes

    def update(self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor):
        """Write k, v [batch, kv_heads, seq, head_dim] at positions start .. start + seq - 1.

        Returns the keys and values of positions 0 .. start + seq - 1, each
        [batch, kv_heads, start + seq, head_dim] (views of the cache, no copy).
        """
        end = start + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} positions; position {end - 1} does not fit")
        self.k[layer, :, :, start:end] = k
        self.v[layer, :, :, start:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]
