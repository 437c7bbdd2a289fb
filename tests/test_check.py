"""The exercise checkers: pass the reference, name the classic mistakes, nudge stubs."""

import json

import torch
import torch.nn.functional as F

from qwqlearn import QwenConfig, QwenForCausalLM, check, progress
from qwqlearn.attention import repeat_kv
from qwqlearn.generate import process_logits
from qwqlearn.rope import apply_rope, rotate_half


def rms(x, w, eps):
    x32 = x.float()
    return w * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def merge(ids, pair, new):
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def layer_fn(layer, x, cos, sin):
    h = x + layer.self_attn(layer.input_layernorm(x), cos, sin)
    return h + layer.mlp(layer.post_attention_layernorm(h))


def stub(*args):
    raise NotImplementedError


def test_reference_solutions_pass(capsys):
    layer = QwenForCausalLM(QwenConfig.preset("tiny")).layers[0]
    assert check.bpe_merge(merge)
    assert check.rmsnorm(rms)
    assert check.apply_rope(apply_rope)
    assert check.repeat_kv(repeat_kv)
    assert check.causal_attention(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True))
    assert check.swiglu(lambda x, g, u, d: (F.silu(x @ g.T) * (x @ u.T)) @ d.T)
    assert check.decoder_layer(layer_fn, layer)
    none = torch.zeros(1, 50, dtype=torch.bool)
    assert check.top_p_filter(lambda logits, p: process_logits(logits[None], none, none, top_p=p)[0])
    assert capsys.readouterr().out.count("✅") == 8


def test_classic_mistakes_are_named(capsys):
    def rms_no_eps(x, w, eps):
        x32 = x.float()
        return w * (x32 / x32.pow(2).mean(-1, keepdim=True).sqrt()).to(x.dtype)

    def layer_wrong_norm(layer, x, cos, sin):
        h = x + layer.self_attn(layer.input_layernorm(x), cos, sin)
        return h + layer.mlp(layer.input_layernorm(h))

    assert not check.rmsnorm(rms_no_eps)
    assert "forget eps" in capsys.readouterr().out
    assert not check.apply_rope(lambda x, c, s: x * s + rotate_half(x) * c)
    assert "swap cos and sin" in capsys.readouterr().out
    assert not check.repeat_kv(lambda x, n: x.repeat(1, n, 1, 1))
    assert "tile the heads" in capsys.readouterr().out
    assert not check.causal_attention(lambda q, k, v: F.scaled_dot_product_attention(q, k, v))
    assert "forget the causal mask" in capsys.readouterr().out
    assert not check.swiglu(lambda x, g, u, d: (F.relu(x @ g.T) * (x @ u.T)) @ d.T)
    assert "ReLU" in capsys.readouterr().out
    assert not check.decoder_layer(layer_wrong_norm, QwenForCausalLM(QwenConfig.preset("tiny")).layers[0])
    assert "reuse input_layernorm" in capsys.readouterr().out
    assert not check.bpe_merge(lambda ids, p, n: ids)
    assert "expected [9, 3, 9]" in capsys.readouterr().out


def test_stubs_get_a_nudge_not_a_traceback(capsys):
    layer = QwenForCausalLM(QwenConfig.preset("tiny")).layers[0]
    for checker, args in ((check.bpe_merge, ()), (check.rmsnorm, ()), (check.apply_rope, ()),
                          (check.repeat_kv, ()), (check.causal_attention, ()), (check.swiglu, ()),
                          (check.decoder_layer, (layer,)), (check.top_p_filter, ())):
        assert checker(stub, *args) is False
    out = capsys.readouterr().out
    assert out.count("not implemented yet") == 8 and "Traceback" not in out


def test_crashing_code_is_reported_in_one_line(capsys):
    assert not check.rmsnorm(lambda x, w, eps: x @ torch.zeros(3, 3))
    out = capsys.readouterr().out
    assert out.startswith("❌ rmsnorm: your function raised RuntimeError") and "line" in out


def test_progress_is_recorded_and_survives_corruption(tmp_path, capsys):
    assert check.repeat_kv(repeat_kv)
    data = json.loads(progress.progress_file().read_text())
    assert "repeat_kv" in data["04"]
    row = next(line for line in progress.table().splitlines() if line.startswith("04 "))
    assert "1/2" in row  # chapter 04: repeat_kv done, causal_attention not
    progress.progress_file().write_text("{not json")
    assert progress.load() == {}
    assert "unreadable" in capsys.readouterr().err
    assert list(tmp_path.glob("progress.corrupt-*.json"))
    assert check.repeat_kv(repeat_kv)  # recreated
    assert "repeat_kv" in json.loads(progress.progress_file().read_text())["04"]
