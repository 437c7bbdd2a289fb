"""Ask the shipped TinyQwQ a question from the command line.

    python -m qwqlearn.tinyqwq "What is 482 + 937?"
    python -m qwqlearn.tinyqwq "How many r's are in strawberry?" --mode direct
"""

import argparse

from qwqlearn import tinyqwq


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Ask TinyQwQ (addition and letter counting only).")
    ap.add_argument("question", nargs="?", default="What is 482 + 937?")
    ap.add_argument("--mode", choices=tinyqwq.VARIANTS, default="reflect")
    args = ap.parse_args(argv)
    text, value = tinyqwq.answer(args.question, mode=args.mode)
    print(text)
    print(f"\n[extracted answer: {value}]")


if __name__ == "__main__":
    main()
