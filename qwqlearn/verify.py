"""Layer-by-layer parity between our model and transformers' Qwen2ForCausalLM.

    >>> report = compare(ours, hf_model, input_ids)
    >>> print(report)                # max/mean |Δ| per component, first divergent layer named
    >>> report.ok, report.first_divergence

Forward hooks record the output of every component (embedding, each layer's
input norm, attention, post-attention norm, MLP, the layer itself, the final
norm, the logits) in both models on the same input; the report compares them
pairwise. The first component whose max |Δ| exceeds the tolerance is where
to look: everything downstream inherits the error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

COMPONENTS = ("input_layernorm", "self_attn", "post_attention_layernorm", "mlp")


@dataclass
class Row:
    name: str
    max_abs: float
    mean_abs: float


@dataclass
class Report:
    rows: list[Row]
    tol: float
    dtype: str = "float32"
    notes: list[str] = field(default_factory=list)

    @property
    def first_divergence(self) -> str | None:
        """Name of the first compared output whose max |Δ| exceeds tol (None when all agree)."""
        return next((r.name for r in self.rows if not r.max_abs <= self.tol), None)

    @property
    def ok(self) -> bool:
        return self.first_divergence is None

    @property
    def max_logit_diff(self) -> float:
        return self.rows[-1].max_abs

    def __str__(self) -> str:
        lines = [f"{'component':<34} {'max |Δ|':>10} {'mean |Δ|':>10}", "-" * 56]
        lines += [f"{r.name:<34} {r.max_abs:>10.2e} {r.mean_abs:>10.2e}"
                  + ("   <-- first divergence" if r.name == self.first_divergence else "") for r in self.rows]
        verdict = ("OK: every component within" if self.ok else "MISMATCH: beyond") + f" tol {self.tol:g} ({self.dtype})"
        return "\n".join(lines + ["-" * 56, verdict] + self.notes)


def _capture(named_modules: dict, store: dict):
    def hook_for(name):
        def hook(_module, _inputs, output):
            out = output[0] if isinstance(output, tuple) else output
            store[name] = out.detach().float()
        return hook
    return [m.register_forward_hook(hook_for(n)) for n, m in named_modules.items()]


def _modules(root_layers, embed, norm, n_layers, with_components: bool) -> dict:
    mods = {"embed_tokens": embed}
    for i in range(n_layers):
        layer = root_layers[i]
        if with_components:
            mods.update({f"layers.{i}.{c}": getattr(layer, c) for c in COMPONENTS})
        mods[f"layers.{i}"] = layer
    mods["norm"] = norm
    return mods


@torch.no_grad()
def compare(ours, hf_model, input_ids: torch.Tensor, tol: float | None = None, components: bool = True) -> Report:
    """Run both models on input_ids [batch, seq]; compare every hooked output and the logits.

    tol defaults to 1e-5 in fp32 and 5e-2 in bf16/fp16 (see README).
    """
    dtype = next(ours.parameters()).dtype
    if tol is None:
        tol = 1e-5 if dtype == torch.float32 else 5e-2
    n = ours.config.num_hidden_layers
    ours_out, ref_out = {}, {}
    handles = _capture(_modules(ours.layers, ours.embed_tokens, ours.norm, n, components), ours_out)
    handles += _capture(_modules(hf_model.model.layers, hf_model.model.embed_tokens, hf_model.model.norm, n,
                                 components), ref_out)
    try:
        ours_logits = ours(input_ids).float()
        ref_logits = hf_model(input_ids).logits.float()
    finally:
        for h in handles:
            h.remove()
    rows = []
    for name, a in ours_out.items():
        d = (a - ref_out[name]).abs()
        rows.append(Row(name, d.max().item(), d.mean().item()))
    d = (ours_logits - ref_logits).abs()
    rows.append(Row("logits", d.max().item(), d.mean().item()))
    return Report(rows, tol, str(dtype).replace("torch.", ""))


def verify_checkpoint(path, dtype=torch.float32, seq: int = 16, seed: int = 0, tol: float | None = None) -> Report:
    """Load a checkpoint directory into both implementations and compare them on random token ids."""
    from transformers import AutoModelForCausalLM

    from qwqlearn.weights import load_pretrained

    ours = load_pretrained(path, dtype=dtype)
    ref = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype).eval()
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, ours.config.vocab_size, (1, min(seq, ours.config.max_position_embeddings)), generator=g)
    report = compare(ours, ref, ids, tol=tol)
    report.notes.append(f"input: {ids.shape[1]} random token ids (seed {seed}); "
                        f"{ours.num_parameters():,} parameters; checkpoint {path}")
    return report
