"""The `qwqlearn` command (also `python -m qwqlearn`).

    qwqlearn verify DIR [--dtype bfloat16] [--seq 32]   parity report: ours vs transformers
    qwqlearn doctor                                     is this environment ready for the course?
    qwqlearn progress                                   exercises done, per chapter
    qwqlearn student OUT_DIR                            student copies: solutions stubbed, outputs cleared
    qwqlearn chat [--model DIR|HUB_ID] [--4bit]         chat with a reasoning model (TinyQwQ by default)
"""

from __future__ import annotations

import argparse
import sys


def _verify(args) -> int:
    import torch

    from qwqlearn.verify import verify_checkpoint

    report = verify_checkpoint(args.dir, dtype=getattr(torch, args.dtype), seq=args.seq, tol=args.tol)
    print(report)
    return 0 if report.ok else 1


def _doctor(args) -> int:
    from qwqlearn.doctor import main

    return main()


def _progress(args) -> int:
    import qwqlearn.check  # noqa: F401  (registers the exercises)
    from qwqlearn.progress import table

    print(table())
    return 0


def _student(args) -> int:
    from qwqlearn.student import write_student_copies

    for path in write_student_copies(args.out_dir):
        print(path)
    return 0


def _chat(args) -> int:
    from qwqlearn.chatcli import main

    return main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qwqlearn", description="The qwqlearn course toolkit.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("verify", help="compare our model with transformers on a checkpoint directory")
    p.add_argument("dir", help="a Hugging Face-layout directory: config.json + *.safetensors")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--seq", type=int, default=16, help="length of the random test input")
    p.add_argument("--tol", type=float, default=None, help="max |Δ| allowed (default: 1e-5 fp32, 5e-2 bf16)")
    p.set_defaults(func=_verify)
    sub.add_parser("doctor", help="check Python, torch, GPU, transformers, bitsandbytes, Jupyter").set_defaults(func=_doctor)
    sub.add_parser("progress", help="show which exercises you have passed").set_defaults(func=_progress)
    p = sub.add_parser("student", help="write student copies of every notebook (solutions -> stubs)")
    p.add_argument("out_dir")
    p.set_defaults(func=_student)
    p = sub.add_parser("chat", help="chat with a reasoning model: thinking dimmed, /budget /wait /vote")
    from qwqlearn.chatcli import add_arguments

    add_arguments(p)
    p.set_defaults(func=_chat)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (OSError, ValueError) as e:  # bad paths, bad checkpoints, offline: one line, no traceback
        print(f"qwqlearn {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
