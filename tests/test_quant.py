"""NF4 from scratch vs bitsandbytes: same bytes, same numbers; the memory planner vs measured sizes."""

import sys

import pytest
import torch
from torch import nn

from qwqlearn.config import QwenConfig
from qwqlearn.quant import (
    GIB, NF4Linear, dequantize_absmax, dequantize_blockwise_8bit, dequantize_nf4, dynamic_code, fit_report, fits,
    import_bitsandbytes, max_context, measure_memory, nf4_code, plan_memory, quantize_absmax,
    quantize_blockwise_8bit, quantize_model, quantize_nf4,
)

bnb = import_bitsandbytes()
BF = bnb.functional

SHAPES = [(3, 7), (130, 65), (1, 4097), (64, 64)]
BLOCKSIZES = [64, 128, 256, 4096]


@pytest.fixture(autouse=True, scope="module")
def eager_bitsandbytes():
    # bnb wraps its pure-torch dequantiser in torch.compile; compiling it for
    # every shape costs seconds on a small CPU and changes no result.
    with torch._dynamo.config.patch(disable=True):
        yield


def weights(shape, seed=0, dtype=torch.float32):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


def bnb_quantize(w, blocksize, double_quant=False):
    return BF.quantize_4bit(w, blocksize=blocksize, quant_type="nf4", compress_statistics=double_quant)


def bnb_dequantize(packed, state, dtype=torch.float32):
    """bnb's dequantisation of the same bytes, viewed as one row, reshaped back.

    bitsandbytes 0.50's C++ CPU kernel (used for even row lengths) assumes each
    row holds whole blocks; when a block straddles two rows, e.g. (64, 64) at
    blocksize 128, it applies the wrong absmax (its own round trip gets worse).
    Its CUDA and pure-torch kernels, and ours, run blocks over the flat tensor,
    which is what quantize_4bit wrote. A single row is correct in every kernel.
    """
    shape = state.shape
    state.shape, state.dtype = torch.Size([1, shape.numel()]), dtype
    try:
        return BF.dequantize_4bit(packed, state).reshape(shape)
    finally:
        state.shape = shape


# -- code books --------------------------------------------------------------------
def test_nf4_code_equals_bitsandbytes_table():
    assert torch.equal(nf4_code(), BF.get_4bit_type("nf4", device="cpu"))


def test_dynamic_code_equals_bitsandbytes_map():
    assert torch.equal(dynamic_code(), BF.create_dynamic_map(signed=True))


# -- 4-bit quantise / dequantise -----------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("blocksize", BLOCKSIZES)
def test_quantize_nf4_bit_exact(shape, blocksize):
    w = weights(shape)
    packed, absmax = quantize_nf4(w, blocksize)
    ref_packed, state = bnb_quantize(w, blocksize)
    assert torch.equal(packed, ref_packed.flatten())
    assert torch.equal(absmax, state.absmax)


@pytest.mark.parametrize("blocksize", [32, 512, 1024, 2048])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_quantize_nf4_bit_exact_other_blocksizes_and_dtypes(blocksize, dtype):
    w = weights((33, 97), seed=1, dtype=dtype)
    packed, absmax = quantize_nf4(w, blocksize)
    ref_packed, state = bnb_quantize(w, blocksize)
    assert torch.equal(packed, ref_packed.flatten()) and torch.equal(absmax, state.absmax)


def test_quantize_nf4_ties_and_zero_blocks():
    """Values exactly on a midpoint go to the lower code; an all-zero block is fine."""
    code = nf4_code()
    midpoints = (code[:-1] + code[1:]) / 2
    block = torch.cat([torch.tensor([1.0]), midpoints, -midpoints, code, torch.zeros(17)])  # 64 values
    w = torch.stack([block, torch.zeros(64), -block]).reshape(3, 64)
    packed, absmax = quantize_nf4(w, 64)
    ref_packed, state = bnb_quantize(w, 64)
    assert torch.equal(packed, ref_packed.flatten()) and torch.equal(absmax, state.absmax)
    low_nibbles = packed[:8] & 0x0F  # elements 1, 3, .., 15 of the first block: midpoints 0, 2, .., 14
    assert torch.equal(low_nibbles, torch.arange(0, 16, 2, dtype=torch.uint8))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("blocksize", BLOCKSIZES)
def test_dequantize_nf4_bit_exact(shape, blocksize):
    w = weights(shape, seed=2)
    packed, state = bnb_quantize(w, blocksize)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        ours = dequantize_nf4(packed.flatten(), state.absmax, shape, blocksize, dtype)
        assert torch.equal(ours, bnb_dequantize(packed, state, dtype)), dtype


@pytest.mark.parametrize("shape,blocksize", [((130, 65), 64), ((33, 4097), 4096), ((7, 1000), 128)])
def test_dequantize_nf4_in_slices_bit_exact(monkeypatch, shape, blocksize):
    """Large weights are dequantised slice by slice; shrink the slice to exercise that path."""
    import qwqlearn.quant

    monkeypatch.setattr(qwqlearn.quant, "_SLICE_BYTES", 2048)
    w = weights(shape, seed=8)
    packed, state = bnb_quantize(w, blocksize)
    assert packed.numel() > 2048
    ours = dequantize_nf4(packed.flatten(), state.absmax, shape, blocksize, torch.bfloat16)
    assert torch.equal(ours, bnb_dequantize(packed, state, torch.bfloat16))


def test_roundtrip_error_is_small():
    w = weights((256, 256), seed=3)
    w_hat = dequantize_nf4(*quantize_nf4(w, 64), w.shape, 64)
    assert (w - w_hat).norm() / w.norm() < 0.11  # NF4 keeps ~ 90% of a Gaussian weight's energy exactly


# -- double quantisation -----------------------------------------------------------------
def test_blockwise_8bit_bit_exact():
    x = torch.cat([torch.randn(70_000) * 3, torch.linspace(-1, 1, 65_536 * 2), torch.zeros(256)])
    q, absmax = quantize_blockwise_8bit(x, dynamic_code(), 256)
    ref_q, state = BF.quantize_blockwise(x, blocksize=256)
    assert torch.equal(q, ref_q) and torch.equal(absmax, state.absmax)
    assert torch.equal(dequantize_blockwise_8bit(q, absmax, dynamic_code(), 256), BF.dequantize_blockwise(ref_q, state))


@pytest.mark.parametrize("shape,blocksize", [((512, 1024), 64), ((1, 3 * 4097), 64), ((96, 200), 128)])
def test_double_quant_bit_exact(shape, blocksize):
    w = weights(shape, seed=4)
    packed, absmax = quantize_nf4(w, blocksize)
    q, absmax2, offset = quantize_absmax(absmax)
    ref_packed, state = bnb_quantize(w, blocksize, double_quant=True)
    assert torch.equal(packed, ref_packed.flatten())
    assert torch.equal(q, state.absmax) and torch.equal(absmax2, state.state2.absmax)
    assert torch.equal(offset, state.offset)
    restored = dequantize_absmax(q, absmax2, offset)
    ours = dequantize_nf4(packed, restored, shape, blocksize)
    assert torch.equal(ours, bnb_dequantize(ref_packed, state))
    assert ((restored - absmax).abs() / absmax).max() < 0.01  # 8-bit scales: < 1 % off


# -- the layer ----------------------------------------------------------------------------
def test_nf4linear_matches_dequantized_matmul_and_keeps_bias():
    torch.manual_seed(5)
    linear = nn.Linear(65, 7)  # odd sizes: blocks straddle rows, last block ragged
    layer = NF4Linear.from_linear(linear, blocksize=64, double_quant=True, compute_dtype=torch.float32)
    x = torch.randn(2, 3, 65)
    w_hat = layer.dequantized_weight(torch.float32)
    assert torch.equal(layer(x), nn.functional.linear(x, w_hat, linear.bias))
    assert torch.equal(layer.bias, linear.bias)
    assert (layer(x) - linear(x)).norm() / linear(x).norm() < 0.15  # nn.Linear's uniform init: ~8 % here


def test_nf4linear_nbytes():
    layer = NF4Linear.from_linear(nn.Linear(1024, 256, bias=True, dtype=torch.bfloat16), 64, double_quant=True)
    blocks = 1024 * 256 // 64
    assert layer.weight_nbytes == 1024 * 256 // 2
    assert layer.constants_nbytes == blocks + 4 * (blocks // 256) + 4
    assert layer.nbytes == layer.weight_nbytes + layer.constants_nbytes + 2 * 256
    plain = NF4Linear.from_linear(nn.Linear(1024, 256), 64, double_quant=False)
    assert plain.constants_nbytes == 4 * blocks


def bnb_linear4bit(linear, blocksize=64, double_quant=True, compute_dtype=torch.bfloat16):
    model = nn.Sequential(linear)
    return quantize_model(model, "bitsandbytes", skip=(), blocksize=blocksize, double_quant=double_quant,
                          compute_dtype=compute_dtype)[0]


@pytest.mark.parametrize("compute_dtype", [torch.bfloat16, torch.float32])
def test_nf4linear_forward_close_to_bnb_linear4bit(compute_dtype):
    """Same bytes; outputs differ only by compute rounding.

    On an AVX512-BF16 CPU bnb runs a fused bf16 kernel with bf16 block scales,
    so we allow 2 % of the output's scale (measured: < 1 %).
    """
    torch.manual_seed(6)
    linear = nn.Linear(128, 96)
    ours = NF4Linear.from_linear(linear, 64, True, compute_dtype)
    theirs = bnb_linear4bit(linear, 64, True, compute_dtype).eval()
    assert torch.equal(ours.weight_packed, theirs.weight.data.flatten())
    x = torch.randn(4, 128)
    with torch.no_grad():
        a, b = ours(x), theirs(x)
    assert a.dtype == b.dtype == x.dtype
    assert (a - b).abs().max() / b.abs().max() < 0.02


# -- whole models -------------------------------------------------------------------------
def tiny_qwen2(dtype=torch.float32):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=256, max_position_embeddings=128)
    torch.manual_seed(7)
    return Qwen2ForCausalLM(cfg).to(dtype).eval()


@pytest.mark.parametrize("backend", ["qwqlearn", "bitsandbytes"])
def test_quantize_model_tiny_qwen2(backend):
    model = tiny_qwen2()
    ids = torch.randint(0, 256, (1, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = model(ids).logits
        quantize_model(model, backend=backend, compute_dtype=torch.float32)
        logits = model(ids).logits
    quantised = [m for m in model.modules() if type(m).__name__ in ("NF4Linear", "Linear4bit")]
    assert len(quantised) == 2 * 7
    assert type(model.lm_head) is nn.Linear  # skipped by default
    # Random-init weights: logits keep their shape and ranking, off by NF4's ~10 % weight noise.
    assert (logits - reference).norm() / reference.norm() < 0.25
    assert (logits.argmax(-1) == reference.argmax(-1)).float().mean() > 0.5


def test_both_backends_store_identical_bytes():
    ours = quantize_model(tiny_qwen2(), "qwqlearn")
    theirs = quantize_model(tiny_qwen2(), "bitsandbytes")
    a, b = ours.model.layers[1].mlp.down_proj, theirs.model.layers[1].mlp.down_proj
    assert torch.equal(a.weight_packed, b.weight.data.flatten())
    assert torch.equal(a.absmax_q, b.weight.quant_state.absmax)


def test_quantize_model_skip_and_errors():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    quantize_model(model, skip=("2",))
    assert isinstance(model[0], NF4Linear) and type(model[2]) is nn.Linear
    with pytest.raises(ValueError, match="backend"):
        quantize_model(model, backend="gptq")
    with pytest.raises(ValueError, match="blocksize"):
        quantize_nf4(torch.randn(8, 8), blocksize=48)


def test_missing_bitsandbytes_names_the_alternative(monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # makes `import bitsandbytes` fail
    with pytest.raises(ImportError, match="backend='qwqlearn'"):
        quantize_model(nn.Sequential(nn.Linear(8, 8)), backend="bitsandbytes")


# -- the planner -----------------------------------------------------------------------------
@pytest.mark.parametrize("blocksize,double_quant", [(64, True), (128, False)])
def test_plan_matches_measured_quantised_model(blocksize, double_quant):
    model = tiny_qwen2(torch.bfloat16)
    config = QwenConfig.from_hf(model.config)
    quantize_model(model, blocksize=blocksize, double_quant=double_quant)
    measured = measure_memory(model)
    plan = plan_memory(config, bits=4, blocksize=blocksize, double_quant=double_quant, fused=False)
    for part in ("linear_weights", "quant_constants", "embeddings", "norms_biases"):
        assert measured[part] == getattr(plan, part), part
    assert 0 < measured["other"] <= 2 * 8 * 4  # HF's rotary inv_freq table(s): not planned


def test_plan_bf16_matches_unquantised_model():
    model = tiny_qwen2(torch.bfloat16)
    measured = measure_memory(model)
    plan = plan_memory(QwenConfig.from_hf(model.config), bits=16, fused=False)
    assert measured["linear_weights"] == plan.linear_weights and plan.quant_constants == 0


def test_plan_qwq_32b_headline_numbers():
    config = QwenConfig.preset("qwq-32b")
    plan = plan_memory(config, bits=4, context=1)
    assert plan.kv_cache == 256 * 1024  # per token, bf16
    assert 15.9e9 < plan.linear_weights + plan.quant_constants < 16.3e9  # "16 GB in NF4 + double quant"
    assert plan.embeddings == 2 * 152064 * 5120 * 2  # untied embed_tokens + lm_head in bf16
    bf16 = plan_memory(config, bits=16, context=1)
    assert 61e9 < bf16.linear_weights < 63e9
    assert "total" in str(plan) and "GiB" in str(plan)


def test_fits_and_report():
    config = QwenConfig.preset("qwq-32b")
    assert fits(config, gpu_gib=80, context=8192).fits
    small = fits(config, gpu_gib=16, context=8192)
    assert not small.fits and small.headroom_gib < 0
    longest = max_context(config, gpu_gib=24)
    assert fits(config, 24, longest).fits and not fits(config, 24, longest + 1).fits
    assert max_context(config, gpu_gib=8) == 0
    assert max_context(config, gpu_gib=141) == config.max_position_embeddings
    assert plan_memory(config, context=longest).total / GIB < 24
    report = fit_report(gpu_gib=24, context=4096)
    assert "fits: yes" in report and "longest context" in report
    assert "fits: no" in fit_report(gpu_gib=16, context=4096)
    with pytest.raises(ValueError, match="bits"):
        plan_memory(config, bits=8)
