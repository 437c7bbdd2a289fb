"""Every component, and the whole model, against transformers' Qwen2 modules."""

import pytest
import torch
from conftest import CONFIGS, make_hf
from transformers.models.qwen2 import modeling_qwen2 as ref

from qwqlearn import QwenConfig, QwenForCausalLM, from_hf
from qwqlearn.attention import GQAttention, repeat_kv
from qwqlearn.mlp import SwiGLU
from qwqlearn.rmsnorm import RMSNorm
from qwqlearn.rope import apply_rope, rope_cos_sin, rope_inv_freq

FP32_TOL = 1e-5
BF16_TOL = 5e-2  # max |Δ| on logits of unit-scale models; bf16 keeps ~3 significant digits


def max_diff(a, b):
    return (a.float() - b.float()).abs().max().item()


def test_rmsnorm_matches_reference():
    x = torch.randn(2, 5, 72) * 3
    ours, theirs = RMSNorm(72, eps=1e-5), ref.Qwen2RMSNorm(72, eps=1e-5)
    w = torch.randn(72)
    ours.weight.data.copy_(w), theirs.weight.data.copy_(w)
    assert max_diff(ours(x), theirs(x)) <= FP32_TOL
    xb = x.bfloat16()  # bf16: identical ops in identical order, so identical bits
    assert torch.equal(ours.bfloat16()(xb), theirs.bfloat16()(xb))


@pytest.mark.parametrize("theta", [1e4, 1e6])
def test_rope_matches_reference(theta):
    cfg = QwenConfig(**CONFIGS["gqa5_untied"])
    cfg.rope_theta = theta
    positions = torch.arange(37)
    rotary = ref.Qwen2RotaryEmbedding(cfg.to_hf())
    q, k = torch.randn(2, 10, 37, 16), torch.randn(2, 2, 37, 16)
    cos_ref, sin_ref = rotary(q, positions[None])
    cos, sin = rope_cos_sin(positions, rope_inv_freq(16, theta), torch.float32)
    assert torch.equal(cos, cos_ref[0]) and torch.equal(sin, sin_ref[0])
    q_ref, k_ref = ref.apply_rotary_pos_emb(q, k, cos_ref, sin_ref)
    assert torch.equal(apply_rope(q, cos, sin), q_ref) and torch.equal(apply_rope(k, cos, sin), k_ref)


def test_rope_scores_depend_only_on_offset():
    inv = rope_inv_freq(64, 1e6)
    q, k = torch.randn(2, 64, generator=torch.Generator().manual_seed(0))  # seeded: no test-order flakiness

    def score(m, n):
        cm, sm = rope_cos_sin(torch.tensor([m]), inv, torch.float64)
        cn, sn = rope_cos_sin(torch.tensor([n]), inv, torch.float64)
        return (apply_rope(q.double(), cm[0], sm[0]) @ apply_rope(k.double(), cn[0], sn[0])).item()

    # equal up to the fp32 rounding of the angles themselves
    assert score(5, 2) == pytest.approx(score(105, 102), rel=1e-5)
    assert score(5, 2) != pytest.approx(score(5, 3), rel=1e-2)


def test_repeat_kv_matches_reference():
    x = torch.randn(2, 3, 4, 5)
    assert torch.equal(repeat_kv(x, 4), ref.repeat_kv(x, 4))


def test_attention_and_mlp_and_layer_match_reference(config):
    hf = make_hf(config, seed=3)
    ours = from_hf(hf)
    x = torch.randn(2, 11, config.hidden_size)
    pos = torch.arange(11)
    cos_ref, sin_ref = hf.model.rotary_emb(x, pos[None])
    cos, sin = rope_cos_sin(pos, rope_inv_freq(config.head_dim, config.rope_theta), x.dtype)
    mask = torch.full((11, 11), float("-inf")).triu(1)[None, None]  # causal, additive
    attn_ref, _ = hf.model.layers[0].self_attn(x, (cos_ref, sin_ref), mask)
    assert isinstance(ours.layers[0].self_attn, GQAttention)
    assert max_diff(ours.layers[0].self_attn(x, cos, sin), attn_ref) <= FP32_TOL
    assert isinstance(ours.layers[0].mlp, SwiGLU)
    assert max_diff(ours.layers[0].mlp(x), hf.model.layers[0].mlp(x)) <= FP32_TOL
    layer_ref = hf.model.layers[1](x, attention_mask=mask, position_embeddings=(cos_ref, sin_ref))
    assert max_diff(ours.layers[1](x, cos, sin), layer_ref) <= FP32_TOL


def test_full_model_logits_fp32(config):
    hf = make_hf(config, seed=4)
    ours = from_hf(hf)
    ids = torch.randint(0, config.vocab_size, (3, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert max_diff(ours(ids), hf(ids).logits) <= FP32_TOL


def test_full_model_logits_bf16():
    cfg = QwenConfig(**CONFIGS["gqa5_untied"])
    hf = make_hf(cfg, seed=5, dtype=torch.bfloat16)
    ours = from_hf(hf)
    assert next(ours.parameters()).dtype == torch.bfloat16
    ids = torch.randint(0, cfg.vocab_size, (1, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        d = max_diff(ours(ids), hf(ids).logits)
    assert d <= BF16_TOL, f"bf16 logits differ by {d}"


def test_tied_head_shares_the_embedding():
    model = QwenForCausalLM(QwenConfig(**CONFIGS["mha_tied"]))
    assert model.lm_head.weight is model.embed_tokens.weight


def test_cached_decoding_equals_uncached(config):
    model = from_hf(make_hf(config, seed=6))
    ids = torch.randint(0, config.vocab_size, (2, 30), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(ids)
        cache = model.new_cache(batch=2, max_len=30)
        steps = [model(ids[:, :12], cache=cache, start=0)]          # prefill 12
        steps.append(model(ids[:, 12:20], cache=cache, start=12))   # a chunk of 8 after the cache
        steps += [model(ids[:, t:t + 1], cache=cache, start=t) for t in range(20, 30)]  # one by one
    assert max_diff(torch.cat(steps, dim=1), full) <= FP32_TOL


def test_sliding_window_layers_match_reference():
    cfg = QwenConfig(**CONFIGS["gqa5_untied"], use_sliding_window=True, sliding_window=8, max_window_layers=1)
    assert cfg.layer_types == ["full_attention", "sliding_attention", "sliding_attention"]
    hf_cfg = cfg.to_hf()
    hf_cfg._attn_implementation = "eager"
    from transformers import Qwen2ForCausalLM

    from conftest import unit_scale_
    hf = unit_scale_(Qwen2ForCausalLM(hf_cfg), seed=7).eval()
    ours = from_hf(hf)
    assert ours.layers[1].self_attn.sliding_window == 8
    ids = torch.randint(0, cfg.vocab_size, (1, 30), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = ours(ids)
        assert max_diff(full, hf(ids).logits) <= FP32_TOL
        cache = ours.new_cache(1, 30)
        stepped = torch.cat([ours(ids[:, :10], cache=cache)] +
                            [ours(ids[:, t:t + 1], cache=cache, start=t) for t in range(10, 30)], dim=1)
    assert max_diff(stepped, full) <= FP32_TOL


def test_qwq32b_parameter_count_and_kv_cache_on_meta():
    cfg = QwenConfig.preset("qwq-32b")
    with torch.device("meta"):
        model = QwenForCausalLM(cfg)
    assert model.num_parameters() == 32_763_876_352
    assert cfg.kv_cache_bytes_per_token() == 256 * 1024
    with torch.device("meta"):
        cache = model.new_cache(batch=1, max_len=1)
    assert cache.k.dtype == torch.float32  # meta model is fp32; bf16 cache:
    assert cfg.kv_cache_bytes_per_token(bytes_per_value=2) * 4096 == 1 << 30  # 4K tokens = 1 GiB


def test_presets_roundtrip_through_transformers():
    for name in ("qwq-32b-preview", "qwq-32b", "qwen2.5-0.5b", "qwen2.5-7b", "tiny"):
        cfg = QwenConfig.preset(name)
        back = QwenConfig.from_hf(cfg.to_hf())
        assert back == cfg, name
        assert QwenConfig.from_hf(cfg.to_dict()) == cfg


def test_config_errors_are_clear():
    with pytest.raises(ValueError, match="unknown preset"):
        QwenConfig.preset("qwq-70b")
    with pytest.raises(ValueError, match="not a multiple of num_key_value_heads"):
        QwenConfig(num_attention_heads=10, num_key_value_heads=3, hidden_size=80)
    with pytest.raises(ValueError, match="model_type 'llama'"):
        QwenConfig.from_hf({"model_type": "llama", "hidden_size": 8, "num_attention_heads": 2})
    with pytest.raises(ValueError, match="rope_type 'yarn'"):
        QwenConfig.from_hf({**QwenConfig.preset("tiny").to_dict(), "rope_parameters": {"rope_type": "yarn"}})
    with pytest.raises(ValueError, match="exceed the context"):
        QwenForCausalLM(QwenConfig.preset("tiny"))(torch.zeros(1, 257, dtype=torch.long))
