"""ChatML prompts for Qwen2.5, QwQ-32B-Preview and QwQ-32B.

    >>> from qwqlearn.chat import format_chat
    >>> format_chat([{"role": "user", "content": "What is 2+2?"}], template="qwq-32b")
    '<|im_start|>user\\nWhat is 2+2?<|im_end|>\\n<|im_start|>assistant\\n<think>\\n'

Every turn is `<|im_start|>{role}\\n{content}<|im_end|>\\n`. The three templates
differ only in the default system prompt, in what they do with earlier
assistant turns, and in how the assistant's turn is opened:

    template          default system prompt                       generation prompt
    qwen2.5           "You are Qwen, created by Alibaba Cloud. ..."   <|im_start|>assistant\\n
    qwq-32b-preview   "You are a helpful and harmless assistant. ..." <|im_start|>assistant\\n
    qwq-32b           none                                            <|im_start|>assistant\\n<think>\\n

QwQ-32B also drops the reasoning of earlier assistant turns: everything up to
and including `</think>`, and the newlines after it, as its own template does
with `content.split('</think>')[-1].lstrip('\\n')`.

`format_chat` is the readable Python version; `JINJA_TEMPLATES` holds the
models' own Jinja templates (tool-calling branches included), which
`Tokenizer.save_pretrained` embeds so that transformers' `apply_chat_template`
renders the same strings.
"""

from __future__ import annotations

DEFAULT_SYSTEM_PROMPTS = {
    "qwen2.5": "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
    "qwq-32b-preview": "You are a helpful and harmless assistant. You are Qwen developed by Alibaba. You should think step-by-step.",
    "qwq-32b": None,
}
GENERATION_PROMPTS = {
    "qwen2.5": "<|im_start|>assistant\n",
    "qwq-32b-preview": "<|im_start|>assistant\n",
    "qwq-32b": "<|im_start|>assistant\n<think>\n",
}
TEMPLATES = tuple(DEFAULT_SYSTEM_PROMPTS)
ROLES = ("system", "user", "assistant", "tool")


def turn(role: str, content: str) -> str:
    """One ChatML turn."""
    return f"<|im_start|>{role}\n{content}<|im_end|>\n"


def strip_thinking(content: str) -> str:
    """What QwQ-32B keeps of an earlier assistant turn: the text after the last </think>."""
    return content.split("</think>")[-1].lstrip("\n")


def format_chat(messages: list[dict], template: str = "qwen2.5", add_generation_prompt: bool = True) -> str:
    """Render [{"role": ..., "content": ...}, ...] as the prompt string `template` expects.

    Roles: system (first message, or later ones as ordinary turns), user, assistant,
    tool (results wrapped in <tool_response>, consecutive ones in one user turn).
    Raises ValueError for an unknown template or role, or an empty conversation.
    """
    if template not in TEMPLATES:
        raise ValueError(f"unknown chat template {template!r}; choose one of {TEMPLATES}")
    if not messages:
        raise ValueError("messages is empty: a chat needs at least one message")
    for m in messages:
        if m.get("role") not in ROLES:
            raise ValueError(f"unknown role {m.get('role')!r}; roles are {ROLES}")
        if m.get("tool_calls"):
            raise ValueError("assistant tool_calls are not rendered by format_chat; use the Jinja template")
    out = []
    if messages[0]["role"] == "system":
        out.append(turn("system", messages[0]["content"]))
        messages = messages[1:]
    elif DEFAULT_SYSTEM_PROMPTS[template]:
        out.append(turn("system", DEFAULT_SYSTEM_PROMPTS[template]))
    for n, m in enumerate(messages):
        role, content = m["role"], m["content"]
        if role == "tool":
            first = n == 0 or messages[n - 1]["role"] != "tool"
            last = n == len(messages) - 1 or messages[n + 1]["role"] != "tool"
            out.append(("<|im_start|>user" if first else "") + f"\n<tool_response>\n{content}\n</tool_response>"
                       + ("<|im_end|>\n" if last else ""))
        else:
            if role == "assistant" and template == "qwq-32b":
                content = strip_thinking(content)
            out.append(turn(role, content))
    if add_generation_prompt:
        out.append(GENERATION_PROMPTS[template])
    return "".join(out)


# -- the models' own Jinja templates (tokenizer_config.json "chat_template") ---
_TOOLS_PREAMBLE = r"""
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}"""

_TOOL_TURNS = r"""
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}"""

_TOOL_CALLS = r"""
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}"""


def _qwen25_style(system_prompt: str) -> str:
    """Qwen2.5-Instruct's template; QwQ-32B-Preview's is the same with its own system prompt."""
    return (
        r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- '""" + system_prompt + r"""' }}
    {%- endif %}""" + _TOOLS_PREAMBLE + r"""
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\n""" + system_prompt + r"""<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}""" + _TOOL_CALLS + _TOOL_TURNS + r"""
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""
    )


QWQ_32B_JINJA = (
    r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- '' }}
    {%- endif %}""" + _TOOLS_PREAMBLE + r"""
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
  {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" and not message.tool_calls %}
        {%- set content = message.content.split('</think>')[-1].lstrip('\n') %}
        {{- '<|im_start|>' + message.role + '\n' + content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {%- set content = message.content.split('</think>')[-1].lstrip('\n') %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + content }}
        {%- endif %}""" + _TOOL_CALLS + _TOOL_TURNS + r"""
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n<think>\n' }}
{%- endif %}
"""
)
QWEN25_JINJA = _qwen25_style(DEFAULT_SYSTEM_PROMPTS["qwen2.5"])
QWQ_32B_PREVIEW_JINJA = _qwen25_style(DEFAULT_SYSTEM_PROMPTS["qwq-32b-preview"])
JINJA_TEMPLATES = {"qwen2.5": QWEN25_JINJA, "qwq-32b-preview": QWQ_32B_PREVIEW_JINJA, "qwq-32b": QWQ_32B_JINJA}
