"""Chapter 09's checker: the reference passes, classic mistakes are named, stubs get a nudge."""

from collections import Counter

from qwqlearn import check


def reference(tokens, n, max_count):
    grams = Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))
    return any(c > max_count for c in grams.values())


def non_overlapping(tokens, n, max_count):
    grams = Counter(tuple(tokens[i:i + n]) for i in range(0, len(tokens) - n + 1, n))
    return any(c > max_count for c in grams.values())


def at_least(tokens, n, max_count):
    grams = Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))
    return any(c >= max_count for c in grams.values())


def misses_last(tokens, n, max_count):
    grams = Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n))
    return any(c > max_count for c in grams.values())


def stub(tokens, n, max_count):
    raise NotImplementedError


def test_reference_passes(capsys):
    assert check.ngram_loop(reference)
    assert "✅ ngram_loop" in capsys.readouterr().out


def test_mistakes_are_named(capsys):
    assert not check.ngram_loop(non_overlapping)
    assert "overlapping" in capsys.readouterr().out
    assert not check.ngram_loop(at_least)
    assert "more than" in capsys.readouterr().out
    assert not check.ngram_loop(misses_last)
    assert "last n-gram" in capsys.readouterr().out


def test_stub_gets_a_nudge(capsys):
    assert not check.ngram_loop(stub)
    out = capsys.readouterr().out
    assert "not implemented yet" in out and "Traceback" not in out
