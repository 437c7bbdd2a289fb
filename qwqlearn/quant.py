"""NF4 4-bit weights from scratch, bit-exact with bitsandbytes, and a memory planner.

QLoRA's NormalFloat-4 stores each weight as a 4-bit index into a 16-value code
book whose values are quantiles of a standard normal distribution, scaled per
block of `blocksize` weights by that block's absolute maximum ("absmax").
Double quantisation then stores those absmax scales themselves in 8 bits.

    >>> import torch
    >>> from qwqlearn.quant import quantize_nf4, dequantize_nf4, NF4Linear
    >>> w = torch.randn(128, 64)
    >>> packed, absmax = quantize_nf4(w, blocksize=64)     # [4096] uint8, [128] float32
    >>> w_hat = dequantize_nf4(packed, absmax, w.shape, blocksize=64)
    >>> layer = NF4Linear.from_linear(torch.nn.Linear(64, 128))
    >>> layer(torch.randn(2, 64)).shape
    torch.Size([2, 128])

and for a whole model, and for the GPU you are about to buy:

    >>> from qwqlearn.quant import quantize_model, plan_memory, fit_report
    >>> quantize_model(model, backend="qwqlearn")   # any nn.Module, in place; or backend="bitsandbytes"
    >>> print(plan_memory(QwenConfig.preset("qwq-32b"), context=8192))   # a table, part by part
    >>> print(fit_report(gpu_gib=24, context=8192))  # fits? headroom? longest context that fits?

Every quantise/dequantise function here gives the same bytes as bitsandbytes
(tests/test_quant.py checks it on CPU). Where bitsandbytes' own kernels
disagree with each other, the function's docstring says which one we follow.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from qwqlearn.config import QwenConfig

GIB = 1024**3
VALID_BLOCKSIZES = (32, 64, 128, 256, 512, 1024, 2048, 4096)  # what bitsandbytes accepts
ABSMAX_BLOCKSIZE = 256  # bitsandbytes quantises the absmax scales in blocks of 256
_LUT_SIZE = 65536  # bins of bitsandbytes' CPU nearest-code lookup table
_SLICE_BYTES = 2**23  # dequantise 16M weights at a time (a multiple of every block size / 2)

# bitsandbytes' CPU backend logs a warning at import when the optional `kernels`
# package is missing; its plain CPU path works without it. Raising that logger's
# level here (without importing bitsandbytes) keeps notebooks quiet, including
# when transformers is the one that imports bitsandbytes.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


# -- code books ---------------------------------------------------------------
def nf4_code(device: torch.device | str = "cpu") -> torch.Tensor:
    """The 16 NF4 values, sorted, in [-1, 1]: [16] float32.

    Quantiles of N(0, 1): evenly spaced probabilities from `offset` towards
    0.5 give 8 positive values and (mirrored) 7 negative ones; with an exact 0
    that makes 16, scaled so that the largest is 1. Each of the 16 bins then
    holds about the same share of normally distributed weights. `offset` =
    0.9677083 is QLoRA's choice (bitsandbytes' `create_normal_map`).
    Cached per device (shared: do not modify it in place).
    """
    return _on_device(_nf4_code_cpu, torch.device(device))


@lru_cache(maxsize=None)
def _nf4_code_cpu(offset: float = 0.9677083) -> torch.Tensor:
    # float32 probabilities, float64 inverse CDF, float32 values: the same
    # roundings as bitsandbytes (torch.linspace -> scipy.norm.ppf -> torch.Tensor).
    positive = torch.special.ndtri(torch.linspace(offset, 0.5, 9)[:-1].double())
    negative = -torch.special.ndtri(torch.linspace(offset, 0.5, 8)[:-1].double())
    values = torch.cat([positive, torch.zeros(1, dtype=torch.float64), negative]).float()
    values = values.sort().values
    return values / values.max()


def dynamic_code(device: torch.device | str = "cpu") -> torch.Tensor:
    """bitsandbytes' signed 8-bit "dynamic" code (`create_dynamic_map()`): [256] float32.

    A tiny float format: for exponent e = 0..6 the values 10**(e-6) * m, where
    the 2**e mantissas m are midpoints of an even grid on [0.1, 1]; both signs,
    plus 0 and 1. Dense near zero, so it suits numbers of any magnitude.
    Cached per device (shared: do not modify it in place).
    """
    return _on_device(_dynamic_code_cpu, torch.device(device))


@lru_cache(maxsize=None)
def _on_device(make, device: torch.device) -> torch.Tensor:
    # one copy per device: a forward pass must not copy the code book from the host every call
    return make().to(device)


@lru_cache(maxsize=None)
def _dynamic_code_cpu() -> torch.Tensor:
    data = [0.0, 1.0]
    for e in range(7):
        edges = torch.linspace(0.1, 1, 2**e + 1, dtype=torch.float32)
        means = (edges[:-1] + edges[1:]) / 2.0
        # scale the float32 tensor (not Python floats): bnb's rounding, bit for bit
        data += (10 ** (e - 6) * means).tolist() + (-(10 ** (e - 6)) * means).tolist()
    return torch.tensor(sorted(data), dtype=torch.float32)


# -- blocks -------------------------------------------------------------------
def _check_blocksize(blocksize: int) -> None:
    if blocksize not in VALID_BLOCKSIZES:
        raise ValueError(f"blocksize {blocksize} is not supported; bitsandbytes allows {VALID_BLOCKSIZES}")


def _to_blocks(flat: torch.Tensor, blocksize: int) -> torch.Tensor:
    """flat: [n] -> [ceil(n / blocksize), blocksize], the ragged last block zero-padded.

    Zeros change no block's absolute maximum, so padding is harmless; this is
    how a size that is not a multiple of the block size is handled (as bnb does).
    """
    return F.pad(flat, (0, -flat.numel() % blocksize)).view(-1, blocksize)


def _num_blocks(numel: int, blocksize: int) -> int:
    return -(-numel // blocksize)


# -- NF4: 4-bit blockwise quantisation ------------------------------------------
def quantize_nf4(w: torch.Tensor, blocksize: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Blockwise NF4: w [any shape] float -> (packed [ceil(n/2)] uint8, absmax [ceil(n/blocksize)] float32).

    Blocks run over the flattened tensor (row-major). Each value is divided by
    its block's absmax and replaced by the index of the nearest NF4 value; two
    indices share a byte, the first element in the high nibble.

    Nearest = "which midpoint between neighbouring codes lies below me", a
    bucketize against the 15 midpoints. `right=False` sends a value exactly on
    a midpoint to the lower code, like the strict `x > pivot` decision tree of
    bitsandbytes' CUDA kernel (its pivots are these float32 midpoints).
    Bytes equal `bitsandbytes.functional.quantize_4bit(w, blocksize,
    quant_type="nf4", compress_statistics=False)` (flatten bnb's [n/2, 1]).
    """
    _check_blocksize(blocksize)
    flat = w.detach().reshape(-1).float()
    blocks = _to_blocks(flat, blocksize)  # [blocks, blocksize]
    absmax = blocks.abs().amax(dim=1)  # [blocks]
    scaled = blocks * (1.0 / absmax.clamp(min=1e-38))[:, None]  # an all-zero block stays 0
    _rescale_ragged_tail(flat, blocksize, absmax, scaled)
    # An odd count gets one padding value 0 (code 7) in the last low nibble, as in bnb.
    scaled = scaled.reshape(-1)[: flat.numel() + flat.numel() % 2]
    idx = torch.bucketize(scaled, _nf4_midpoints(scaled.device), out_int32=True, right=False).to(torch.uint8)
    return (idx[0::2] << 4) | idx[1::2], absmax


def _nf4_midpoints(device: torch.device) -> torch.Tensor:
    code = nf4_code(device)
    return (code[:-1] + code[1:]) / 2  # [15]


def _rescale_ragged_tail(flat, blocksize, absmax, scaled) -> None:
    """In place: bitsandbytes' CPU path treats the ragged last block differently.

    It divides by the absmax (full blocks multiply by its reciprocal; the two
    can differ in the last bit) and stores the absmax clamped to >= 1e-38.
    Reproducing both keeps our bytes identical for every shape.
    """
    rem = flat.numel() % blocksize
    if rem:
        absmax[-1] = absmax[-1].clamp(min=1e-38)
        scaled[-1, :rem] = flat[-rem:] / absmax[-1]


def dequantize_nf4(
    packed: torch.Tensor,
    absmax: torch.Tensor,
    shape: torch.Size | tuple[int, ...],
    blocksize: int = 64,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """packed [ceil(n/2)] uint8, absmax [blocks] float32 -> weights [shape] in `dtype`.

    code[index] * absmax in float32, rounded once to `dtype` at the end,
    exactly as bitsandbytes' `dequantize_4bit`, with blocks running over the
    flat tensor as in its CUDA and pure-PyTorch kernels. (Its C++ CPU kernel
    in 0.50 assumes whole blocks per row and mis-scales when a block spans two
    rows, e.g. a [64, 64] weight at blocksize 128.) Works through the weight in
    slices of 16M values: the int64 indices and float32 products of a whole
    QwQ-32B gate_up_proj would take 3.4 GB, a slice takes 200 MB, so the
    only large temporary is the result itself.
    """
    _check_blocksize(blocksize)
    n = math.prod(shape)
    code, absmax, flat = nf4_code(packed.device), absmax.float(), packed.reshape(-1)
    out = torch.empty(_num_blocks(n, blocksize) * blocksize, dtype=dtype, device=packed.device)
    for start in range(0, flat.numel(), _SLICE_BYTES):  # slice edges fall on block edges
        chunk = flat[start:start + _SLICE_BYTES]
        idx = torch.stack([chunk >> 4, chunk & 0x0F], dim=-1).reshape(-1)  # high nibble first
        first_block = 2 * start // blocksize
        blocks = _to_blocks(code[idx.long()], blocksize)  # [blocks in slice, blocksize]
        scaled = blocks * absmax[first_block:first_block + len(blocks), None]
        out[2 * start:2 * start + scaled.numel()] = scaled.reshape(-1)
    return out[:n].view(shape)


# -- 8-bit blockwise quantisation (for double quantisation) ---------------------
def quantize_blockwise_8bit(
    x: torch.Tensor, code: torch.Tensor, blocksize: int = ABSMAX_BLOCKSIZE
) -> tuple[torch.Tensor, torch.Tensor]:
    """x [any shape] float -> (indices [n] uint8 into the 256-value `code`, absmax [blocks] float32).

    Same idea as NF4 with a 256-entry code book. The nearest code is found the
    way bitsandbytes' CPU kernel does it: [-1, 1] is cut into 65536 equal bins,
    each bin remembers the code nearest to its centre, and a value looks up
    its bin. That is the nearest code except within ~1.5e-5 (half a bin) of a
    midpoint; bnb's CUDA kernel searches the code book itself, so there it can
    choose the neighbouring code. We follow the CPU kernel, so tests can be
    bit-exact; a CUDA-quantised model may differ in a few scales by one step.
    """
    flat = x.detach().reshape(-1).float()
    blocks = _to_blocks(flat, blocksize)
    absmax = blocks.abs().amax(dim=1)
    inv = 1.0 / torch.where(absmax == 0, torch.ones_like(absmax), absmax)
    normed = (blocks * inv[:, None]).clamp(-1.0, 1.0)
    # ((v + 1) / 2) * 65535 + 0.5, truncated: the float32 operation order of bnb's kernel.
    bins = (((normed + 1.0) * 0.5) * (_LUT_SIZE - 1) + 0.5).to(torch.int64)
    idx = _nearest_code_table(code)[bins]
    idx[absmax == 0] = 0  # bnb writes index 0 for an all-zero block
    return idx.reshape(-1)[: flat.numel()].to(torch.uint8), absmax


def _nearest_code_table(code: torch.Tensor) -> torch.Tensor:
    """[65536] int64: for bin i (value -1 + 2i/65535) the index of the nearest code."""
    midpoints = 0.5 * (code[:-1] + code[1:])
    centres = -1.0 + (2.0 * torch.arange(_LUT_SIZE, dtype=torch.float32, device=code.device)) / (_LUT_SIZE - 1)
    return torch.searchsorted(midpoints, centres, right=False)  # midpoints strictly below


def dequantize_blockwise_8bit(
    idx: torch.Tensor, absmax: torch.Tensor, code: torch.Tensor, blocksize: int = ABSMAX_BLOCKSIZE
) -> torch.Tensor:
    """idx [n] uint8, absmax [blocks] float32 -> [n] float32: code[idx] * absmax."""
    values = code[idx.reshape(-1).long()]
    return (_to_blocks(values, blocksize) * absmax[:, None]).reshape(-1)[: idx.numel()]


def quantize_absmax(absmax: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Double quantisation of the block scales: absmax [blocks] float32 ->
    (q [blocks] uint8, absmax2 [ceil(blocks / 256)] float32, offset [] float32).

    Absmax values are all positive and similar, so subtracting their mean first
    centres them on 0, where the signed dynamic code is densest. Cost: 1 byte
    per block instead of 4, i.e. 0.127 bits/weight instead of 0.5 at blocksize 64.
    Same bytes as `quantize_4bit(..., compress_statistics=True)` on CPU.
    """
    offset = absmax.mean()
    q, absmax2 = quantize_blockwise_8bit(absmax - offset, dynamic_code(absmax.device), ABSMAX_BLOCKSIZE)
    return q, absmax2, offset


def dequantize_absmax(q: torch.Tensor, absmax2: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """(q [blocks] uint8, absmax2, offset) -> absmax [blocks] float32."""
    return dequantize_blockwise_8bit(q, absmax2, dynamic_code(q.device), ABSMAX_BLOCKSIZE) + offset


# -- the layer ------------------------------------------------------------------
class NF4Linear(nn.Module):
    """Drop-in for nn.Linear with NF4 weights: x [..., in] -> [..., out].

    Forward dequantises the whole weight to `compute_dtype` and runs one
    ordinary matmul: simple, any device, and what bitsandbytes itself does for
    prefill. (Fused 4-bit kernels that never materialise the weight win at
    decode; see benchmarks/gpu_4bit.py.) The output comes back in x's dtype.

    Buffers: weight_packed [ceil(out*in/2)] uint8, then either
    absmax [blocks] float32, or with double quantisation
    absmax_q [blocks] uint8 + absmax2 [ceil(blocks/256)] float32 + absmax_offset [] float32.
    The code books are shared constants, not stored per layer.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, blocksize: int = 64,
                 double_quant: bool = True, compute_dtype: torch.dtype = torch.bfloat16, device=None):
        super().__init__()
        _check_blocksize(blocksize)
        self.in_features, self.out_features = in_features, out_features
        self.blocksize, self.double_quant, self.compute_dtype = blocksize, double_quant, compute_dtype
        n = in_features * out_features
        blocks = _num_blocks(n, blocksize)
        self.register_buffer("weight_packed", torch.zeros((n + 1) // 2, dtype=torch.uint8, device=device))
        if double_quant:
            self.register_buffer("absmax_q", torch.zeros(blocks, dtype=torch.uint8, device=device))
            self.register_buffer("absmax2", torch.zeros(_num_blocks(blocks, ABSMAX_BLOCKSIZE), device=device))
            self.register_buffer("absmax_offset", torch.zeros((), device=device))
        else:
            self.register_buffer("absmax", torch.zeros(blocks, device=device))
        self.bias = nn.Parameter(torch.zeros(out_features, device=device), requires_grad=False) if bias else None

    @classmethod
    def from_linear(cls, linear: nn.Linear, blocksize: int = 64, double_quant: bool = True,
                    compute_dtype: torch.dtype = torch.bfloat16) -> "NF4Linear":
        """Quantise an nn.Linear on the device its weight lives on; the bias is kept as is."""
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, blocksize,
                    double_quant, compute_dtype, device="meta")  # buffers are replaced just below
        layer.set_weight(*quantize_nf4(linear.weight, blocksize))
        if linear.bias is not None:
            layer.bias = nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
        return layer

    def set_weight(self, packed: torch.Tensor, absmax: torch.Tensor) -> None:
        """Install quantised weights: packed [ceil(out*in/2)] uint8, absmax [blocks] float32."""
        self.weight_packed = packed
        if self.double_quant:
            self.absmax_q, self.absmax2, self.absmax_offset = quantize_absmax(absmax)
        else:
            self.absmax = absmax

    def block_absmax(self) -> torch.Tensor:
        """[blocks] float32, after undoing double quantisation if it is on."""
        if self.double_quant:
            return dequantize_absmax(self.absmax_q, self.absmax2, self.absmax_offset)
        return self.absmax

    def dequantized_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """[out, in] in `dtype` (default: compute_dtype)."""
        return dequantize_nf4(self.weight_packed, self.block_absmax(), (self.out_features, self.in_features),
                              self.blocksize, dtype or self.compute_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(self.compute_dtype)
        return F.linear(x.to(self.compute_dtype), self.dequantized_weight(), bias).to(x.dtype)

    # -- memory accounting: the bytes this layer really holds --
    @property
    def weight_nbytes(self) -> int:
        return self.weight_packed.nbytes

    @property
    def constants_nbytes(self) -> int:
        names = ("absmax_q", "absmax2", "absmax_offset") if self.double_quant else ("absmax",)
        return sum(getattr(self, name).nbytes for name in names)

    @property
    def nbytes(self) -> int:
        """Packed weight + quantisation constants + bias."""
        bias = 0 if self.bias is None else self.bias.nbytes
        return self.weight_nbytes + self.constants_nbytes + bias

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"blocksize={self.blocksize}, double_quant={self.double_quant}, compute_dtype={self.compute_dtype}")


# -- whole models -----------------------------------------------------------------
def import_bitsandbytes():
    """Import bitsandbytes (quietly, see the top of this module), or explain what to do without it."""
    try:
        import bitsandbytes
    except ImportError as err:
        raise ImportError(
            "backend='bitsandbytes' needs the bitsandbytes package (pip install bitsandbytes). "
            "Use backend='qwqlearn' for the plain-PyTorch NF4 layers, which need nothing else."
        ) from err
    return bitsandbytes


def quantize_model(model: nn.Module, backend: str = "qwqlearn", skip: tuple[str, ...] = ("lm_head",),
                   blocksize: int = 64, double_quant: bool = True,
                   compute_dtype: torch.dtype = torch.bfloat16, device=None) -> nn.Module:
    """Replace every nn.Linear in `model` (in place) by a 4-bit NF4 layer; returns `model`.

    backend "qwqlearn": NF4Linear (this module). backend "bitsandbytes":
    bnb.nn.Linear4bit(quant_type="nf4"), which runs its CUDA kernels when the
    layer is on a GPU and its CPU path otherwise. Both store identical bytes.
    skip: a layer is kept when its qualified name equals an entry or ends with
    "." + entry (the default keeps lm_head in its original precision).
    device: where quantised layers go (default: where each layer already is),
    e.g. "cuda" to quantise a CPU-loaded model straight onto the GPU.
    """
    _check_blocksize(blocksize)
    if backend not in ("qwqlearn", "bitsandbytes"):
        raise ValueError(f"backend must be 'qwqlearn' or 'bitsandbytes', got {backend!r}")
    make = _make_qwqlearn_layer if backend == "qwqlearn" else _make_bnb_layer
    if backend == "bitsandbytes":
        import_bitsandbytes()  # fail early, before touching the model
    for parent, child_name, linear in _linears(model, skip):
        if device is not None:
            linear = linear.to(device)
        setattr(parent, child_name, make(linear, blocksize, double_quant, compute_dtype))
    return model


def _linears(model: nn.Module, skip: tuple[str, ...]) -> list[tuple[nn.Module, str, nn.Linear]]:
    """(parent module, attribute name, nn.Linear) for each layer to quantise."""
    found = []
    for parent_name, parent in model.named_modules():
        for child_name, child in parent.named_children():
            name = f"{parent_name}.{child_name}" if parent_name else child_name
            # exact type: subclasses such as bnb's Linear4bit are already quantised
            if type(child) is nn.Linear and not any(name == s or name.endswith("." + s) for s in skip):
                found.append((parent, child_name, child))
    return found


def _make_qwqlearn_layer(linear, blocksize, double_quant, compute_dtype) -> NF4Linear:
    return NF4Linear.from_linear(linear, blocksize, double_quant, compute_dtype)


def _make_bnb_layer(linear, blocksize, double_quant, compute_dtype):
    bnb = import_bitsandbytes()
    layer = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias=linear.bias is not None,
                              compute_dtype=compute_dtype, compress_statistics=double_quant,
                              quant_type="nf4", device="meta")
    weight = bnb.nn.Params4bit(linear.weight.detach().contiguous().clone(), requires_grad=False, blocksize=blocksize,
                               compress_statistics=double_quant, quant_type="nf4", module=layer)
    layer.weight = weight.to(linear.weight.device)  # .to(a real device) is where bnb quantises
    if linear.bias is not None:
        layer.bias = nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
    return layer


# -- measuring a model --------------------------------------------------------------
def measure_memory(model: nn.Module) -> dict[str, int]:
    """Bytes a model holds, by the planner's categories (shared tensors counted once).

    Categories: linear_weights (packed 4-bit or full-precision linear weights),
    quant_constants (absmax and friends; bitsandbytes also keeps code-book
    copies per layer, counted here too), embeddings (nn.Embedding and lm_head),
    norms_biases (RMSNorm weights, biases), other (non-persistent buffers such
    as rotary-embedding tables, which the planner leaves out).
    """
    sizes = dict.fromkeys(("linear_weights", "quant_constants", "embeddings", "norms_biases", "other"), 0)
    seen: set[int] = set()

    def add(category, tensor):
        if tensor is not None and tensor.data_ptr() not in seen:
            seen.add(tensor.data_ptr())
            sizes[category] += tensor.nbytes

    for name, module in model.named_modules():
        for tensor_name, tensor in _own_tensors(module):
            add(_category(name, module, tensor_name), tensor)
        for tensor in _bnb_constants(module):
            add("quant_constants", tensor)
    return sizes


def _own_tensors(module: nn.Module):
    yield from module.named_parameters(recurse=False)
    yield from module.named_buffers(recurse=False)


def _category(module_name: str, module: nn.Module, tensor_name: str) -> str:
    if tensor_name in module._non_persistent_buffers_set:
        return "other"
    if tensor_name == "bias":
        return "norms_biases"
    if isinstance(module, nn.Embedding) or module_name.split(".")[-1] == "lm_head":
        return "embeddings"
    if isinstance(module, NF4Linear):
        return "linear_weights" if tensor_name == "weight_packed" else "quant_constants"
    if isinstance(module, nn.Linear):  # includes bnb.nn.Linear4bit, whose weight is the packed uint8
        return "linear_weights"
    return "norms_biases"


def _bnb_constants(module: nn.Module):
    state = getattr(getattr(module, "weight", None), "quant_state", None)
    while state is not None:
        yield from (state.absmax, state.code, getattr(state, "offset", None))
        state = getattr(state, "state2", None)


# -- the memory planner ----------------------------------------------------------------
@dataclass(frozen=True)
class MemoryPlan:
    """Estimated GPU memory in bytes per part; `gib()` in GiB, `str()` a table (GiB, or MiB/KiB if tiny).

    linear_weights   every attention/MLP linear weight (packed 4-bit, or 16-bit)
    quant_constants  absmax scales (plus double-quantisation's second level)
    embeddings       embed_tokens, and an untied lm_head, both kept in bf16
    norms_biases     RMSNorm weights and the q/k/v biases, bf16
    kv_cache         keys and values for batch x context tokens
    activations      estimated prefill working set; see plan_memory
    """

    linear_weights: int
    quant_constants: int
    embeddings: int
    norms_biases: int
    kv_cache: int
    activations: int
    label: str = ""

    PARTS = ("linear_weights", "quant_constants", "embeddings", "norms_biases", "kv_cache", "activations")

    @property
    def total(self) -> int:
        return sum(getattr(self, part) for part in self.PARTS)

    @property
    def weights(self) -> int:
        """Everything that does not grow with the context."""
        return self.linear_weights + self.quant_constants + self.embeddings + self.norms_biases

    def gib(self) -> dict[str, float]:
        return {part: getattr(self, part) / GIB for part in (*self.PARTS, "total")}

    def __str__(self) -> str:
        unit, scale = _unit(self.total)
        lines = [self.label] if self.label else []
        lines += [f"{part.replace('_', ' '):<16} {getattr(self, part) / scale:9.3f} {unit}" for part in self.PARTS]
        lines += ["-" * 30, f"{'total':<16} {self.total / scale:9.3f} {unit}"]
        return "\n".join(lines)


def _unit(nbytes: int) -> tuple[str, int]:
    """GiB for real models; MiB or KiB so that a tiny test model's table is not all zeros."""
    for unit, scale in (("GiB", GIB), ("MiB", 1024**2)):
        if nbytes >= scale:
            return unit, scale
    return "KiB", 1024


def linear_shapes(config: QwenConfig, fused: bool = True) -> list[tuple[int, int]]:
    """(out, in) of every quantisable linear weight in one decoder layer.

    fused=True is qwqlearn's layout (qkv_proj, o_proj, gate_up_proj,
    down_proj); fused=False is transformers' (q, k, v, o, gate, up, down).
    Same weights either way; only per-tensor rounding of block counts differs.
    """
    h, kv = config.hidden_size, config.num_key_value_heads * config.head_dim
    inter = config.intermediate_size
    if fused:
        return [(h + 2 * kv, h), (h, h), (2 * inter, h), (h, inter)]
    return [(h, h), (kv, h), (kv, h), (h, h), (inter, h), (inter, h), (h, inter)]


def _constants_bytes(numel: int, blocksize: int, double_quant: bool) -> int:
    blocks = _num_blocks(numel, blocksize)
    if not double_quant:
        return 4 * blocks
    return blocks + 4 * _num_blocks(blocks, ABSMAX_BLOCKSIZE) + 4  # uint8 each, float32 absmax2, offset


def plan_memory(config: QwenConfig, bits: int = 4, context: int = 4096, batch: int = 1,
                double_quant: bool = True, blocksize: int = 64, kv_bytes: int = 2,
                fused: bool = True, full_logits: bool = False) -> MemoryPlan:
    """Memory to run `config` with 4-bit NF4 (bits=4) or bf16 (bits=16) linear weights.

    Weights are exact byte counts (tests compare them with a quantised model).
    The activation term is an estimate of the prefill peak, with SDPA attention
    (no [context, context] score matrix):
      logits   batch x (context if full_logits else 1) x vocab, float32
               (generation only needs the last position's logits);
      hidden   batch x context x (4 x hidden + 3 x intermediate), bf16
               (residual, normed input, attention output, MLP gate|up and product);
      scratch  for bits=4, the largest linear dequantised to bf16, which the
               dequantise-then-matmul prefill path materialises.
    Not included: the CUDA context and allocator slack (see `fits`' reserve).
    """
    if bits not in (4, 16):
        raise ValueError(f"bits must be 4 (NF4) or 16 (bf16), got {bits}")
    _check_blocksize(blocksize)
    shapes = linear_shapes(config, fused)
    numels = [out * inp for out, inp in shapes]
    layers, h = config.num_hidden_layers, config.hidden_size
    if bits == 4:
        linear = layers * sum((n + 1) // 2 for n in numels)
        constants = layers * sum(_constants_bytes(n, blocksize, double_quant) for n in numels)
    else:
        linear, constants = layers * 2 * sum(numels), 0
    embed = config.vocab_size * h * 2 * (1 if config.tie_word_embeddings else 2)
    qkv_bias = config.hidden_size + 2 * config.num_key_value_heads * config.head_dim
    norms_biases = 2 * (layers * (2 * h + qkv_bias) + h)
    kv = batch * context * config.kv_cache_bytes_per_token(kv_bytes)
    logits = batch * (context if full_logits else 1) * config.vocab_size * 4
    hidden = batch * context * (4 * h + 3 * config.intermediate_size) * 2
    scratch = 2 * max(numels) if bits == 4 else 0
    label = f"{config.name}: {'NF4' if bits == 4 else 'bf16'} weights, batch {batch} x context {context}"
    return MemoryPlan(linear, constants, embed, norms_biases, kv, logits + hidden + scratch, label)


@dataclass(frozen=True)
class Fit:
    """Does it fit? `headroom_gib` is what is left (negative: what is missing)."""

    fits: bool
    headroom_gib: float
    plan: MemoryPlan


def fits(config: QwenConfig, gpu_gib: float, context: int, batch: int = 1, reserve_gib: float = 1.0,
         **plan_kwargs) -> Fit:
    """Plan, then compare with a GPU of `gpu_gib`, keeping `reserve_gib` for the
    CUDA context and allocator fragmentation (about 0.5-1 GiB in practice)."""
    plan = plan_memory(config, context=context, batch=batch, **plan_kwargs)
    headroom = gpu_gib - reserve_gib - plan.total / GIB
    return Fit(headroom >= 0, headroom, plan)


def max_context(config: QwenConfig, gpu_gib: float, batch: int = 1, reserve_gib: float = 1.0,
                **plan_kwargs) -> int:
    """Longest context that fits (0 if not even the weights do), capped at max_position_embeddings.

    Every context-dependent part of the plan is linear in the context, so two
    plans give the fixed cost and the cost per token.
    """
    fixed = plan_memory(config, context=0, batch=batch, **plan_kwargs).total
    per_token = plan_memory(config, context=1, batch=batch, **plan_kwargs).total - fixed
    budget = (gpu_gib - reserve_gib) * GIB - fixed
    return max(0, min(int(budget // per_token), config.max_position_embeddings))


def fit_report(gpu_gib: float, context: int, preset: str = "qwq-32b", batch: int = 1, bits: int = 4,
               reserve_gib: float = 1.0) -> str:
    """A few readable lines: the plan, yes/no with headroom, and the longest context that fits."""
    config = QwenConfig.preset(preset)
    fit = fits(config, gpu_gib, context, batch=batch, reserve_gib=reserve_gib, bits=bits)
    verdict = (f"fits: yes, {fit.headroom_gib:.1f} GiB to spare" if fit.fits
               else f"fits: no, {-fit.headroom_gib:.1f} GiB short")
    longest = max_context(config, gpu_gib, batch=batch, reserve_gib=reserve_gib, bits=bits)
    return "\n".join([
        str(fit.plan),
        f"GPU {gpu_gib:g} GiB, keeping {reserve_gib:g} GiB for the CUDA context -> {verdict}",
        f"longest context that fits at batch {batch}: {longest} tokens",
    ])
