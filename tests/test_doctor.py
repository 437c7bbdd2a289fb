"""`qwqlearn doctor` and `qwqlearn progress`."""

from qwqlearn import doctor
from qwqlearn.cli import main as cli


def test_doctor_table_and_exit_code(monkeypatch, capsys):
    monkeypatch.setattr(doctor, "run_checks", lambda: [doctor.Check("python", "OK", "3.11"),
                                                      doctor.Check("GPU", "warn", "none", "use a GPU box")])
    assert cli(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "GPU              warn     none" in out and "ready to go" in out
    monkeypatch.setattr(doctor, "run_checks", lambda: [doctor.Check("torch", "problem", "not installed", "make setup")])
    assert cli(["doctor"]) == 1
    assert "1 blocking problem(s): torch" in capsys.readouterr().out


def test_real_checks_run_and_name_every_part():
    names = [c.name for c in doctor.run_checks()]
    assert names[:3] == ["python", "torch", "GPU"]
    assert {"transformers", "bitsandbytes", "Qwen vocabulary", "TinyQwQ", "Jupyter kernel", "widgets"} <= set(names)


def test_missing_package_is_a_problem_with_a_fix():
    c = doctor.check_package("surely-not-installed-pkg", "surely_not", "pip install it")
    assert (c.status, c.detail, c.fix) == ("problem", "not installed", "pip install it")


def test_progress_command(capsys):
    assert cli(["progress"]) == 0
    assert "04       0/2" in capsys.readouterr().out
