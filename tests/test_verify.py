"""The parity report names the first component that diverges."""

import torch
from conftest import CONFIGS, make_hf

from qwqlearn import QwenConfig, from_hf
from qwqlearn.verify import compare


def test_report_names_the_planted_bug():
    cfg = QwenConfig(**CONFIGS["gqa5_untied"])
    hf = make_hf(cfg, seed=8)
    ours = from_hf(hf)
    ids = torch.randint(0, cfg.vocab_size, (1, 12), generator=torch.Generator().manual_seed(0))
    assert compare(ours, hf, ids).ok
    with torch.no_grad():
        ours.layers[1].mlp.down_proj.weight[0, 0] += 0.5   # a single wrong weight
    report = compare(ours, hf, ids)
    assert not report.ok
    assert report.first_divergence == "layers.1.mlp"
    assert "<-- first divergence" in str(report) and "MISMATCH" in str(report)
    assert report.rows[0].name == "embed_tokens" and report.rows[-1].name == "logits"
