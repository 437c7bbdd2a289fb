"""RMSNorm: scale each vector to unit root-mean-square, then by a learned gain.

    >>> norm = RMSNorm(5120, eps=1e-5)
    >>> y = norm(torch.randn(2, 7, 5120, dtype=torch.bfloat16))   # [batch, seq, hidden]

Unlike LayerNorm there is no mean subtraction and no bias: one statistic per
vector instead of two. The square-mean is taken in fp32 even for bf16 inputs,
because bf16 keeps only 8 mantissa bits and a sum of thousands of squares would
lose the small ones; the result is cast back before the gain, as Qwen2RMSNorm does.
"""

import torch
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [..., hidden] -> [..., hidden], same dtype."""
        dtype = x.dtype
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"
