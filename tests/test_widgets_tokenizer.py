"""The chapter 01 token explorer: its callback without a browser, and the widget wiring."""

import html

import pytest

from qwqlearn.tokenizer import train_bpe
from qwqlearn.widgets import explore_tokens, show_whitespace, token_explorer, token_summary


@pytest.fixture(scope="module")
def tok():
    return train_bpe("the cat sat on the mat, 世界 " * 20, vocab_size=300, progress=False)


def cell_texts(table: str, row: int) -> list[str]:
    """The text of every <td> in table row `row` (0: pieces, 1: ids), over all tables."""
    import re

    rows = re.findall(r"<tr>(.*?)</tr>", table)
    return [html.unescape(t) for r in rows[row::2] for t in re.findall(r"<td[^>]*>(.*?)</td>", r)]


def test_explore_tokens_shows_every_token_and_id(tok):
    text = "the cat sat"
    table, summary = explore_tokens(tok, text)
    ids = tok.encode(text)
    assert cell_texts(table, 1) == [str(i) for i in ids]
    assert cell_texts(table, 0) == [show_whitespace(p) for p in tok.pieces(ids)]
    assert "".join(cell_texts(table, 0)).replace("␣", " ") == text
    assert summary == token_summary(tok, text, ids)
    assert summary.startswith(f"11 characters · 11 UTF-8 bytes · {len(ids)} tokens")


def test_explore_tokens_rows_whitespace_and_escaping(tok):
    text = "<b>&\n\tthe mat " * 3
    table, _ = explore_tokens(tok, text, per_row=5)
    n = len(tok.encode(text))
    assert table.count("<table") == -(-n // 5)
    assert "<b>" not in table and "&lt;" in table and "&gt;" in table and "&amp;" in table  # escaped
    assert "↵" in table and "⇥" in table and "␣" in table


def test_explore_tokens_special_tokens_and_partial_bytes(tok):
    table, summary = explore_tokens(tok, "<|im_start|>user\nhi<|im_end|>")
    assert str(tok.special_tokens["<|im_start|>"]) in cell_texts(table, 1)
    assert "&lt;|im_start|&gt;" in table
    table, _ = explore_tokens(tok, "😀")  # 4 bytes, none merged: each shown as \xNN
    assert cell_texts(table, 0) == ["\\xf0", "\\x9f", "\\x98", "\\x80"]


def test_explore_tokens_empty_and_summary(tok):
    table, summary = explore_tokens(tok, "")
    assert "no tokens" in table
    assert summary == "0 characters · 0 UTF-8 bytes · 0 tokens"
    assert token_summary(tok, "é", [1, 2]) == "1 characters · 2 UTF-8 bytes · 2 tokens · 1.00 bytes per token"
    assert token_summary(tok, "e\u0301", [1, 2]).startswith("1 characters")  # NFC first, like encode


def test_token_explorer_updates_on_typing(tok):
    ui = token_explorer(tok, text="the cat")
    box, summary, tokens = ui.children
    assert tokens.value == explore_tokens(tok, "the cat")[0]
    box.value = "the mat sat"
    assert tokens.value == explore_tokens(tok, "the mat sat")[0]
    assert html.escape(token_summary(tok, "the mat sat", tok.encode("the mat sat"))) in summary.value
