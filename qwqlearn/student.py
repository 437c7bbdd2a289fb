"""Student copies of the notebooks: solutions replaced by stubs, outputs cleared.

    qwqlearn student OUT_DIR        (or: make student)

Uses nbgrader's own ClearSolutions and ClearOutput preprocessors, standalone
(no nbgrader server, no course database): every block between
`### BEGIN SOLUTION` and `### END SOLUTION` becomes
`# YOUR CODE HERE` / `raise NotImplementedError()`, and the checker cell that
follows each exercise then prints its "not implemented yet" nudge.
"""

from __future__ import annotations

from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def student_copy(nb):
    """A cleared copy of an nbformat notebook node."""
    import copy

    from nbgrader.preprocessors import ClearOutput, ClearSolutions

    nb = copy.deepcopy(nb)
    nb, _ = ClearSolutions(enforce_metadata=False).preprocess(nb, {})
    nb, _ = ClearOutput().preprocess(nb, {})
    nb.metadata.pop("widgets", None)
    return nb


def write_student_copies(out_dir, src_dir=NOTEBOOKS) -> list[Path]:
    """Write a student copy of every src_dir/*.ipynb into out_dir; returns the paths written."""
    import nbformat

    src_dir, out_dir = Path(src_dir), Path(out_dir)
    sources = sorted(src_dir.glob("[0-9][0-9]_*.ipynb"))
    if not sources:
        raise FileNotFoundError(f"no chapter notebooks (NN_name.ipynb) in {src_dir}")
    if out_dir.resolve() == src_dir.resolve():
        raise ValueError("OUT_DIR must differ from the notebooks directory (it would overwrite the solutions)")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for src in sources:
        nb = student_copy(nbformat.read(src, as_version=4))
        dst = out_dir / src.name
        tmp = dst.with_suffix(".tmp")
        nbformat.write(nb, tmp)
        tmp.replace(dst)
        written.append(dst)
    return written
