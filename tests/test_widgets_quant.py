"""Chapter 00 and 08: the param_count and nf4_block checkers, and the GPU-fit widget's callbacks."""

import torch

from qwqlearn import QwenConfig, QwenForCausalLM, check
from qwqlearn.quant import _nf4_midpoints, fit_report, nf4_code


# -- check.param_count ----------------------------------------------------------------------

def param_count(cfg):
    h, L, kv = cfg.hidden_size, cfg.num_hidden_layers, cfg.num_key_value_heads * cfg.head_dim
    attn = (h * h + h) + 2 * (h * kv + kv) + h * h
    mlp = 3 * h * cfg.intermediate_size
    embed = cfg.vocab_size * h * (1 if cfg.tie_word_embeddings else 2)
    return embed + L * (attn + mlp + 2 * h) + h


def test_param_count_reference_passes(capsys):
    assert check.param_count(param_count)
    assert "✅ param_count" in capsys.readouterr().out
    with torch.device("meta"):
        assert param_count(QwenConfig.preset("qwq-32b-preview")) == 32_763_876_352
        assert QwenForCausalLM(QwenConfig.preset("qwq-32b-preview")).num_parameters() == 32_763_876_352


def test_param_count_names_the_classic_mistakes(capsys):
    def no_bias(cfg):
        kv = cfg.num_key_value_heads * cfg.head_dim
        return param_count(cfg) - cfg.num_hidden_layers * (cfg.hidden_size + 2 * kv)

    def tied_twice(cfg):
        return param_count(cfg) + (cfg.vocab_size * cfg.hidden_size if cfg.tie_word_embeddings else 0)

    def no_norms(cfg):
        return param_count(cfg) - (2 * cfg.num_hidden_layers + 1) * cfg.hidden_size

    def mha_kv(cfg):
        return param_count(QwenConfig(**{**cfg.__dict__, "num_key_value_heads": cfg.num_attention_heads}))

    expected = {no_bias: "biases", tied_twice: "tied embedding twice", no_norms: "RMSNorm weights",
                mha_kv: "num_attention_heads instead of num_key_value_heads"}
    for fn, words in expected.items():
        assert not check.param_count(fn)
        out = capsys.readouterr().out
        assert "❌ param_count" in out and words in out, out
    assert not check.param_count(lambda cfg: float(param_count(cfg)))
    assert "expected an int" in capsys.readouterr().out


def test_param_count_stub_gets_a_nudge(capsys):
    def stub(cfg):
        raise NotImplementedError

    assert not check.param_count(stub)
    assert "⏳ param_count: not implemented yet" in capsys.readouterr().out


# -- check.nf4_block ------------------------------------------------------------------------

def quantize_block(block):
    absmax = block.abs().max()
    scaled = block / absmax if absmax > 0 else block
    return (scaled[:, None] > _nf4_midpoints(torch.device("cpu"))).sum(-1).to(torch.uint8), absmax


def test_nf4_block_reference_passes(capsys):
    assert check.nf4_block(quantize_block)
    assert "✅ nf4_block" in capsys.readouterr().out


def test_nf4_block_names_the_classic_mistakes(capsys):
    code, mid = nf4_code(), _nf4_midpoints(torch.device("cpu"))

    def raw(block):
        return torch.bucketize(block, mid), block.abs().max()

    def ties_up(block):
        a = block.abs().max()
        return torch.bucketize(block / a if a > 0 else block, mid, right=True), a

    def by_distance(block):
        a = block.abs().max()
        return ((block / a if a > 0 else block)[:, None] - code).abs().argmin(-1), a

    def plain_max(block):
        return torch.bucketize(block / block.max(), mid), block.max()

    def values(block):
        idx, a = quantize_block(block)
        return code[idx.long()], a

    def unguarded(block):
        a = block.abs().max()
        return torch.bucketize(block / a, mid), a

    expected = {raw: "without dividing by absmax", ties_up: "upper code", by_distance: "argmin",
                plain_max: "largest absolute value", values: "return their indices", unguarded: "guard the division"}
    for fn, words in expected.items():
        assert not check.nf4_block(fn)
        out = capsys.readouterr().out
        assert "❌ nf4_block" in out and words in out, (fn.__name__, out)


# -- the GPU-fit widget ---------------------------------------------------------------------

def test_gpu_fit_state_agrees_with_the_planner():
    from qwqlearn.widgets import gpu_fit_state

    s = gpu_fit_state(24, 8192)
    assert s["text"] == fit_report(24, 8192)
    assert s["fits"] is True and 0 < s["headroom_gib"] < 24
    assert 8192 <= s["max_context"] <= 40960
    assert s["parts_gib"]["kv_cache"] == 8192 * 262144 / 2**30  # 256 KiB per token in bf16
    small = gpu_fit_state(16, 32768)
    assert small["fits"] is False and small["headroom_gib"] < 0 and small["max_context"] == 0
    assert gpu_fit_state(80, 32768)["fits"] is True


def test_gpu_fit_png_and_wiring():
    from qwqlearn.widgets import gpu_fit_explorer, gpu_fit_png, gpu_fit_state

    png = gpu_fit_png(gpu_fit_state(24, 8192))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    box = gpu_fit_explorer(gpu_gib=24, context=8192)
    gib, ctx, text = box.children[0], box.children[1], box.children[2]
    assert "fits: yes" in text.value
    gib.value = 16
    ctx.value = 32768
    assert "fits: no" in text.value and "16 GiB" in text.value
