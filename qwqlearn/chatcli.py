"""`qwqlearn chat`: talk to a reasoning model in the terminal; TinyQwQ unless told otherwise.

    qwqlearn chat                                         # the shipped TinyQwQ, offline
    qwqlearn chat --model Qwen/QwQ-32B --4bit --device cuda
    echo "What is 482 + 937?" | qwqlearn chat             # one question per line, also piped

The thinking is shown dimmed (or under a [thinking] heading when the output is not a
terminal), the answer plainly, then the token count and speed. The commands are
/budget, /wait, /vote, /reset, /help and /quit (see HELP below).

TinyQwQ only knows addition and letter counting, one question at a time, so with it
each question starts a fresh conversation and other questions get its refusal.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field

COMMANDS = ("/budget N|off", "/wait K", "/vote N", "/reset", "/help", "/quit")
HELP = """\
    /budget N     think at most N tokens, then answer (s1 budget forcing); /budget off
    /wait K       refuse the first K attempts to stop thinking: "Wait" instead of </think>
    /vote N       self-consistency: sample N answers and take the majority; /vote 1 is off
    /reset        forget the conversation
    /help, /quit  (end of input quits too)"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from qwqlearn.chat import TEMPLATES

    p.add_argument("--model", help="checkpoint directory or Hub id (default: the shipped TinyQwQ)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    p.add_argument("--4bit", dest="four_bit", action="store_true", help="quantise the linear layers to NF4")
    p.add_argument("--quant-backend", default="bitsandbytes", choices=["bitsandbytes", "qwqlearn"],
                   help="--4bit layers: bitsandbytes (CUDA) or qwqlearn's NF4Linear (any device)")
    p.add_argument("--template", default="qwq-32b", choices=TEMPLATES)
    p.add_argument("--temperature", type=float, default=None,
                   help="0 = greedy (default: 0 for TinyQwQ, 0.6 for other models)")
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--top-k", type=int, default=0, help="0 = off (QwQ's card suggests 20-40)")
    p.add_argument("--min-p", type=float, default=0.0)
    p.add_argument("--presence-penalty", type=float, default=0.0, help="0-2; QwQ's card suggests it against loops")
    p.add_argument("--max-new-tokens", type=int, default=4096, help="per reply, thinking included")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--budget", type=int, default=None, help="initial /budget")
    p.add_argument("--wait", type=int, default=0, help="initial /wait")
    p.add_argument("--vote", type=int, default=1, help="initial /vote")
    p.add_argument("--color", default="auto", choices=["auto", "always", "never"])


class ChatError(ValueError):
    """A problem with the command line or the machine, told in one line (cli prints it)."""


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- loading --------------------------------------------------------------------------------

def pick_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ChatError(f"--device {name}: PyTorch sees no CUDA GPU on this machine; use --device cpu")
    return name


def load_model(args, device: str):
    """(model, tokenizer, description). A bad path or an offline Hub id raises OSError with its reason."""
    from qwqlearn.tokenizer import Tokenizer
    from qwqlearn.weights import _resolve, load_pretrained

    if args.model is None:
        from qwqlearn import tinyqwq

        model, tokenizer = tinyqwq.load(device="cpu")
        name = "TinyQwQ"
    else:
        path = _resolve(args.model)  # a directory, or the Hub download (OSError when offline)
        model = load_pretrained(path, device="cpu")  # on the CPU first: --4bit quantises from there
        tokenizer = Tokenizer.from_pretrained(path)
        name = args.model
    about = f"{name}: {model.num_parameters() / 1e6:,.1f}M parameters"
    if args.four_bit:
        model = quantize(model, device, args.quant_backend)
        about += ", 4-bit"
    return model.to(device).eval(), tokenizer, f"{about} on {device}"


def quantize(model, device: str, backend: str):
    import torch

    from qwqlearn.quant import import_bitsandbytes, quantize_model

    if backend == "bitsandbytes" and not device.startswith("cuda"):
        note("--4bit: bitsandbytes' 4-bit layers need CUDA; using qwqlearn's NF4 layers on the CPU instead.")
        backend = "qwqlearn"
    if backend == "bitsandbytes":
        try:
            import_bitsandbytes()
        except ImportError as e:
            note(f"--4bit: {e}\nUsing qwqlearn's NF4 layers instead.")
            backend = "qwqlearn"
    compute = torch.bfloat16 if device.startswith("cuda") else next(model.parameters()).dtype
    return quantize_model(model, backend=backend, compute_dtype=compute, device=device)


# -- the conversation -----------------------------------------------------------------------

@dataclass
class ChatState:
    budget: int | None = None
    wait: int = 0
    votes: int = 1
    messages: list[dict] = field(default_factory=list)

    def describe(self) -> str:
        budget = "off" if self.budget is None else f"{self.budget} tokens"
        return f"budget {budget}, wait {self.wait}, vote {self.votes}, {len(self.messages) // 2} turns remembered"


def run_command(line: str, state: ChatState) -> bool:
    """Apply a /command; False means quit."""
    name, _, arg = line.partition(" ")
    arg = arg.strip()
    if name in ("/quit", "/exit"):
        return False
    if name == "/reset":
        state.messages.clear()
        print("(conversation forgotten)")
    elif name == "/budget":
        state.budget = None if arg in ("off", "none") else _count(arg, name, minimum=0)
        print(f"(thinking budget: {'off' if state.budget is None else state.budget})")
    elif name == "/wait":
        from qwqlearn.reasoning import WAIT

        state.wait = _count(arg, name, minimum=0)
        print(f"(wait {state.wait}: up to {state.wait} times, the model's </think> is replaced by \"{WAIT}\")")
    elif name == "/vote":
        state.votes = _count(arg, name, minimum=1)
        print(f"(answers by majority of {state.votes})" if state.votes > 1 else "(voting off)")
    else:
        if name != "/help":
            print(f"unknown command {name}")
        print(HELP)
        print(f"now: {state.describe()}")
    return True


def _count(arg: str, name: str, minimum: int) -> int:
    if not arg.isdigit() or int(arg) < minimum:
        raise ChatError(f"{name} needs a whole number >= {minimum}, got {arg!r}")
    return int(arg)


class Chat:
    """The model, its sampling settings and the conversation; ask() answers one line."""

    def __init__(self, model, tokenizer, args, tiny: bool):
        from qwqlearn.reasoning import Sampling

        self.model, self.tokenizer, self.args, self.tiny = model, tokenizer, args, tiny
        temperature = args.temperature if args.temperature is not None else (0.0 if tiny else 0.6)
        self.sampling = Sampling(temperature, args.top_p, args.top_k, args.min_p,
                                 presence_penalty=args.presence_penalty, seed=args.seed)
        self.color = {"always": True, "never": False}.get(args.color)
        self.state = ChatState(args.budget, args.wait, args.vote)

    def ask(self, question: str) -> None:
        if self.tiny:
            question = self._tiny_question(question)
            if question is None:
                return
            self.state.messages.clear()  # TinyQwQ was trained on single questions only
        messages = [*self.state.messages, {"role": "user", "content": question}]
        options = dict(template=self.args.template, max_new_tokens=self.args.max_new_tokens)
        if self.state.budget is not None:
            options["max_thinking_tokens"] = self.state.budget
        if self.state.wait:
            options["wait"] = self.state.wait
        text = self._vote(messages, options) if self.state.votes > 1 else self._stream(messages, options)
        self.state.messages = [*messages, {"role": "assistant", "content": text}]

    def _tiny_question(self, question: str) -> str | None:
        """The canonical wording TinyQwQ was trained on, or None (and its refusal) if off-task."""
        from qwqlearn import tinyqwq
        from qwqlearn.tinyqwq import _in_range
        from qwqlearn.tinyqwq.data import parse_question

        problem = parse_question(question)
        if problem is None or not _in_range(problem):
            print(tinyqwq.OFF_TASK)
            return None
        return problem.question

    def _stream(self, messages, options) -> str:
        from qwqlearn.reasoning import TerminalPrinter, ask

        out = TerminalPrinter(color=self.color)
        try:
            reply = ask(self.model, self.tokenizer, messages, sampling=self.sampling, on_text=out, **options)
        finally:  # also on Ctrl-C: never leave the terminal dimmed
            out.close()
        waits = f", {reply.waits_added} waits" if reply.waits_added else ""
        print(f"({reply.tokens_used} tokens, {reply.thinking_tokens} thinking{waits}, "
              f"{reply.tokens_per_second:.1f} tokens/s, stopped: {reply.stopped_because})")
        return reply.text

    def _vote(self, messages, options) -> str:
        from dataclasses import replace

        from qwqlearn.reasoning import Sampling, canonical, vote

        sampling = self.sampling
        if sampling.temperature == 0:  # n greedy traces would be n copies of one
            sampling = replace(Sampling(), seed=sampling.seed)
            print(f"(sampling at temperature {sampling.temperature}, top-p {sampling.top_p} for the vote)")
        t0 = time.perf_counter()
        result = vote(self.model, self.tokenizer, messages, n=self.state.votes, sampling=sampling, **options)
        seconds = time.perf_counter() - t0
        for answer, count in result.votes.most_common():
            print(f"  {answer:>12}  {'#' * count} {count}")
        missing = len(result.traces) - sum(result.votes.values())
        if missing:
            print(f"  {'(no answer)':>12}  {'#' * missing} {missing}")
        tokens = sum(t.tokens_used for t in result.traces)
        print(f"majority: {result.answer} ({result.votes[result.answer]}/{len(result.traces)})")
        print(f"({tokens} tokens in {len(result.traces)} traces, {tokens / seconds:.1f} tokens/s)")
        # the conversation remembers one trace that voted for the winner
        winners = [t for t in result.traces
                   if t.final_answer is not None and canonical(t.final_answer) == result.answer]
        return (winners or result.traces)[0].text


def read_lines(interactive: bool):
    """Lines from stdin, one at a time (so a pipe works). A terminal gets a prompt; piped
    input is echoed instead, so that the output reads as a transcript."""
    while True:
        if interactive:
            print("\n> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:
            return
        if not interactive and line.strip():
            print(f"\n> {line.strip()}")
        yield line.strip()


def main(args) -> int:
    import torch

    device = pick_device(args.device)
    model, tokenizer, about = load_model(args, device)
    tiny = args.model is None
    if tiny and device == "cpu":
        torch.set_num_threads(1)  # ~1M parameters: thread hand-offs cost more than they save
    chat = Chat(model, tokenizer, args, tiny)
    interactive = sys.stdin.isatty()
    note(f"{about}. Commands: {' '.join(COMMANDS)}" + (" (Ctrl-D quits)" if interactive else ""))
    try:
        for line in read_lines(interactive):
            if line and not handle(chat, line):
                break
    except KeyboardInterrupt:  # Ctrl-C at the prompt leaves like Ctrl-D
        print()
    return 0


def handle(chat: Chat, line: str) -> bool:
    """One line of input: a /command or a question. False means quit."""
    try:
        if line.startswith("/"):
            return run_command(line, chat.state)
        chat.ask(line)
    except KeyboardInterrupt:  # Ctrl-C while it thinks stops this reply, not the chat
        print("\n(interrupted)")
    except ValueError as e:  # a bad command argument, a too-long conversation: say so, keep going
        print(f"error: {e}")
    return True
