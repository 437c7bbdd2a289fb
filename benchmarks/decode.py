"""Greedy decoding speed: qwqlearn vs transformers, same weights, same machine, one run.

    python benchmarks/decode.py                    # Qwen2.5-0.5B shape, bf16 and fp32
    python benchmarks/decode.py --dtypes float32 --new 64

For each dtype: a random-weight model with Qwen2.5-0.5B's shape, a 128-token
prompt and 128 new tokens (greedy). It prints prefill time, decode tokens/s, the
ratio ours/transformers, and the memory-bandwidth ceiling: weight bytes read per
token divided by the read bandwidth of one large GEMV measured in the same run.
"""

import argparse
import os
import time

import torch

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def gemv_bandwidth(dtype, rows=8192, cols=8192, reps=30) -> float:
    """Bytes/s read by y = W @ x for one large W (the decode step's dominant operation)."""
    w, x = torch.randn(rows, cols).to(dtype), torch.randn(cols, 1).to(dtype)
    for _ in range(5):
        w @ x
    t = time.perf_counter()
    for _ in range(reps):
        w @ x
    return w.nbytes * reps / (time.perf_counter() - t)


def timed_prefill_and_decode(step_prefill, step_decode, new_tokens):
    t0 = time.perf_counter()
    state = step_prefill()
    t1 = time.perf_counter()
    step_decode(state, new_tokens)
    t2 = time.perf_counter()
    return t1 - t0, (new_tokens - 1) / (t2 - t1)


def bench_ours(model, prompt, new):
    from qwqlearn.generate import stream

    def prefill():
        it = stream(model, prompt, new)
        next(it)  # the first token comes out of the prefill
        return it

    def decode(it, _):
        n = sum(1 for _ in it)
        assert n == new - 1

    return timed_prefill_and_decode(prefill, decode, new)


def bench_hf(hf, prompt, new):
    from transformers import DynamicCache

    mask = torch.ones_like(prompt)
    kw = dict(do_sample=False, pad_token_id=0, attention_mask=mask)

    def prefill():
        cache = DynamicCache(config=hf.config)
        with torch.inference_mode():
            out = hf.generate(prompt, max_new_tokens=1, past_key_values=cache, **kw)
        return out, cache

    def decode(state, n):
        out, cache = state
        with torch.inference_mode():
            res = hf.generate(out, max_new_tokens=n - 1, past_key_values=cache, min_new_tokens=n - 1,
                              attention_mask=torch.ones_like(out), do_sample=False, pad_token_id=0)
        assert res.shape[1] == prompt.shape[1] + n

    return timed_prefill_and_decode(prefill, decode, new)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dtypes", default="bfloat16,float32")
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile on our model")
    args = ap.parse_args()

    from transformers import Qwen2ForCausalLM

    from qwqlearn import QwenConfig, from_hf

    torch.manual_seed(0)
    cfg = QwenConfig.preset("qwen2.5-0.5b")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; model: Qwen2.5-0.5B shape, random weights; "
          f"prompt {args.prompt}, {args.new} new tokens, greedy")
    print(f"{'dtype':<9} {'impl':<13} {'prefill s':>9} {'decode tok/s':>13} {'vs HF':>6} {'ceiling tok/s':>14} {'of ceiling':>10}")
    for name in args.dtypes.split(","):
        dtype = getattr(torch, name)
        hf = Qwen2ForCausalLM(cfg.to_hf()).to(dtype).eval()
        ours = from_hf(hf)
        prompt = torch.randint(0, cfg.vocab_size, (1, args.prompt))
        # per token every weight is read once; the tied embedding is read as lm_head
        weight_bytes = sum(p.nbytes for p in ours.parameters())
        bw = gemv_bandwidth(dtype)
        ceiling = bw / weight_bytes
        results = {}
        for impl, fn, model in (("transformers", bench_hf, hf), ("qwqlearn", bench_ours, ours)):
            fn(model, prompt[:, :8], 4)  # warm-up
            results[impl] = fn(model, prompt, args.new)
        if args.compile:
            compiled = torch.compile(ours)
            compiled.config, compiled.new_cache = ours.config, ours.new_cache
            bench_ours(compiled, prompt[:, :8], 4)
            results["qwqlearn+compile"] = bench_ours(compiled, prompt, args.new)
        for impl, (prefill, tps) in results.items():
            print(f"{name:<9} {impl:<13} {prefill:>9.3f} {tps:>13.2f} {tps / results['transformers'][1]:>5.2f}x "
                  f"{ceiling:>14.2f} {tps / ceiling:>9.0%}")
        print(f"{'':<9} (GEMV read bandwidth {bw / 1e9:.1f} GB/s; {weight_bytes / 1e9:.2f} GB of weights per token)")
        del hf, ours


if __name__ == "__main__":
    main()
