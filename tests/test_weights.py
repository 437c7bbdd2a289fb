"""Loading and saving checkpoints in Hugging Face layout, and the errors for bad ones."""

import json
import shutil

import pytest
import torch
from conftest import CONFIGS, make_hf
from transformers import AutoModelForCausalLM

from qwqlearn import QwenConfig, from_hf, load_pretrained, save_pretrained
from qwqlearn.cli import main as cli
from qwqlearn.weights import CheckpointError


def logits(model, ids):
    with torch.no_grad():
        out = model(ids)
    return getattr(out, "logits", out)


def test_load_pretrained_matches_automodel(hf_checkpoint):
    ours = load_pretrained(hf_checkpoint)
    ref = AutoModelForCausalLM.from_pretrained(hf_checkpoint).eval()
    ids = torch.randint(0, ours.config.vocab_size, (2, 33), generator=torch.Generator().manual_seed(0))
    assert (logits(ours, ids) - logits(ref, ids)).abs().max().item() <= 1e-5


def test_sharded_checkpoint(hf_checkpoint, tmp_path):
    ref = AutoModelForCausalLM.from_pretrained(hf_checkpoint)
    ref.save_pretrained(tmp_path, max_shard_size="200KB")
    assert (tmp_path / "model.safetensors.index.json").exists()
    ids = torch.tensor([[3, 1, 4, 1, 5]])
    assert (logits(load_pretrained(tmp_path), ids) - logits(ref.eval(), ids)).abs().max().item() <= 1e-5


@pytest.mark.parametrize("name", ["mha_tied", "gqa5_untied"])
def test_save_pretrained_loads_in_transformers(name, tmp_path):
    ours = from_hf(make_hf(QwenConfig(**CONFIGS[name]), seed=2))
    save_pretrained(ours, tmp_path)
    ref = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    ids = torch.tensor([[7, 8, 9, 10]])
    assert (logits(ours, ids) - logits(ref, ids)).abs().max().item() <= 1e-5
    assert not list(tmp_path.glob("*.tmp"))


def test_loaded_tall_matrices_are_column_major_and_still_equal(hf_checkpoint):
    ours = load_pretrained(hf_checkpoint)
    gate_up = ours.layers[0].mlp.gate_up_proj.weight            # [2 * intermediate, hidden]: tall
    down = ours.layers[0].mlp.down_proj.weight                  # [hidden, intermediate]: wide
    assert gate_up.stride() == (1, gate_up.shape[0]) and down.is_contiguous()
    ref = AutoModelForCausalLM.from_pretrained(hf_checkpoint)
    assert torch.equal(gate_up, torch.cat([ref.model.layers[0].mlp.gate_proj.weight,
                                           ref.model.layers[0].mlp.up_proj.weight]))
    tied = from_hf(make_hf(QwenConfig(**CONFIGS["mha_tied"]), seed=3))
    assert tied.lm_head.weight is tied.embed_tokens.weight       # still one shared matrix


def test_bf16_load(hf_checkpoint):
    model = load_pretrained(hf_checkpoint, dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def copy_ckpt(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_truncated_safetensors(hf_checkpoint, tmp_path):
    d = copy_ckpt(hf_checkpoint, tmp_path / "c")
    f = d / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="model.safetensors is not a readable safetensors file"):
        load_pretrained(d)


def edit_tensors(d, edit):
    from safetensors.torch import load_file, save_file

    sd = load_file(d / "model.safetensors")
    edit(sd)
    save_file(sd, d / "model.safetensors", metadata={"format": "pt"})


def test_missing_tensor(hf_checkpoint, tmp_path):
    d = copy_ckpt(hf_checkpoint, tmp_path / "c")
    edit_tensors(d, lambda sd: sd.pop("model.layers.1.self_attn.k_proj.bias"))
    with pytest.raises(CheckpointError, match=r"missing tensor 'model.layers.1.self_attn.k_proj.bias' \(expected shape \(32,\)\)"):
        load_pretrained(d)


def test_wrong_shape(hf_checkpoint, tmp_path):
    d = copy_ckpt(hf_checkpoint, tmp_path / "c")
    edit_tensors(d, lambda sd: sd.update({"model.layers.0.mlp.up_proj.weight": torch.zeros(350, 160)}))
    with pytest.raises(CheckpointError, match=r"'model.layers.0.mlp.up_proj.weight' has shape \(350, 160\), "
                                              r"but the config expects \(352, 160\)"):
        load_pretrained(d)


def test_extra_tensor(hf_checkpoint, tmp_path):
    d = copy_ckpt(hf_checkpoint, tmp_path / "c")
    edit_tensors(d, lambda sd: sd.update({"model.layers.0.self_attn.o_proj.bias": torch.zeros(160)}))
    with pytest.raises(CheckpointError, match=r"unexpected tensor 'model.layers.0.self_attn.o_proj.bias' with shape \(160,\)"):
        load_pretrained(d)


def test_config_that_does_not_match(hf_checkpoint, tmp_path):
    d = copy_ckpt(hf_checkpoint, tmp_path / "c")
    cfg = json.loads((d / "config.json").read_text())
    cfg["num_hidden_layers"] = 4
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"missing tensor 'model.layers.3.*and 11 more"):
        load_pretrained(d)


def test_pickles_are_never_loaded(hf_checkpoint, tmp_path):
    d = copy_ckpt(hf_checkpoint, tmp_path / "c")
    (d / "model.safetensors").rename(d / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pickled checkpoints are never loaded"):
        load_pretrained(d)


def test_state_dict_needs_config():
    hf = make_hf(QwenConfig(**CONFIGS["odd"]))
    with pytest.raises(ValueError, match="needs config="):
        from_hf(hf.state_dict())
    assert from_hf(hf.state_dict(), QwenConfig(**CONFIGS["odd"])).config.num_hidden_layers == 2


def test_hub_id_offline_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(OSError, match="offline"):
        load_pretrained("Qwen/QwQ-32B")


def test_cli_verify(hf_checkpoint, capsys):
    assert cli(["verify", str(hf_checkpoint)]) == 0
    out = capsys.readouterr().out
    assert "layers.2.mlp" in out and "OK: every component within tol 1e-05" in out
    assert cli(["verify", str(hf_checkpoint / "nope")]) == 2
    assert "is not a checkpoint directory" in capsys.readouterr().err
