"""Chapter 10's checker: TinyQwQ's addition trace. Reference passes, mistakes are named, stubs nudged."""

from qwqlearn import check
from qwqlearn.tinyqwq.data import addition_lines


def stub(a, b):
    raise NotImplementedError


def test_reference_passes(capsys):
    assert all(check._addition_trace(a, b) == addition_lines(a, b) for a, b in [(482, 937), (5, 97), (9876, 5)])
    assert check.addition_trace(addition_lines)
    assert capsys.readouterr().out.startswith("✅ addition_trace")


def test_classic_mistakes_are_named(capsys):
    def left_to_right(a, b):
        return check._addition_trace(a, b, ones_first=False)

    def no_carry(a, b):
        return check._addition_trace(a, b, carry=False)

    def no_final_carry(a, b):
        return check._addition_trace(a, b, final_carry=False)

    assert not check.addition_trace(left_to_right)
    assert "leftmost digit" in capsys.readouterr().out
    assert not check.addition_trace(no_carry)
    assert "pass the carry on" in capsys.readouterr().out
    assert not check.addition_trace(no_final_carry)
    assert "forget the last carry" in capsys.readouterr().out
    assert not check.addition_trace(lambda a, b: "\n".join(addition_lines(a, b)))
    assert "not one string" in capsys.readouterr().out
    assert not check.addition_trace(lambda a, b: addition_lines(a, b)[:-1])
    assert "expected 5 lines, got 4" in capsys.readouterr().out


def test_stub_gets_a_nudge(capsys):
    assert check.addition_trace(stub) is False
    out = capsys.readouterr().out
    assert "not implemented yet" in out and "Traceback" not in out
