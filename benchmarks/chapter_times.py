"""How long each chapter takes to run top to bottom, on this machine, in one table.

    python benchmarks/chapter_times.py                 # every notebooks/NN_*.ipynb
    python benchmarks/chapter_times.py 04 09           # just these chapters

Each notebook is executed in a fresh kernel with nbclient, as `make test` does
(outputs are not written back). Kernel start-up is included, because a learner
pays it too. Run it on an otherwise idle machine: the table in
docs/instructor.md came from here.
"""

import argparse
import os
import platform
import time
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def run_notebook(path: Path) -> float:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    t = time.perf_counter()
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("chapters", nargs="*", help="chapter numbers, e.g. 04 09 (default: all)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if args.chapters:
        paths = [p for p in paths if p.name[:2] in args.chapters]
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print(f"| {'chapter':<36} | {'seconds':>7} |\n|{'-' * 38}|{'-' * 8}:|")
    total = 0.0
    for path in paths:
        seconds = run_notebook(path)
        total += seconds
        print(f"| {path.stem:<36} | {seconds:>7.0f} |", flush=True)
    print(f"| {'total':<36} | {total:>7.0f} |")


if __name__ == "__main__":
    main()
