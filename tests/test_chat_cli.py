"""`qwqlearn chat`, driven the way a pipe drives it: stdin in, a transcript out."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def chat(stdin: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "qwqlearn", "chat", *args], input=stdin, capture_output=True,
                          text=True, timeout=180, cwd=ROOT, env=env)


def test_a_question_on_tinyqwq():
    run = chat("What is 12 + 34?\n")
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "> What is 12 + 34?" in out
    assert out.index("[thinking]\nAdd the columns") < out.index("[answer]\nThe answer is ")
    assert "tokens/s, stopped: eos)" in out
    assert "\x1b[" not in out  # no colour codes when stdout is a pipe
    assert "TinyQwQ" in run.stderr and "Traceback" not in run.stderr


def test_commands():
    run = chat("/budget 10\nWhat is 12 + 34?\n/budget x\n/vote 3\n/wait 1\nHow many r's are in apple?\n"
               "/help\n/reset\nWhat is the capital of France?\n/quit\nWhat is 1 + 1?\n", "--seed", "0")
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "(thinking budget: 10)" in out and "10 thinking" in out
    assert "error: /budget needs a whole number >= 0, got 'x'" in out
    assert "(answers by majority of 3)" in out and "majority: " in out and "tokens in 3 traces" in out
    assert "/budget N" in out and "now: budget 10 tokens, wait 1, vote 3" in out  # /help
    assert "(conversation forgotten)" in out
    assert "I can only do addition" in out  # TinyQwQ's refusal: off-task questions never reach the model
    assert "What is 1 + 1?" not in out  # /quit ended the session


def test_end_of_input_exits_cleanly():
    run = chat("")
    assert run.returncode == 0 and run.stdout == "" and "Traceback" not in run.stderr


def test_bad_model_path_is_one_clear_line(tmp_path):
    run = chat("What is 1 + 1?\n", "--model", str(tmp_path / "missing"))
    assert run.returncode == 2
    assert run.stderr.startswith("qwqlearn chat: error: ") and "is not a checkpoint directory" in run.stderr
    assert "Traceback" not in run.stderr
    run = chat("", "--model", str(tmp_path))  # a directory, but no checkpoint in it
    assert run.returncode == 2 and "has no config.json" in run.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for a machine without CUDA")
def test_no_cuda_message_and_4bit_fallback():
    run = chat("", "--device", "cuda")
    assert run.returncode == 2 and "no CUDA GPU" in run.stderr and "Traceback" not in run.stderr
    run = chat("What is 12 + 34?\n", "--4bit")
    assert run.returncode == 0, run.stderr
    assert "using qwqlearn's NF4 layers" in run.stderr and "[answer]" in run.stdout
