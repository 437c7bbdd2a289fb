"""SwiGLU feed-forward block: down(silu(gate(x)) * up(x)).

    >>> mlp = SwiGLU(hidden_size=5120, intermediate_size=27648)
    >>> y = mlp(torch.randn(1, 7, 5120))      # [batch, seq, hidden] -> same

The gate decides, per channel, how much of the "up" signal passes; that needs
three matrices where a plain MLP has two. gate_proj and up_proj read the same
input, so they are stored as one [2 * intermediate, hidden] matrix and run as
one matmul: half the kernel launches and one pass over x. The weights loader
concatenates transformers' gate_proj and up_proj into it.
"""

import torch
import torch.nn.functional as F
from torch import nn


class SwiGLU(nn.Module):
    def __init__(self, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.intermediate_size = intermediate_size
        self.gate_up_proj = nn.Linear(hidden_size, 2 * intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [batch, seq, hidden] -> [batch, seq, hidden]."""
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)  # each [batch, seq, intermediate]
        return self.down_proj(F.silu(gate) * up)
