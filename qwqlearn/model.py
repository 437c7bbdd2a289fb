"""The Qwen2 / QwQ decoder: embeddings, N pre-norm blocks, final norm, lm_head.

    >>> from qwqlearn import QwenConfig, QwenForCausalLM
    >>> model = QwenForCausalLM(QwenConfig.preset("tiny"))
    >>> logits = model(torch.tensor([[1, 2, 3]]))          # [batch, seq, vocab]

    x ─► embed_tokens ─► N × [ x + attn(norm(x)) ; x + mlp(norm(x)) ] ─► norm ─► lm_head

Weight names follow transformers' Qwen2ForCausalLM, without its `model.`
prefix, except for the two fused matrices (self_attn.qkv_proj and
mlp.gate_up_proj); `qwqlearn.weights` converts in both directions.
"""

from contextlib import contextmanager

import torch
from torch import nn

from qwqlearn.attention import GQAttention
from qwqlearn.cache import KVCache
from qwqlearn.config import QwenConfig
from qwqlearn.mlp import SwiGLU
from qwqlearn.rmsnorm import RMSNorm
from qwqlearn.rope import rope_cos_sin, rope_inv_freq


@contextmanager
def onednn_enabled(enabled: bool):
    """Turn oneDNN (PyTorch's mkldnn backend) off inside the block when enabled=False.

    (torch.backends.mkldnn.flags() would do it too, but it also resets TF32 and warns.)
    """
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = before and enabled
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before


class DecoderLayer(nn.Module):
    def __init__(self, config: QwenConfig, layer_idx: int):
        super().__init__()
        window = config.sliding_window if config.layer_types[layer_idx] == "sliding_attention" else None
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = GQAttention(config.hidden_size, config.num_attention_heads,
                                     config.num_key_value_heads, layer_idx, window)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = SwiGLU(config.hidden_size, config.intermediate_size)

    def forward(self, x, cos, sin, cache=None, start=0):
        """x: [batch, seq, hidden] -> [batch, seq, hidden]."""
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cache, start)
        return x + self.mlp(self.post_attention_layernorm(x))


class QwenForCausalLM(nn.Module):
    def __init__(self, config: QwenConfig):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.embed_tokens.weight  # one matrix, read in and out

    def forward(self, input_ids: torch.Tensor, cache: KVCache | None = None, start: int = 0,
                last_only: bool = False) -> torch.Tensor:
        """input_ids: [batch, seq] at positions start .. start+seq-1 -> logits [batch, seq, vocab]
        (or [batch, 1, vocab] with last_only, which skips the lm_head for all but the last token)."""
        seq = input_ids.shape[1]
        if start + seq > self.config.max_position_embeddings:
            raise ValueError(f"positions up to {start + seq} exceed the context of "
                             f"{self.config.max_position_embeddings} tokens")
        # A decode step is one matrix-vector product per weight matrix. On a CPU,
        # PyTorch's own bf16 kernel for that reads the weights about twice as fast as
        # oneDNN's, which is built for matrix-matrix products (benchmarks/decode.py);
        # so one-token steps bypass oneDNN. fp32 goes to MKL either way.
        with onednn_enabled(not (seq == 1 and input_ids.device.type == "cpu")):
            x = self.embed_tokens(input_ids)
            positions = torch.arange(start, start + seq, device=input_ids.device)
            # Recomputed per call (64 numbers for QwQ) rather than kept as a buffer, so
            # that model.to(torch.bfloat16) can never round the frequencies.
            inv_freq = rope_inv_freq(self.config.head_dim, self.config.rope_theta).to(input_ids.device)
            cos, sin = rope_cos_sin(positions, inv_freq, x.dtype)
            for layer in self.layers:
                x = layer(x, cos, sin, cache, start)
            if last_only:
                x = x[:, -1:]
            return self.lm_head(self.norm(x))

    def new_cache(self, batch: int, max_len: int) -> KVCache:
        """A static cache for up to max_len positions, in the model's dtype and device."""
        p = self.embed_tokens.weight
        return KVCache.for_model(self.config, batch, max_len, dtype=p.dtype, device=p.device)

    @torch.no_grad()
    def use_column_major_tall_weights(self) -> "QwenForCausalLM":
        """Store every tall matrix (more outputs than inputs: qkv_proj, gate_up_proj,
        lm_head) column-major. Values, shapes and names stay the same; only the order
        in memory changes, so this is invisible to everything but the speed.

        Why: decoding multiplies each weight matrix by a single vector, and on a CPU
        MKL's fp32 kernel reads a [9728, 896] or [151936, 896] matrix about twice as
        fast stored column-major (benchmarks/decode.py: Qwen2.5-0.5B in fp32 decodes
        5.9 -> 9.7 tokens/s). Wide matrices (down_proj) are faster as they are, and
        bf16 does not gain (its kernel differs), so only fp32 matrices are re-stored.
        The loaders call this for CPU models.
        """
        for module in self.modules():
            if (isinstance(module, nn.Linear) and module.out_features > module.in_features
                    and module.weight.dtype == torch.float32):
                w = module.weight
                module.weight = nn.Parameter(w.t().contiguous().t(), requires_grad=w.requires_grad)
        if self.config.tie_word_embeddings:
            self.embed_tokens.weight = self.lm_head.weight  # the re-stored matrix is still the shared one
        return self

    def num_parameters(self) -> int:
        """Parameters counted once each (a tied lm_head is not counted twice)."""
        return sum(p.numel() for p in self.parameters())
