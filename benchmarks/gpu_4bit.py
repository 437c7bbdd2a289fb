"""QwQ-32B in 4 bits on one GPU: qwqlearn's NF4Linear vs transformers + bitsandbytes.

    python benchmarks/gpu_4bit.py                  # QwQ-32B shape, 1K-token prompt, 64 new tokens
    python benchmarks/gpu_4bit.py --layers 16      # a shallower model for a smaller GPU

Needs CUDA; without it the script says so and exits 0. Weights are random and
are created directly in NF4 on the GPU, one linear layer at a time (packed
bytes + block scales, double-quantised), so host memory stays small and no
64 GB bf16 checkpoint is needed. Random bytes decode as fast as trained ones.

  qwqlearn      qwqlearn.model.QwenForCausalLM with NF4Linear layers
                (dequantise to bf16, then one matmul), static KV cache,
                greedy decoding through qwqlearn.generate.stream;
  transformers  Qwen2ForCausalLM with bitsandbytes Linear4bit layers, set up
                by transformers' own replace_with_bnb_linear from the
                BitsAndBytesConfig below, static cache, model.generate.

Printed per model: VRAM after loading and at peak (with the planner's
prediction), prefill time, decode tokens/s, the ratio to transformers, and the
HBM ceiling: bytes read per decoded token (all linear weights, lm_head, KV
cache) divided by the copy bandwidth measured in the same run.
"""

import argparse
import os
import sys
import time
from dataclasses import replace

import torch
from torch import nn

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from qwqlearn.config import QwenConfig  # noqa: E402
from qwqlearn.quant import (  # noqa: E402
    GIB, NF4Linear, dynamic_code, import_bitsandbytes, measure_memory, nf4_code, plan_memory, quantize_absmax,
)

BLOCKSIZE = 64
DTYPE = torch.bfloat16


def bnb_config():
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=DTYPE)


# -- random NF4 weights, straight on the GPU -------------------------------------------
def random_nf4(out_features, in_features, gen, device):
    """packed [out*in/2] uint8 and absmax [blocks] float32, as if quantised from N(0, 0.02^2) weights."""
    n = out_features * in_features
    packed = torch.randint(0, 256, (n // 2,), dtype=torch.uint8, generator=gen, device=device)
    absmax = 0.02 * (2.5 + 0.5 * torch.rand(n // BLOCKSIZE, generator=gen, device=device))
    return packed, absmax


def random_nf4_linear(linear, gen, device):
    layer = NF4Linear(linear.in_features, linear.out_features, linear.bias is not None, BLOCKSIZE,
                      double_quant=True, compute_dtype=DTYPE, device=device)
    layer.set_weight(*random_nf4(linear.out_features, linear.in_features, gen, device))
    if layer.bias is not None:
        layer.bias = nn.Parameter(torch.zeros(linear.out_features, dtype=DTYPE, device=device), requires_grad=False)
    return layer


def fill_random_linear4bit(layer, gen, device):
    """Give a meta bnb Linear4bit random packed bytes and a double-quantised QuantState."""
    bnb = import_bitsandbytes()
    QuantState = bnb.functional.QuantState
    packed, absmax = random_nf4(layer.out_features, layer.in_features, gen, device)
    q, absmax2, offset = quantize_absmax(absmax)
    state2 = QuantState(absmax=absmax2, code=dynamic_code(device), blocksize=256, dtype=torch.float32)
    state = QuantState(absmax=q, shape=torch.Size([layer.out_features, layer.in_features]), code=nf4_code(device),
                       blocksize=BLOCKSIZE, quant_type="nf4", dtype=DTYPE, offset=offset, state2=state2)
    layer.weight = bnb.nn.Params4bit(packed.view(-1, 1), requires_grad=False, quant_state=state,
                                     blocksize=BLOCKSIZE, compress_statistics=True, quant_type="nf4",
                                     module=layer, bnb_quantized=True)
    layer.quant_state = state
    if layer.bias is not None:
        layer.bias = nn.Parameter(torch.zeros(layer.out_features, dtype=DTYPE, device=device), requires_grad=False)


def materialize_(model, gen, device):
    """Every parameter still on meta gets real values: matrices N(0, 0.02^2), norms 1, biases 0."""
    for module in model.modules():
        for name, p in list(module.named_parameters(recurse=False)):
            if p.is_meta:
                value = (torch.randn(p.shape, generator=gen, device=device, dtype=DTYPE) * 0.02 if p.ndim == 2
                         else torch.full(p.shape, 0.0 if name == "bias" else 1.0, dtype=DTYPE, device=device))
                setattr(module, name, nn.Parameter(value, requires_grad=False))


def linear_children(model, skip="lm_head"):
    return [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
            if type(child) is nn.Linear and name != skip]


# -- the two models ----------------------------------------------------------------------
def build_ours(config, seed, device):
    # === qwqlearn side: QwenForCausalLM with NF4Linear, built layer by layer ===
    from qwqlearn.model import QwenForCausalLM

    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.device("meta"):
        model = QwenForCausalLM(config)
    for parent, name, linear in linear_children(model):
        setattr(parent, name, random_nf4_linear(linear, gen, device))
    materialize_(model, gen, device)
    return model.eval()


def build_hf(config, seed, device):
    from transformers import Qwen2ForCausalLM
    from transformers.integrations.bitsandbytes import replace_with_bnb_linear
    from transformers.models.qwen2.modeling_qwen2 import Qwen2RotaryEmbedding

    gen = torch.Generator(device=device).manual_seed(seed)
    hf_config = config.to_hf()
    hf_config.quantization_config = bnb_config()
    with torch.device("meta"):
        hf = Qwen2ForCausalLM(hf_config)
    hf = replace_with_bnb_linear(hf, modules_to_not_convert=["lm_head"],
                                 quantization_config=hf_config.quantization_config, pre_quantized=True)
    bnb = import_bitsandbytes()
    for module in hf.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            fill_random_linear4bit(module, gen, device)
    materialize_(hf, gen, device)
    with torch.device(device):
        hf.model.rotary_emb = Qwen2RotaryEmbedding(hf_config)  # its buffers were on meta
    return hf.eval()


# -- timing ------------------------------------------------------------------------------
def copy_bandwidth(device, gib=2.0, reps=20) -> float:
    """Bytes/s moved by a device-to-device copy (each byte read once and written once)."""
    src = torch.empty(int(gib * GIB), dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        dst.copy_(src)
    torch.cuda.synchronize()
    return 2 * src.nbytes * reps / (time.perf_counter() - t)


def time_ours(model, prompt, new):
    # === qwqlearn side: prefill = first token out of stream(); decode = the rest ===
    from qwqlearn.generate import stream

    torch.cuda.synchronize()
    t0 = time.perf_counter()
    tokens = stream(model, prompt, new)
    next(tokens)
    torch.cuda.synchronize()
    t1 = time.perf_counter()
    rest = sum(1 for _ in tokens)
    torch.cuda.synchronize()
    return t1 - t0, rest / (time.perf_counter() - t1)


def time_hf(hf, prompt, new):
    # eager, like ours: no auto-compile of the static-cache decode step
    kw = dict(do_sample=False, pad_token_id=0, attention_mask=torch.ones_like(prompt),
              cache_implementation="static", disable_compile=True)
    with torch.inference_mode():
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        hf.generate(prompt, max_new_tokens=1, **kw)
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        hf.generate(prompt, max_new_tokens=new, min_new_tokens=new, **kw)
        torch.cuda.synchronize()
        t2 = time.perf_counter()
    prefill = t1 - t0
    return prefill, (new - 1) / (t2 - t1 - prefill)


def bytes_per_token(model, config, context) -> int:
    """Decode reads every linear weight, the lm_head and the whole KV cache once per token."""
    sizes = measure_memory(model)
    lm_head = config.vocab_size * config.hidden_size * 2
    return sizes["linear_weights"] + sizes["quant_constants"] + lm_head + context * config.kv_cache_bytes_per_token()


def run(name, build, timer, config, args, device, bandwidth):
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    model = build(config, args.seed, device)
    loaded = torch.cuda.memory_allocated()
    prompt = torch.randint(0, config.vocab_size, (1, args.prompt), device=device)
    timer(model, prompt[:, :16], 4)  # warm-up: kernels, allocator
    prefill, tps = timer(model, prompt, args.new)
    peak = torch.cuda.max_memory_allocated()
    ceiling = bandwidth / bytes_per_token(model, config, args.prompt + args.new)
    del model
    return dict(name=name, loaded=loaded / GIB, peak=peak / GIB, prefill=prefill, tps=tps, ceiling=ceiling)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=None, help="decoder layers (default: QwQ-32B's 64)")
    ap.add_argument("--prompt", type=int, default=1024, help="prompt tokens (the context decode runs at)")
    ap.add_argument("--new", type=int, default=64, help="tokens to generate")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("skipped: benchmarks/gpu_4bit.py needs a CUDA GPU (torch.cuda.is_available() is False)")
        return 0
    import_bitsandbytes()  # a clear message if it is missing
    config = QwenConfig.preset("qwq-32b")
    if args.layers:
        config = replace(config, num_hidden_layers=args.layers, name=f"QwQ-32B shape, {args.layers} layers")
    device = torch.device("cuda")
    bandwidth = copy_bandwidth(device)
    plan = plan_memory(config, bits=4, context=args.prompt + args.new)
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}; {config.name}, random NF4 weights "
          f"(blocksize {BLOCKSIZE}, double quant, bf16 compute); prompt {args.prompt}, {args.new} new tokens, greedy")
    print(f"copy bandwidth {bandwidth / 1e12:.2f} TB/s; planner: {plan.weights / GIB:.2f} GiB weights, "
          f"{plan.total / GIB:.2f} GiB total at this context")
    results = [run("transformers+bnb", build_hf, time_hf, config, args, device, bandwidth),
               run("qwqlearn NF4Linear", build_ours, time_ours, config, args, device, bandwidth)]
    base = results[0]["tps"]
    print(f"{'impl':<19} {'VRAM loaded':>11} {'VRAM peak':>10} {'prefill s':>9} {'decode tok/s':>12} "
          f"{'vs HF':>6} {'ceiling tok/s':>13} {'of ceiling':>10}")
    for r in results:
        print(f"{r['name']:<19} {r['loaded']:>7.2f} GiB {r['peak']:>6.2f} GiB {r['prefill']:>9.3f} {r['tps']:>12.2f} "
              f"{r['tps'] / base:>5.2f}x {r['ceiling']:>13.1f} {r['tps'] / r['ceiling']:>9.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
