"""Small helpers the notebooks share: quiet deterministic set-up and consistent plots.

    >>> from qwqlearn.viz import notebook_setup, shape
    >>> notebook_setup()                 # seed 0, quiet libraries, readable figures
    >>> print(shape("q", q))             # q: [1, 40, 7, 128] bfloat16
"""

from __future__ import annotations

import logging
import os
import warnings

import torch


def notebook_setup(seed: int = 0) -> None:
    """Seed torch, silence library chatter that nbval would compare, set a plot style."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore")
    for name in ("transformers", "bitsandbytes", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.ERROR)
    torch.manual_seed(seed)
    try:
        import matplotlib.pyplot as plt

        plt.rcParams.update({"figure.figsize": (7, 3.6), "figure.dpi": 90, "axes.grid": True,
                             "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False})
    except ImportError:
        pass


def shape(name: str, t: torch.Tensor) -> str:
    """'name: [d0, d1, ...] dtype' — the shape line notebooks print as tensors flow."""
    return f"{name}: {list(t.shape)} {str(t.dtype).replace('torch.', '')}"
