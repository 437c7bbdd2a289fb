"""The chapter 03 RoPE explorer: its callback logic without a browser, and the slider wiring."""

import math

import pytest
import torch

from qwqlearn.rope import apply_rope, rope_cos_sin, rope_inv_freq
from qwqlearn.widgets import (
    draw_rope_pair, rope_angle, rope_pair_caption, rope_pair_explorer, rope_pair_png, rope_pair_state, rotate_2d,
)

Q, K = (1.0, 0.4), (0.7, -0.6)


def test_rope_angle_matches_the_package_frequencies():
    inv_freq = rope_inv_freq(128, 1e6).double()
    for pair in (0, 1, 31, 63):
        assert rope_angle(1, pair, 128, 1e6) == pytest.approx(inv_freq[pair].item(), rel=1e-6)
        assert rope_angle(100, pair, 128, 1e6) == pytest.approx(100 * rope_angle(1, pair, 128, 1e6))
    assert rope_angle(7, 0) == 7.0  # pair 0 turns one radian per token, whatever theta is
    with pytest.raises(ValueError, match="pair must be in 0 .. 63"):
        rope_angle(1, 64)


def test_rotate_2d_is_a_rotation():
    assert rotate_2d((1.0, 0.0), math.pi / 2) == pytest.approx((0.0, 1.0), abs=1e-15)
    v = rotate_2d(Q, 0.7)
    assert math.hypot(*v) == pytest.approx(math.hypot(*Q))  # length kept
    assert rotate_2d(v, -0.7) == pytest.approx(Q)  # and undone by the opposite turn


def test_state_agrees_with_apply_rope():
    """The explorer's pair is channels (pair, pair + head_dim/2) of the real split-half RoPE."""
    head_dim, pair, q_pos = 8, 2, 9
    x = torch.zeros(1, 1, 1, head_dim, dtype=torch.float64)
    x[..., pair], x[..., pair + head_dim // 2] = Q[0], Q[1]
    cos, sin = rope_cos_sin(torch.tensor([q_pos]), rope_inv_freq(head_dim, 1e4).double(), torch.float64)
    rotated = apply_rope(x, cos, sin)[0, 0, 0]
    state = rope_pair_state(Q, K, q_pos, 0, pair, head_dim, 1e4)
    assert (rotated[pair].item(), rotated[pair + head_dim // 2].item()) == pytest.approx(state["q_rot"], rel=1e-6)


@pytest.mark.parametrize("pair", [0, 10, 63])
def test_score_depends_only_on_the_offset(pair):
    base = rope_pair_state(Q, K, 5, 2, pair)
    for shift in (1, 17, 1000):
        moved = rope_pair_state(Q, K, 5 + shift, 2 + shift, pair)
        assert moved["offset"] == base["offset"] == 3
        assert moved["score"] == pytest.approx(base["score"], abs=1e-9)
        assert moved["q_rot"] != pytest.approx(base["q_rot"])  # the arrows did move
    assert rope_pair_state(Q, K, 4, 4, pair)["score"] == pytest.approx(base["score_unrotated"])


def test_caption_and_state_fields():
    state = rope_pair_state(Q, K, 5, 2)
    assert state["score_unrotated"] == pytest.approx(Q[0] * K[0] + Q[1] * K[1])
    assert state["wavelength"] == pytest.approx(2 * math.pi)
    text = rope_pair_caption(state)
    assert "query at 5, key at 2 → offset 3" in text
    assert f"q·k = {state['score']:+.4f}" in text and "without RoPE +0.4600" in text
    moved = rope_pair_caption(rope_pair_state(Q, K, 105, 102))
    assert moved.split("offset")[1] == text.split("offset")[1]


def test_drawing_and_png():
    from matplotlib.figure import Figure

    ax = Figure().add_subplot()
    draw_rope_pair(ax, rope_pair_state(Q, K, 5, 2))
    assert "offset 3" in ax.get_title()
    assert ax.get_xlabel() == "channel 0" and ax.get_aspect() == 1.0
    assert len(ax.get_legend().get_texts()) == 4
    png = rope_pair_png(rope_pair_state(Q, K, 5, 2))
    assert png.startswith(b"\x89PNG")


def test_explorer_updates_on_sliding():
    ui = rope_pair_explorer(Q, K, max_position=32)
    q_pos, k_pos, shift, pair, caption, picture = ui.children
    assert "offset 3" in caption.value and bytes(picture.value).startswith(b"\x89PNG")
    first_picture, first_score = bytes(picture.value), caption.value.split("q·k = ")[1]
    shift.value = 20  # both move: arrows turn, score stays
    assert "query at 25, key at 22 → offset 3" in caption.value
    assert caption.value.split("q·k = ")[1] == first_score
    assert bytes(picture.value) != first_picture
    k_pos.value = 5  # offset 0: the score is the plain dot product
    assert "offset 0" in caption.value and "q·k = +0.4600" in caption.value
    pair.value = 63
    assert caption.value.startswith("<code>pair 63 (")
    assert k_pos.max == q_pos.max == 32 and pair.max == 63
