"""Generation: greedy parity with transformers, sampling rules, limits and errors."""

import warnings

import pytest
import torch
from conftest import CONFIGS, make_hf

from qwqlearn import QwenConfig, from_hf, generate, stream
from qwqlearn.generate import process_logits

NEAR_TIE = 1e-4


def first_near_tie(model, ids: torch.Tensor, prompt_len: int) -> int | None:
    """Index of the first generated step whose top-2 logit margin is under NEAR_TIE (or None)."""
    with torch.no_grad():
        logits = model(ids)[0, prompt_len - 1:-1]       # the logits that chose each new token
    top2 = logits.topk(2, dim=-1).values
    ties = ((top2[:, 0] - top2[:, 1]) < NEAR_TIE).nonzero()
    return int(ties[0]) if len(ties) else None


def assert_same_greedy(ours_ids, ref_ids, model, prompt_len):
    """Equal token for token, except that a divergence exactly at a reported near-tie is tolerated."""
    tie = first_near_tie(model, ref_ids, prompt_len)
    if tie is not None:
        warnings.warn(f"near-tie (top-2 margin < {NEAR_TIE}) at generated step {tie}: comparing steps 0..{tie - 1}")
        end = prompt_len + tie
        assert torch.equal(ours_ids[:, :end], ref_ids[:, :end])
    else:
        assert torch.equal(ours_ids, ref_ids)
    return tie


@pytest.mark.parametrize("seed", [0, 1])
def test_greedy_matches_transformers_generate(config, seed):
    hf = make_hf(config, seed=10 + seed)
    ours = from_hf(hf)
    prompt = torch.randint(0, config.vocab_size, (1, 9), generator=torch.Generator().manual_seed(seed))
    ref_ids = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=32, do_sample=False,
                          pad_token_id=0)
    ours_ids = generate(ours, prompt, max_new_tokens=32)
    assert ours_ids.shape == (1, 9 + 32)
    assert_same_greedy(ours_ids, ref_ids, ours, 9)


def test_near_tie_is_detected_and_reported():
    """Make step 3 an exact tie: the checker must name it instead of passing or failing blindly."""
    cfg = QwenConfig(**CONFIGS["mha_tied"])
    model = from_hf(make_hf(cfg, seed=3))
    prompt = torch.tensor([[1, 2, 3, 4]])
    ids = generate(model, prompt, 8)
    assert first_near_tie(model, ids, 4) is None
    with torch.no_grad():  # duplicate the embedding row of the token chosen at step 3 into another id
        chosen = ids[0, 4 + 3].item()
        other = (chosen + 1) % cfg.vocab_size
        model.embed_tokens.weight[other] = model.embed_tokens.weight[chosen]  # tied head: equal logits
    ids = generate(model, prompt, 8)
    assert first_near_tie(model, ids, 4) == 3


def test_stream_yields_what_generate_returns():
    cfg = QwenConfig(**CONFIGS["odd"])
    model = from_hf(make_hf(cfg))
    prompt = torch.tensor([[5, 6, 7]])
    toks = [t.item() for t in stream(model, prompt, 12, temperature=0.8, top_p=0.9, seed=3)]
    assert generate(model, prompt, 12, temperature=0.8, top_p=0.9, seed=3)[0, 3:].tolist() == toks


def test_limits_and_stop_ids():
    cfg = QwenConfig(**CONFIGS["mha_tied"])  # context 128
    model = from_hf(make_hf(cfg))
    prompt = torch.tensor([[1, 2, 3]])
    for n in (0, 1, 7):
        assert generate(model, prompt, n, temperature=1.0, seed=0).shape[1] <= 3 + n
    greedy = generate(model, prompt, 10)
    stop = greedy[0, 3 + 4].item()  # the 5th generated token
    stopped = generate(model, prompt, 10, stop_ids=[stop])
    assert stopped[0, -1].item() == stop and stopped.shape[1] <= 3 + 5
    # the context ends generation early rather than overflowing
    assert generate(model, torch.ones(1, 125, dtype=torch.long), 50).shape[1] == 128


def test_batch_rows_are_independent():
    cfg = QwenConfig(**CONFIGS["gqa5_untied"])
    model = from_hf(make_hf(cfg))
    prompts = torch.randint(0, cfg.vocab_size, (3, 6), generator=torch.Generator().manual_seed(4))
    batched = generate(model, prompts, 10)
    for row in range(3):
        assert torch.equal(batched[row:row + 1], generate(model, prompts[row:row + 1], 10))


def test_bad_prompts_raise_clear_errors():
    model = from_hf(make_hf(QwenConfig(**CONFIGS["mha_tied"])))
    with pytest.raises(ValueError, match="128 tokens, but the context holds 128"):
        generate(model, torch.ones(1, 128, dtype=torch.long), 4)
    with pytest.raises(ValueError, match="token id 256 is outside the vocabulary"):
        generate(model, torch.tensor([[1, 256]]), 4)
    with pytest.raises(ValueError, match=r"\[batch, seq\]"):
        generate(model, torch.tensor([1, 2]), 4)
    with pytest.raises(ValueError, match="empty"):
        generate(model, torch.zeros(1, 0, dtype=torch.long), 4)


def test_sampling_filters():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]])
    none = torch.zeros_like(logits, dtype=torch.bool)
    kept = lambda out: torch.isfinite(out[0]).nonzero().flatten().tolist()  # noqa: E731
    assert kept(process_logits(logits, none, none, top_k=2)) == [0, 1]
    p = logits.softmax(-1)[0]  # 0.64, 0.24, 0.09, ...
    assert kept(process_logits(logits, none, none, top_p=float(p[0]) + 0.01)) == [0, 1]
    assert kept(process_logits(logits, none, none, top_p=float(p[0]) - 0.01)) == [0]
    assert kept(process_logits(logits, none, none, min_p=0.2)) == [0, 1]  # p >= 0.2 * 0.64
    seen = torch.tensor([[True, False, False, False, False]])
    out = process_logits(logits, seen, seen, repetition_penalty=2.0)
    assert out[0, 0].item() == 2.0 and out[0, 1].item() == 3.0
    out = process_logits(logits, seen, seen, presence_penalty=1.5)
    assert out[0, 0].item() == 2.5


def test_seeded_sampling_is_reproducible():
    model = from_hf(make_hf(QwenConfig(**CONFIGS["odd"])))
    prompt = torch.tensor([[1, 2]])
    a = generate(model, prompt, 16, temperature=1.0, seed=7)
    assert torch.equal(a, generate(model, prompt, 16, temperature=1.0, seed=7))
    assert not torch.equal(a, generate(model, prompt, 16, temperature=1.0, seed=8))
