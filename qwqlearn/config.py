"""QwenConfig: the shape of a Qwen2 / QwQ model, mirroring transformers' Qwen2Config.

    >>> from qwqlearn import QwenConfig
    >>> cfg = QwenConfig.preset("qwq-32b")
    >>> cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    (40, 8, 128)

`from_hf` reads a transformers `Qwen2Config` or the dict of a `config.json`;
`to_hf` goes the other way, so a model built here can be saved in the exact
Hugging Face layout.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace


@dataclass
class QwenConfig:
    vocab_size: int = 151936
    hidden_size: int = 896
    intermediate_size: int = 4864
    num_hidden_layers: int = 24
    num_attention_heads: int = 14
    num_key_value_heads: int = 2
    max_position_embeddings: int = 32768
    rope_theta: float = 1_000_000.0
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = True
    # Sliding-window attention, exactly as Qwen2Config defines it: when
    # use_sliding_window is set, layers with index >= max_window_layers only
    # see the last `sliding_window` positions. All published Qwen2.5 / QwQ
    # checkpoints ship with use_sliding_window=False.
    use_sliding_window: bool = False
    sliding_window: int | None = None
    max_window_layers: int = 28
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    torch_dtype: str = "bfloat16"
    name: str = field(default="custom", compare=False)

    def __post_init__(self):
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by "
                f"num_attention_heads {self.num_attention_heads}"
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads {self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads {self.num_key_value_heads} (grouped-query attention "
                "shares each key/value head across a whole group of query heads)"
            )
        if self.head_dim % 2:
            raise ValueError(f"head_dim {self.head_dim} must be even for rotary embeddings")
        if self.use_sliding_window and not self.sliding_window:
            raise ValueError("use_sliding_window=True needs a positive sliding_window")

    # -- derived shapes ------------------------------------------------------
    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def n_rep(self) -> int:
        """How many query heads share one key/value head (5 for QwQ-32B's 40/8)."""
        return self.num_attention_heads // self.num_key_value_heads

    @property
    def layer_types(self) -> list[str]:
        """Per layer: "full_attention" or "sliding_attention", as Qwen2Config computes it."""
        return [
            "sliding_attention" if self.use_sliding_window and i >= self.max_window_layers else "full_attention"
            for i in range(self.num_hidden_layers)
        ]

    def kv_cache_bytes_per_token(self, bytes_per_value: int = 2) -> int:
        """Keys + values of every layer for one token (bf16 by default)."""
        return 2 * self.num_hidden_layers * self.num_key_value_heads * self.head_dim * bytes_per_value

    # -- presets -------------------------------------------------------------
    @classmethod
    def preset(cls, name: str) -> "QwenConfig":
        try:
            return replace(PRESETS[name])
        except KeyError:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None

    # -- Hugging Face interop ------------------------------------------------
    @classmethod
    def from_hf(cls, config_or_dict) -> "QwenConfig":
        """Read a transformers Qwen2Config, or the dict of a config.json (v4 or v5 style)."""
        d = config_or_dict if isinstance(config_or_dict, dict) else config_or_dict.to_dict()
        model_type = d.get("model_type", "qwen2")
        if model_type != "qwen2":
            raise ValueError(f"model_type {model_type!r} is not a Qwen2-architecture model (expected 'qwen2')")
        if d.get("hidden_act", "silu") != "silu":
            raise ValueError(f"hidden_act {d['hidden_act']!r} is not supported; Qwen2 uses 'silu'")
        rope = d.get("rope_parameters") or d.get("rope_scaling") or {}
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type != "default":
            raise ValueError(
                f"rope_type {rope_type!r} is not implemented here (only the default RoPE); "
                "remove rope_scaling from config.json to run within the native context"
            )
        theta = rope.get("rope_theta", d.get("rope_theta", 10000.0))
        known = {f.name for f in fields(cls)} - {"rope_theta", "name", "torch_dtype"}
        kwargs = {k: d[k] for k in known if k in d}
        if d.get("num_key_value_heads") is None:
            kwargs["num_key_value_heads"] = d["num_attention_heads"]
        head_dim = d.get("head_dim")
        if head_dim is not None and head_dim != d["hidden_size"] // d["num_attention_heads"]:
            raise ValueError(f"head_dim {head_dim} != hidden_size / num_attention_heads; Qwen2 does not allow that")
        if not d.get("use_sliding_window", False):
            kwargs["sliding_window"] = None
        dtype = d.get("dtype") or d.get("torch_dtype") or "bfloat16"
        return cls(**kwargs, rope_theta=float(theta), torch_dtype=str(dtype).replace("torch.", ""),
                   name=d.get("_name_or_path") or "custom")

    def to_dict(self) -> dict:
        """A config.json dict that transformers (v4 and v5) reads as Qwen2Config."""
        d = {k: v for k, v in asdict(self).items() if k != "name"}
        d.update(
            architectures=["Qwen2ForCausalLM"],
            model_type="qwen2",
            hidden_act="silu",
            attention_dropout=0.0,
            initializer_range=0.02,
            use_cache=True,
            rope_parameters={"rope_type": "default", "rope_theta": self.rope_theta},
        )
        return d

    def to_hf(self):
        """The matching transformers.Qwen2Config."""
        from transformers import Qwen2Config

        d = self.to_dict()
        for k in ("architectures", "model_type"):
            d.pop(k)
        d["dtype"] = d.pop("torch_dtype")
        return Qwen2Config(**d)


# Published shapes (config.json of each Hub repo).
PRESETS = {
    "qwq-32b-preview": QwenConfig(
        vocab_size=152064, hidden_size=5120, intermediate_size=27648, num_hidden_layers=64,
        num_attention_heads=40, num_key_value_heads=8, max_position_embeddings=32768,
        rope_theta=1_000_000.0, rms_norm_eps=1e-5, tie_word_embeddings=False,
        sliding_window=None, max_window_layers=64, bos_token_id=151643, eos_token_id=151645,
        name="Qwen/QwQ-32B-Preview",
    ),
    "qwq-32b": QwenConfig(
        vocab_size=152064, hidden_size=5120, intermediate_size=27648, num_hidden_layers=64,
        num_attention_heads=40, num_key_value_heads=8, max_position_embeddings=40960,
        rope_theta=1_000_000.0, rms_norm_eps=1e-5, tie_word_embeddings=False,
        sliding_window=None, max_window_layers=64, bos_token_id=151643, eos_token_id=151645,
        name="Qwen/QwQ-32B",
    ),
    "qwen2.5-0.5b": QwenConfig(
        vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
        num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
        rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
        sliding_window=None, max_window_layers=21, bos_token_id=151643, eos_token_id=151645,
        name="Qwen/Qwen2.5-0.5B-Instruct",
    ),
    "qwen2.5-7b": QwenConfig(
        vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
        num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=32768,
        rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=False,
        sliding_window=None, max_window_layers=28, bos_token_id=151643, eos_token_id=151645,
        name="Qwen/Qwen2.5-7B-Instruct",
    ),
    # For tests: QwQ's 5:1 grouping in miniature, rope_theta 1e6, untied head.
    "tiny": QwenConfig(
        vocab_size=512, hidden_size=80, intermediate_size=176, num_hidden_layers=3,
        num_attention_heads=10, num_key_value_heads=2, max_position_embeddings=256,
        rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=False,
        sliding_window=None, max_window_layers=3, torch_dtype="float32", name="tiny",
    ),
}
