"""Random-weight transformers Qwen2 models, the reference every parity test compares against.

transformers initialises weights with std 0.02, which makes every logit nearly
equal; we re-draw them at unit scale (std 1/sqrt(fan_in)) so that activations
and logit margins look like a trained model's and a mismatch cannot hide.
"""

import math
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


@pytest.fixture(autouse=True)
def _progress_file(tmp_path, monkeypatch):
    """Exercise checkers record progress; tests keep it out of the real user data dir."""
    monkeypatch.setenv("QWQLEARN_PROGRESS", str(tmp_path / "progress.json"))

from qwqlearn import QwenConfig  # noqa: E402

# name -> QwenConfig kwargs. Each one exercises something different.
CONFIGS = {
    # QwQ's 40/8 = 5:1 grouping, untied head, rope_theta 1e6
    "gqa5_untied": dict(vocab_size=320, hidden_size=160, intermediate_size=352, num_hidden_layers=3,
                        num_attention_heads=10, num_key_value_heads=2, rope_theta=1e6,
                        tie_word_embeddings=False, max_position_embeddings=256),
    # full multi-head attention, tied embeddings, rope_theta 1e4
    "mha_tied": dict(vocab_size=256, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=4, rope_theta=1e4,
                     tie_word_embeddings=True, max_position_embeddings=128),
    # odd sizes everywhere: head_dim 12, vocab 503, intermediate 200
    "odd": dict(vocab_size=503, hidden_size=72, intermediate_size=200, num_hidden_layers=2,
                num_attention_heads=6, num_key_value_heads=3, rope_theta=1e6,
                tie_word_embeddings=True, max_position_embeddings=200, rms_norm_eps=1e-5),
}


def unit_scale_(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 2:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p.shape[1]))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:  # norm gains
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
    return model


def make_hf(config: QwenConfig, seed: int = 0, dtype=torch.float32):
    from transformers import Qwen2ForCausalLM

    torch.manual_seed(seed)
    hf = Qwen2ForCausalLM(config.to_hf())
    return unit_scale_(hf, seed).to(dtype).eval()


@pytest.fixture(params=sorted(CONFIGS))
def config(request) -> QwenConfig:
    return QwenConfig(**CONFIGS[request.param], torch_dtype="float32", name=request.param)


@pytest.fixture(scope="session")
def hf_checkpoint(tmp_path_factory):
    """A real Hugging Face-layout directory written by transformers' save_pretrained."""
    cfg = QwenConfig(**CONFIGS["gqa5_untied"], torch_dtype="float32")
    path = tmp_path_factory.mktemp("hf_ckpt")
    make_hf(cfg, seed=1).save_pretrained(path)
    return path
