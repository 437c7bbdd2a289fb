"""Student copies: no solution text, they run up to the first exercise, and its checker nudges."""

import re

import nbformat
import pytest
from nbclient import NotebookClient

from qwqlearn.student import NOTEBOOKS, write_student_copies

CHAPTERS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
SOLUTION = re.compile(r"### BEGIN SOLUTION(.*?)### END SOLUTION", re.S)


def solution_lines(nb) -> set[str]:
    """Every non-trivial line written between the solution markers of a notebook."""
    lines = set()
    for cell in nb.cells:
        for block in SOLUTION.findall(cell.source):
            lines |= {ln.strip() for ln in block.splitlines() if len(ln.strip()) > 8}
    return lines


def test_every_chapter_has_an_exercise():
    assert CHAPTERS, "no notebooks found"
    for path in CHAPTERS:
        assert solution_lines(nbformat.read(path, as_version=4)), f"{path.name} has no exercise"


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    write_student_copies(out)
    return out


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_student_copy_has_no_solution_and_no_output(path, student_dir):
    teacher = nbformat.read(path, as_version=4)
    student = nbformat.read(student_dir / path.name, as_version=4)
    exercises = [i for i, c in enumerate(teacher.cells) if SOLUTION.search(c.source)]
    for i in exercises:  # the cells that held a solution now hold a stub, and no solution line
        cleared = student.cells[i].source
        leaked = [ln for ln in solution_lines(teacher) if ln in cleared]
        assert not leaked, f"solution text left in {path.name}, cell {i}: {leaked[:3]}"
        assert "raise NotImplementedError" in cleared
    assert all(not c.get("outputs") for c in student.cells if c.cell_type == "code")


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_student_copy_runs_to_its_first_checker(path, student_dir):
    nb = nbformat.read(student_dir / path.name, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    stub = next(i for i, c in enumerate(code) if "raise NotImplementedError" in c.source)
    # the checker call sits in the exercise cell itself or in the next one
    last = stub if "check." in code[stub].source else stub + 1
    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}})
    with client.setup_kernel():
        for cell in code[: last + 1]:
            client.execute_cell(cell, nb.cells.index(cell))
    outputs = "".join(o.get("text", "") for o in code[last].outputs)
    assert "not implemented yet" in outputs, f"{path.name}: checker printed {outputs!r}"
    assert not any(o.output_type == "error" for c in code[: last + 1] for o in c.outputs)
