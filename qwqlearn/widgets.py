"""ipywidgets for the notebooks, with their logic in plain functions that tests drive without a browser.

    >>> from qwqlearn.widgets import rope_pair_explorer, token_explorer
    >>> token_explorer(tokenizer)       # chapter 01: type text, see its tokens and ids
    >>> rope_pair_explorer()            # chapter 03: sliders that rotate a query/key pair

Each explorer is a thin layer of widgets over functions that take and return
plain values (numbers, strings, HTML, PNG bytes); tests call those functions directly.
"""

from __future__ import annotations

import html
import io
import math


# -- chapter 03: rotate a query/key pair with RoPE ------------------------------------------
#
# The callback logic is plain functions on Python floats (fp64), so tests can
# drive it without a browser; rope_pair_explorer only wires them to sliders.


def rope_angle(position: int, pair: int, head_dim: int = 128, theta: float = 1e6) -> float:
    """Radians that RoPE turns channel pair `pair` at `position`: position * theta^(-2*pair/head_dim)."""
    if not 0 <= pair < head_dim // 2:
        raise ValueError(f"pair must be in 0 .. {head_dim // 2 - 1} for head_dim {head_dim}, got {pair}")
    return position * theta ** (-2 * pair / head_dim)


def rotate_2d(v: tuple[float, float], angle: float) -> tuple[float, float]:
    """(x, y) turned counter-clockwise by `angle` radians: the 2x2 matrix [[cos, -sin], [sin, cos]]."""
    c, s = math.cos(angle), math.sin(angle)
    return (c * v[0] - s * v[1], s * v[0] + c * v[1])


def rope_pair_state(q: tuple[float, float], k: tuple[float, float], q_pos: int, k_pos: int,
                    pair: int = 0, head_dim: int = 128, theta: float = 1e6) -> dict:
    """Everything the explorer shows for one query/key channel pair at positions q_pos, k_pos."""
    angle_q = rope_angle(q_pos, pair, head_dim, theta)
    angle_k = rope_angle(k_pos, pair, head_dim, theta)
    q_rot, k_rot = rotate_2d(q, angle_q), rotate_2d(k, angle_k)
    return {
        "q": tuple(q), "k": tuple(k), "q_pos": q_pos, "k_pos": k_pos, "pair": pair,
        "offset": q_pos - k_pos, "angle_q": angle_q, "angle_k": angle_k,
        "q_rot": q_rot, "k_rot": k_rot,
        "score": q_rot[0] * k_rot[0] + q_rot[1] * k_rot[1],
        "score_unrotated": q[0] * k[0] + q[1] * k[1],
        "wavelength": 2 * math.pi * theta ** (2 * pair / head_dim),
    }


def rope_pair_caption(state: dict) -> str:
    """One line: positions, offset and the score, rounded so that equal offsets read equal."""
    return (f"pair {state['pair']} (wavelength {state['wavelength']:,.1f} tokens) · "
            f"query at {state['q_pos']}, key at {state['k_pos']} → offset {state['offset']} · "
            f"q·k = {state['score']:+.4f} (without RoPE {state['score_unrotated']:+.4f})")


def draw_rope_pair(ax, state: dict) -> None:
    """Draw the unrotated (faint) and rotated (solid) query and key arrows on `ax`."""
    ax.clear()
    radius = 1.15 * max(math.hypot(*state["q"]), math.hypot(*state["k"]))
    circle = [(radius / 1.15 * math.cos(t / 50 * math.pi), radius / 1.15 * math.sin(t / 50 * math.pi))
              for t in range(101)]
    ax.plot(*zip(*circle), color="0.85", lw=1)
    for name, color in (("q", "tab:blue"), ("k", "tab:orange")):
        for vec, alpha, label in ((state[name], 0.25, f"{name} (no position)"),
                                  (state[f"{name}_rot"], 1.0, f"{name} at position {state[name + '_pos']}")):
            ax.annotate("", xy=vec, xytext=(0, 0),
                        arrowprops=dict(arrowstyle="-|>", color=color, alpha=alpha, lw=2))
            ax.plot([], [], color=color, alpha=alpha, lw=2, label=label)
    ax.set_xlim(-radius, radius)
    ax.set_ylim(-radius, radius)
    ax.set_aspect("equal")
    ax.set_xlabel(f"channel {state['pair']}")
    ax.set_ylabel(f"channel {state['pair']} + head_dim/2")
    ax.set_title(f"offset {state['offset']}: q·k = {state['score']:+.3f}", fontsize=10)
    ax.legend(loc="upper left", fontsize=7, framealpha=0.8)


def rope_pair_png(state: dict) -> bytes:
    """The picture of draw_rope_pair as PNG bytes (no pyplot, so nothing leaks into the notebook)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2, 4.2), dpi=80)
    draw_rope_pair(fig.add_subplot(), state)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def rope_pair_explorer(q: tuple[float, float] = (1.0, 0.4), k: tuple[float, float] = (0.7, -0.6),
                       head_dim: int = 128, theta: float = 1e6, max_position: int = 64):
    """Sliders for the query and key positions, a 'shift both' slider and the pair index.

    Move the positions apart and the score changes; slide 'shift both' and the arrows spin
    while the score stays put: RoPE scores depend only on the offset.
    """
    import ipywidgets as w

    style = {"description_width": "110px"}
    layout = w.Layout(width="480px")
    q_pos = w.IntSlider(value=5, min=0, max=max_position, description="query position", style=style, layout=layout)
    k_pos = w.IntSlider(value=2, min=0, max=max_position, description="key position", style=style, layout=layout)
    shift = w.IntSlider(value=0, min=0, max=4 * max_position, description="shift both by", style=style, layout=layout)
    pair = w.IntSlider(value=0, min=0, max=head_dim // 2 - 1, description="frequency pair", style=style, layout=layout)
    caption = w.HTML()
    picture = w.Image(format="png", layout=w.Layout(width="340px"))

    def update(_=None):
        state = rope_pair_state(q, k, q_pos.value + shift.value, k_pos.value + shift.value,
                                pair.value, head_dim, theta)
        caption.value = f"<code>{html.escape(rope_pair_caption(state))}</code>"
        picture.value = rope_pair_png(state)

    for slider in (q_pos, k_pos, shift, pair):
        slider.observe(update, names="value")
    update()
    return w.VBox([q_pos, k_pos, shift, pair, caption, picture])


# -- chapter 01: the token explorer --------------------------------------------------------
#
# explore_tokens is the pure callback (text in, HTML + summary out), tested without
# a browser; token_explorer wires it to a Textarea. The HTML is one small table per
# row of tokens (text above, id below), which stays readable where a renderer strips
# inline styles, e.g. GitHub.

TOKEN_COLOURS = ("#fde2a7", "#c9e7f5", "#d6f0c9", "#f5cde0", "#e2d6f5", "#f7d9c4")
SPECIAL_COLOUR = "#9ec5fe"
VISIBLE_WHITESPACE = {" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍"}


def show_whitespace(piece: str) -> str:
    """A token's text with space, newline, tab and CR drawn as ␣ ↵ ⇥ ␍."""
    return "".join(VISIBLE_WHITESPACE.get(c, c) for c in piece)


def token_summary(tokenizer, text: str, ids: list[int]) -> str:
    """'12 characters · 16 UTF-8 bytes · 6 tokens · 2.67 bytes per token' (text taken as NFC)."""
    import unicodedata

    text = unicodedata.normalize("NFC", text)
    n_bytes = len(text.encode("utf-8"))
    line = f"{len(text)} characters · {n_bytes} UTF-8 bytes · {len(ids)} tokens"
    return line + (f" · {n_bytes / len(ids):.2f} bytes per token" if ids else "")


def explore_tokens(tokenizer, text: str, per_row: int = 12) -> tuple[str, str]:
    """The explorer's callback: text -> (html, summary).

    html: one coloured cell per token, its text above (whitespace made visible) and
    its id below, `per_row` tokens to a table; special tokens such as <|im_start|>
    are allowed and drawn in blue. summary: see token_summary."""
    ids = tokenizer.encode(text, allowed_special="all")
    specials = set(tokenizer.special_tokens.values())
    cells = []
    for n, (i, piece) in enumerate(zip(ids, tokenizer.pieces(ids))):
        colour = SPECIAL_COLOUR if i in specials else TOKEN_COLOURS[n % len(TOKEN_COLOURS)]
        cells.append((
            f'<td style="background:{colour};white-space:pre;font-family:monospace;'
            f'padding:2px 4px;text-align:center">{html.escape(show_whitespace(piece))}</td>',
            f'<td style="color:#666;font-size:75%;padding:0 4px;text-align:center">{i}</td>',
        ))
    rows = [cells[k:k + per_row] for k in range(0, len(cells), per_row)]
    tables = "".join(
        '<table style="border-collapse:separate;border-spacing:2px;margin:2px 0">'
        f'<tr>{"".join(c[0] for c in row)}</tr><tr>{"".join(c[1] for c in row)}</tr></table>'
        for row in rows
    )
    return (tables or "<p><em>(no tokens)</em></p>"), token_summary(tokenizer, text, ids)


def token_explorer(tokenizer, text: str = "Hello, 世界! 12345 strawberry 🍓", per_row: int = 12):
    """Type text, see its tokens and ids live: an ipywidgets VBox (Textarea, summary, tokens)."""
    import ipywidgets as w

    box = w.Textarea(value=text, placeholder="Type anything…", rows=3,
                     layout=w.Layout(width="100%"), continuous_update=True)
    summary, tokens = w.HTML(), w.HTML()

    def update(_=None):
        table, line = explore_tokens(tokenizer, box.value, per_row)
        summary.value = f"<b>{html.escape(line)}</b> &nbsp; (␣ space, ↵ newline, ⇥ tab)"
        tokens.value = table

    box.observe(update, names="value")
    update()
    return w.VBox([box, summary, tokens])


# -- chapter 08: does QwQ-32B fit on my GPU? ----------------------------------------------------
#
# gpu_fit_state is the callback (GPU size and context in, the planner's verdict out),
# tested without a browser; gpu_fit_explorer wires it to two sliders.

FIT_GROUPS = (("4-bit linear weights + scales", ("linear_weights", "quant_constants"), "tab:blue"),
              ("embeddings, norms, biases (bf16)", ("embeddings", "norms_biases"), "tab:cyan"),
              ("KV cache (bf16)", ("kv_cache",), "tab:orange"),
              ("activations (prefill)", ("activations",), "tab:red"))


def gpu_fit_state(gpu_gib: float, context: int, preset: str = "qwq-32b", batch: int = 1,
                  reserve_gib: float = 1.0) -> dict:
    """Everything the explorer shows: the NF4 plan per part (GiB), fits yes/no, headroom,
    the longest context that fits, and quant.fit_report's text."""
    from qwqlearn.config import QwenConfig
    from qwqlearn.quant import fit_report, fits, max_context

    config = QwenConfig.preset(preset)
    fit = fits(config, gpu_gib, context, batch=batch, reserve_gib=reserve_gib)
    parts = fit.plan.gib()
    return {
        "gpu_gib": gpu_gib, "context": context, "preset": preset, "reserve_gib": reserve_gib,
        "fits": fit.fits, "headroom_gib": fit.headroom_gib, "total_gib": parts.pop("total"), "parts_gib": parts,
        "max_context": max_context(config, gpu_gib, batch=batch, reserve_gib=reserve_gib),
        "text": fit_report(gpu_gib, context, preset=preset, batch=batch, reserve_gib=reserve_gib),
    }


def draw_gpu_fit(ax, state: dict) -> None:
    """One stacked bar of the plan, with the GPU's size (and the reserved part) marked."""
    ax.clear()
    left = 0.0
    for label, parts, colour in FIT_GROUPS:
        width = sum(state["parts_gib"][p] for p in parts)
        ax.barh([0], [width], left=left, color=colour, label=f"{label}: {width:.1f} GiB")
        left += width
    ax.barh([0], [state["reserve_gib"]], left=left, color="0.75", hatch="//", label="CUDA context reserve")
    ax.axvline(state["gpu_gib"], color="black", lw=2)
    ax.text(state["gpu_gib"], 0.45, f" GPU {state['gpu_gib']:g} GiB", va="bottom", fontsize=9)
    verdict = "fits" if state["fits"] else "does not fit"
    ax.set_title(f"{state['preset']}, context {state['context']:,}: {verdict} "
                 f"(longest that fits: {state['max_context']:,} tokens)", fontsize=10)
    ax.set_xlim(0, max(state["gpu_gib"], left) * 1.12)
    ax.set_ylim(-0.5, 1.7)
    ax.set_yticks([])
    ax.set_xlabel("GPU memory (GiB)")
    ax.legend(loc="upper left", ncol=3, fontsize=7.5, frameon=False)


def gpu_fit_png(state: dict) -> bytes:
    """draw_gpu_fit as PNG bytes (no pyplot, so nothing leaks into the notebook)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 2.6), dpi=80)
    draw_gpu_fit(fig.add_subplot(), state)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def gpu_fit_explorer(gpu_gib: int = 24, context: int = 8192, preset: str = "qwq-32b"):
    """Sliders for the GPU's memory and the context length; shows the plan, the verdict and a bar."""
    import ipywidgets as w

    style = {"description_width": "110px"}
    layout = w.Layout(width="520px")
    gib = w.IntSlider(value=gpu_gib, min=8, max=192, step=2, description="GPU memory (GiB)",
                      style=style, layout=layout)
    ctx = w.IntSlider(value=context, min=1024, max=40960, step=1024, description="context (tokens)",
                      style=style, layout=layout)
    text = w.HTML()
    picture = w.Image(format="png", layout=w.Layout(width="600px"))

    def update(_=None):
        state = gpu_fit_state(gib.value, ctx.value, preset)
        text.value = f"<pre>{html.escape(state['text'])}</pre>"
        picture.value = gpu_fit_png(state)

    for slider in (gib, ctx):
        slider.observe(update, names="value")
    update()
    return w.VBox([gib, ctx, text, picture])
