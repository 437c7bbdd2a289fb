"""qwqlearn.chat: documented prompt strings, and parity with transformers' apply_chat_template."""

import pytest

from qwqlearn.chat import JINJA_TEMPLATES, TEMPLATES, format_chat
from qwqlearn.tokenizer import QWEN_SPECIAL_TOKENS, Tokenizer

USER = [{"role": "user", "content": "What is 2+2?"}]
QWEN_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
PREVIEW_SYSTEM = "You are a helpful and harmless assistant. You are Qwen developed by Alibaba. You should think step-by-step."

CONVERSATIONS = [
    USER,
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "<think>\n2 plus 2 is 4.\n</think>\n\n  The answer is 4."},
        {"role": "user", "content": "And 3+3? 用中文回答。"},
    ],
    [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "Let me check."},
        {"role": "tool", "content": '{"temp": 21}'},
        {"role": "tool", "content": '{"rain": false}'},
        {"role": "system", "content": "a later system message"},
        {"role": "assistant", "content": "no think tag here"},
    ],
]


def test_documented_prompts():
    assert format_chat(USER) == (
        f"<|im_start|>system\n{QWEN_SYSTEM}<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert format_chat(USER, template="qwq-32b-preview") == (
        f"<|im_start|>system\n{PREVIEW_SYSTEM}<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert format_chat(USER, template="qwq-32b") == (
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n"
    )
    assert format_chat(USER, template="qwq-32b", add_generation_prompt=False) == (
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
    )


def test_qwq_32b_drops_earlier_reasoning():
    prompt = format_chat(CONVERSATIONS[2], template="qwq-32b")
    assert "2 plus 2" not in prompt
    assert "<|im_start|>assistant\n  The answer is 4.<|im_end|>\n" in prompt
    assert "2 plus 2" in format_chat(CONVERSATIONS[2], template="qwen2.5")


def test_system_message_replaces_default():
    prompt = format_chat(CONVERSATIONS[1], template="qwq-32b-preview")
    assert prompt.startswith("<|im_start|>system\nBe brief.<|im_end|>\n") and PREVIEW_SYSTEM not in prompt


def test_errors():
    with pytest.raises(ValueError, match="unknown chat template 'llama'"):
        format_chat(USER, template="llama")
    with pytest.raises(ValueError, match="unknown role 'robot'"):
        format_chat([{"role": "robot", "content": "beep"}])
    with pytest.raises(ValueError, match="empty"):
        format_chat([])


@pytest.fixture(scope="module")
def hf_tokenizers(tmp_path_factory):
    """A bytes-only vocabulary with Qwen's special tokens, saved with each template and
    loaded back offline by transformers."""
    from transformers import AutoTokenizer

    ranks = {bytes([b]): b for b in range(256)}
    tok = Tokenizer(ranks, {s: 256 + n for n, s in enumerate(QWEN_SPECIAL_TOKENS)})
    out = {}
    for name in TEMPLATES:
        d = tok.save_pretrained(tmp_path_factory.mktemp(name), chat_template=name)
        out[name] = AutoTokenizer.from_pretrained(d)
    return tok, out


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("conversation", range(len(CONVERSATIONS)))
@pytest.mark.parametrize("generation_prompt", [True, False])
def test_matches_apply_chat_template(hf_tokenizers, template, conversation, generation_prompt):
    tok, hf = hf_tokenizers
    messages = CONVERSATIONS[conversation]
    ours = format_chat(messages, template=template, add_generation_prompt=generation_prompt)
    theirs = hf[template].apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    assert ours == theirs
    ids = hf[template].apply_chat_template(messages, tokenize=True, add_generation_prompt=generation_prompt)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    assert tok.encode(ours, allowed_special="all") == list(ids)


def test_jinja_templates_are_the_originals():
    # Spot checks of lines that distinguish the three published templates.
    assert "{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud." in JINJA_TEMPLATES["qwen2.5"]
    assert "You should think step-by-step.<|im_end|>\\n' }}" in JINJA_TEMPLATES["qwq-32b-preview"]
    assert "{%- set content = message.content.split('</think>')[-1].lstrip('\\n') %}" in JINJA_TEMPLATES["qwq-32b"]
    assert JINJA_TEMPLATES["qwq-32b"].endswith("{{- '<|im_start|>assistant\\n<think>\\n' }}\n{%- endif %}\n")
