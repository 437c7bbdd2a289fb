"""Weights in Hugging Face layout: convert, check, load and save.

    >>> model = load_pretrained("qwqlearn/tinyqwq/checkpoint")   # config.json + *.safetensors
    >>> model = from_hf(transformers_model)                      # any Qwen2ForCausalLM
    >>> save_pretrained(model, "out/")                           # loads in transformers too

A checkpoint directory is exactly what the Hub serves: `config.json` and one
`model.safetensors`, or shards listed in `model.safetensors.index.json`.
Only safetensors are read (never pickles), and every tensor is checked by
name and shape before a single weight is copied, so a bad file fails with a
message that names the tensor rather than with a half-loaded model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from qwqlearn.config import QwenConfig
from qwqlearn.model import QwenForCausalLM


class CheckpointError(ValueError):
    """A checkpoint that does not match the model: missing, extra or misshapen tensors, bad files."""


# -- name and shape bookkeeping --------------------------------------------------

def hf_shapes(config: QwenConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor of a transformers Qwen2ForCausalLM checkpoint with its shape."""
    H, KV, D = config.num_attention_heads, config.num_key_value_heads, config.head_dim
    hid, inter = config.hidden_size, config.intermediate_size
    shapes = {"model.embed_tokens.weight": (config.vocab_size, hid), "model.norm.weight": (hid,)}
    for i in range(config.num_hidden_layers):
        p = f"model.layers.{i}."
        shapes.update({
            p + "self_attn.q_proj.weight": (H * D, hid), p + "self_attn.q_proj.bias": (H * D,),
            p + "self_attn.k_proj.weight": (KV * D, hid), p + "self_attn.k_proj.bias": (KV * D,),
            p + "self_attn.v_proj.weight": (KV * D, hid), p + "self_attn.v_proj.bias": (KV * D,),
            p + "self_attn.o_proj.weight": (hid, H * D),
            p + "mlp.gate_proj.weight": (inter, hid), p + "mlp.up_proj.weight": (inter, hid),
            p + "mlp.down_proj.weight": (hid, inter),
            p + "input_layernorm.weight": (hid,), p + "post_attention_layernorm.weight": (hid,),
        })
    if not config.tie_word_embeddings:
        shapes["lm_head.weight"] = (config.vocab_size, hid)
    return shapes


def check_hf_state_dict(sd: dict, config: QwenConfig) -> None:
    """Raise CheckpointError naming the first missing, unexpected or misshapen tensor."""
    expected = hf_shapes(config)
    # A tied checkpoint may still carry lm_head.weight (a copy of the embedding).
    extra = sorted(set(sd) - set(expected) - ({"lm_head.weight"} if config.tie_word_embeddings else set()))
    missing = sorted(set(expected) - set(sd))
    if missing:
        raise CheckpointError(f"missing tensor {missing[0]!r} (expected shape {expected[missing[0]]})"
                              + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
    if extra:
        raise CheckpointError(f"unexpected tensor {extra[0]!r} with shape {tuple(sd[extra[0]].shape)}"
                              + (f" and {len(extra) - 1} more" if len(extra) > 1 else ""))
    for name, shape in expected.items():
        if tuple(sd[name].shape) != shape:
            raise CheckpointError(f"tensor {name!r} has shape {tuple(sd[name].shape)}, "
                                  f"but the config expects {shape}")


def hf_to_qwq(sd: dict, config: QwenConfig) -> dict:
    """transformers names -> ours: drop `model.`, fuse q|k|v and gate|up."""
    check_hf_state_dict(sd, config)
    out = {}
    for name, t in sd.items():
        if name == "lm_head.weight" and config.tie_word_embeddings:
            continue
        out[name.removeprefix("model.")] = t
    for i in range(config.num_hidden_layers):
        a, m = f"layers.{i}.self_attn.", f"layers.{i}.mlp."
        for kind in ("weight", "bias"):
            out[a + f"qkv_proj.{kind}"] = torch.cat([out.pop(a + f"{p}_proj.{kind}") for p in "qkv"])
        out[m + "gate_up_proj.weight"] = torch.cat([out.pop(m + "gate_proj.weight"), out.pop(m + "up_proj.weight")])
    return out


def qwq_to_hf(sd: dict, config: QwenConfig) -> dict:
    """Ours -> transformers names: split the fused matrices, add `model.`."""
    H, KV, D = config.num_attention_heads, config.num_key_value_heads, config.head_dim
    out = {}
    for name, t in sd.items():
        if name == "lm_head.weight":
            if not config.tie_word_embeddings:
                out[name] = t
        elif ".qkv_proj." in name:
            for p, part in zip("qkv", t.split([H * D, KV * D, KV * D])):
                out["model." + name.replace("qkv_proj", f"{p}_proj")] = part
        elif ".gate_up_proj." in name:
            gate, up = t.chunk(2)
            out["model." + name.replace("gate_up_proj", "gate_proj")] = gate
            out["model." + name.replace("gate_up_proj", "up_proj")] = up
        else:
            out["model." + name] = t
    return out


def _build(config: QwenConfig, sd: dict, dtype=None, device="cpu") -> QwenForCausalLM:
    """A model holding exactly the tensors of `sd` (our names), built without a throwaway random init."""
    with torch.device("meta"):
        model = QwenForCausalLM(config)
    sd = {k: v.to(device=device, dtype=dtype or v.dtype) for k, v in sd.items()}
    if config.tie_word_embeddings:
        sd["lm_head.weight"] = sd["embed_tokens.weight"]
    model.load_state_dict(sd, strict=True, assign=True)
    if config.tie_word_embeddings:
        model.lm_head.weight = model.embed_tokens.weight  # assign=True replaced the shared Parameter
    if torch.device(device).type == "cpu":
        model.use_column_major_tall_weights()
    return model.eval()


# -- public entry points ----------------------------------------------------------

def from_hf(hf_model_or_state_dict, config: QwenConfig | None = None, dtype=None,
            copy: bool = True) -> QwenForCausalLM:
    """A QwenForCausalLM carrying the weights of a transformers Qwen2ForCausalLM (or its state dict).

    The weights are copied (copy=True), so editing one model never changes the other.
    """
    if isinstance(hf_model_or_state_dict, torch.nn.Module):
        config = config or QwenConfig.from_hf(hf_model_or_state_dict.config)
        sd = hf_model_or_state_dict.state_dict()
    else:
        if config is None:
            raise ValueError("from_hf(state_dict) needs config=QwenConfig(...): head counts "
                             "cannot be read off tensor shapes")
        sd = hf_model_or_state_dict
    sd = {k: v.detach().clone() if copy else v.detach() for k, v in sd.items()}
    return _build(config, hf_to_qwq(sd, config), dtype=dtype)


def _read_safetensors(files: list[Path]) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    sd = {}
    for f in files:
        if not f.exists():
            raise CheckpointError(f"shard {f.name} is listed in the index but missing from {f.parent}")
        try:
            sd.update(load_file(f))
        except SafetensorError as e:
            raise CheckpointError(f"{f} is not a readable safetensors file (truncated or corrupt?): {e}") from None
    return sd


def _resolve(path_or_id: str | os.PathLike) -> Path:
    """A local directory, or a Hub id downloaded (or found in the local cache) via huggingface_hub."""
    path = Path(path_or_id).expanduser()
    if path.is_dir():
        return path
    name = str(path_or_id)
    if path.exists() or name.count("/") != 1 or name.startswith((".", "/", "~")):
        raise FileNotFoundError(f"{name!r} is not a checkpoint directory (and does not look like a Hub id 'org/name')")
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "merges.txt", "vocab.json", "*.tiktoken"]
    try:
        return Path(snapshot_download(name, allow_patterns=patterns))
    except Exception as e:  # offline, unknown repo, gated repo: all end here
        try:
            return Path(snapshot_download(name, allow_patterns=patterns, local_files_only=True))
        except Exception:
            raise OSError(
                f"could not download {name!r} from the Hugging Face Hub and it is not in the local cache. "
                f"Are you offline (HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', 'unset')})? "
                f"Reason: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            ) from None


def load_pretrained(path_or_id, dtype=None, device="cpu") -> QwenForCausalLM:
    """Load a Hugging Face-layout checkpoint directory (or Hub id) into a QwenForCausalLM.

    dtype=None keeps the dtype stored in the files.
    """
    path = _resolve(path_or_id)
    cfg_file = path / "config.json"
    if not cfg_file.exists():
        raise CheckpointError(f"{path} has no config.json")
    config = QwenConfig.from_hf(json.loads(cfg_file.read_text()))
    index = path / "model.safetensors.index.json"
    if index.exists():
        shard_names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        files = [path / n for n in shard_names]
    elif (path / "model.safetensors").exists():
        files = [path / "model.safetensors"]
    else:
        pickles = [p.name for p in path.glob("*.bin")] + [p.name for p in path.glob("*.pt*")]
        hint = f" (found {pickles[0]}: pickled checkpoints are never loaded; convert it to safetensors)" if pickles else ""
        raise CheckpointError(f"{path} has no model.safetensors or model.safetensors.index.json{hint}")
    return from_hf(_read_safetensors(files), config, dtype=dtype, copy=False).to(device)


def save_pretrained(model: QwenForCausalLM, path, dtype=None) -> Path:
    """Write config.json + model.safetensors that transformers' from_pretrained reads unchanged.

    Files are written to a temporary name and renamed, so a failure never leaves half a checkpoint.
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = model.config
    sd = qwq_to_hf(model.state_dict(), config)
    sd = {k: v.detach().to(dtype or v.dtype).contiguous() for k, v in sd.items()}
    cfg = config.to_dict()
    cfg["torch_dtype"] = str(next(iter(sd.values())).dtype).replace("torch.", "")
    for name, write in (("model.safetensors", lambda f: save_file(sd, f, metadata={"format": "pt"})),
                        ("config.json", lambda f: Path(f).write_text(json.dumps(cfg, indent=2) + "\n"))):
        tmp = path / (name + ".tmp")
        write(str(tmp))
        os.replace(tmp, path / name)
    return path
