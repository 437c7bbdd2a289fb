"""Greedy decoding speed: qwqlearn vs transformers, same weights, same machine, one run.

    python benchmarks/decode.py                    # Qwen2.5-0.5B shape, bf16 and fp32
    python benchmarks/decode.py --dtypes float32 --new 64

For each dtype: a random-weight model with Qwen2.5-0.5B's shape, a 128-token
prompt and 128 new tokens (greedy). It prints prefill time, decode tokens/s, the
ratio ours/transformers, and the memory-bandwidth ceiling: weight bytes read per
token divided by the read bandwidth of one large GEMV (the model's lm_head shape,
its fastest layout and kernel) measured in the same run.
Each implementation runs --rounds times, interleaved; the best round is reported.
"""

import argparse
import os
import time

import torch

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def gemv_bandwidth(dtype, rows, cols, reps=10) -> float:
    """Bytes/s read by y = x @ W.T for one large W (the decode step's dominant operation):
    the fastest of W row- or column-major, through oneDNN or PyTorch's own kernel, since
    qwqlearn picks among those (a ceiling must not be one of the slower paths)."""
    from qwqlearn.model import onednn_enabled

    x = torch.randn(1, cols).to(dtype)
    w = torch.randn(rows, cols).to(dtype)
    best = 0.0
    for weight in (w, w.t().contiguous().t()):
        for onednn in (True, False):
            with onednn_enabled(onednn):
                for _ in range(5):
                    torch.nn.functional.linear(x, weight)
                t = time.perf_counter()
                for _ in range(reps):
                    torch.nn.functional.linear(x, weight)
                best = max(best, w.nbytes * reps / (time.perf_counter() - t))
    return best


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
            out = hf.generate(prompt, max_new_tokens=1, cache=cache, **kw)
        return out, cache

    def decode(state, n):
        out, cache = state
        with torch.inference_mode():
            res = hf.generate(out, max_new_tokens=n - 1, cache=cache, min_new_tokens=n - 1,
                              attention_mask=torch.ones_like(out), do_sample=False, pad_token_id=0)
        assert res.shape[1] == prompt.shape[1] + n

    return timed_prefill_and_decode(prefill, decode, new)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dtypes", default="bfloat16,float32")
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile on our model")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds; the best of each is reported")
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
        impls = [("transformers", bench_hf, hf), ("qwqlearn", bench_ours, ours)]
        if args.compile:
            compiled = torch.compile(ours)
            compiled.config, compiled.new_cache = ours.config, ours.new_cache
            impls.append(("qwqlearn+compile", bench_ours, compiled))
        for _, fn, model in impls:
            fn(model, prompt[:, :8], 4)  # warm-up (and, for compile, the first compilation)
        # Rounds interleave the implementations and the reference GEMV, so that a busy
        # spell on a shared machine hits all of them; the best round of each is what
        # the machine can do. The reference is the model's largest matrix, lm_head
        # [151936, 896]: far larger than any cache, it measures memory bandwidth.
        rounds, bw = {impl: [] for impl, _, _ in impls}, 0.0
        for _ in range(args.rounds):
            bw = max(bw, gemv_bandwidth(dtype, cfg.vocab_size, cfg.hidden_size))
            for impl, fn, model in impls:
                rounds[impl].append(fn(model, prompt, args.new))
        results = {impl: (min(p for p, _ in r), max(t for _, t in r)) for impl, r in rounds.items()}
        ceiling = bw / weight_bytes
        for impl, (prefill, tps) in results.items():
            print(f"{name:<9} {impl:<13} {prefill:>9.3f} {tps:>13.2f} {tps / results['transformers'][1]:>5.2f}x "
                  f"{ceiling:>14.2f} {tps / ceiling:>9.0%}")
        print(f"{'':<9} (GEMV read bandwidth {bw / 1e9:.1f} GB/s; {weight_bytes / 1e9:.2f} GB of weights per token)")
        del hf, ours


if __name__ == "__main__":
    main()
