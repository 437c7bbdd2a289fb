"""qwqlearn: rebuild Qwen2 / QwQ-32B from scratch and prove it equal to transformers.

    >>> import qwqlearn
    >>> model = qwqlearn.load_pretrained("path/to/checkpoint")     # HF layout, safetensors
    >>> ids = qwqlearn.generate(model, prompt_ids, max_new_tokens=32)
"""

from qwqlearn.config import QwenConfig
from qwqlearn.generate import generate, stream
from qwqlearn.model import QwenForCausalLM
from qwqlearn.weights import from_hf, load_pretrained, save_pretrained

__all__ = ["QwenConfig", "QwenForCausalLM", "from_hf", "generate", "load_pretrained", "save_pretrained", "stream"]
