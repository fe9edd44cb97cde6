"""Deployment of binarized models: bit-packed layers, the ``.pkb`` file, exact storage figures.

* :func:`pack_model` turns a trained BWN/XNOR model (from :func:`~prunekit.binary.binarize`)
  into an inference copy whose binary layers hold their weights as 64 signs per
  ``uint64`` word plus one float32 ``alpha`` per output channel. XNOR layers compute
  with xor + popcount (:mod:`prunekit.binary.packed_ops`); BWN layers unpack their
  signs once and convolve the real input with them (additions only, in principle).
* Outputs equal the float-binarized model's: the integer part is identical (xor +
  popcount vs ``conv2d`` of +-1 in float32, exact below 2**24 terms) and the scaling runs
  the same :func:`~prunekit.binary.functional.scale_output` on the same values.
  Inference only, in float32.
* :func:`save_packed` / :func:`load_packed`: a ``.pkb`` file, read with
  ``torch.load(weights_only=True)``, holding the model spec and the packed state dict
  (signs as int64 tensors with the uint64 bit patterns).
* :func:`storage_report`: bytes of the float32 model vs the packed one, per layer and in
  total, alphas and full-precision layers included.

Example:
    >>> import torch
    >>> from prunekit import models
    >>> from prunekit.binary import binarize
    >>> net = binarize(models.create("lenet5", in_channels=1), "xnor").eval()
    >>> packed = pack_model(net)
    >>> x = torch.randn(2, 1, 28, 28)
    >>> bool(torch.equal(packed(x), net(x)))
    True
"""
from __future__ import annotations

import copy
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from prunekit.binary import functional as BF
from prunekit.binary import packed_ops
from prunekit.binary.layers import BINARY_LAYERS, BinaryConv2d, BinaryLinear, check_mode, layer_op_counts
from prunekit.binary.packing import int64_to_words, pack_signs, unpack_signs, words_for, words_to_int64
from prunekit.errors import CheckpointError, PrunekitError
from prunekit.measure.macs import register_op_counter
from prunekit.surgery import replace_module

FORMAT = "prunekit.packed_binary"
VERSION = 1


class _PackedBase(nn.Module):
    """Shared storage of packed layers: ``weight_bits`` (int64 view of uint64 words), ``alpha``, ``bias``."""

    def __init__(self, out_channels: int, fan_in: int, bias: bool, mode: str) -> None:
        super().__init__()
        self.mode = check_mode(mode)
        self._fan_in = int(fan_in)
        # Storage layout: each output channel's weights flattened in PyTorch order, packed.
        self.register_buffer("weight_bits", torch.zeros(out_channels, words_for(fan_in), dtype=torch.int64))
        self.register_buffer("alpha", torch.ones(out_channels))
        if bias:
            self.register_buffer("bias", torch.zeros(out_channels))
        else:
            self.bias = None
        self.kernel = "auto"  # binary GEMM kernel; see prunekit.binary.gemm
        self.threads: int | None = None
        self._derived: dict = {}

    @property
    def fan_in(self) -> int:
        """Elements per output (``n``)."""
        return self._fan_in

    def _derive(self, key, fn):
        """Cache ``fn()`` until ``weight_bits`` is replaced or changed in place (e.g. by load_state_dict)."""
        stamp = (self.weight_bits.data_ptr(), self.weight_bits._version)
        if self._derived.get("_stamp") != stamp:
            self._derived = {"_stamp": stamp}
        if key not in self._derived:
            self._derived[key] = fn()
        return self._derived[key]

    def weight_signs(self) -> torch.Tensor:
        """The binary weights as a float32 +-1 tensor, ``(out, fan_in)``."""
        return self._derive("signs", lambda: torch.from_numpy(
            unpack_signs(int64_to_words(self.weight_bits), self.fan_in)))

    def _store(self, weight: torch.Tensor, bias) -> None:
        with torch.no_grad():
            self.weight_bits.copy_(torch.from_numpy(words_to_int64(pack_signs(weight.detach().flatten(1)))))
            self.alpha.copy_(BF.weight_alpha(weight.detach().float()))
            if bias is not None:
                self.bias.copy_(bias.detach())

    def forward(self, x):
        if self.training:
            raise PrunekitError(f"{type(self).__name__} is for inference only; call .eval() "
                                "(train the float model from prunekit.binary.binarize instead)")
        if x.dtype != torch.float32:
            raise PrunekitError(f"{type(self).__name__} computes in float32, got a {x.dtype} input")
        return self._forward(x)


class PackedBinaryConv2d(_PackedBase):
    """Inference form of :class:`~prunekit.binary.layers.BinaryConv2d` with bit-packed weights."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
                 groups=1, bias=True, *, mode="bwn", input_norm=True) -> None:
        kh, kw = BF._pair(kernel_size)
        super().__init__(out_channels, in_channels // groups * kh * kw, bias, mode)
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride = (kh, kw), BF._pair(stride)
        self.padding, self.dilation = BF._pair(padding), BF._pair(dilation)
        self.input_norm = nn.BatchNorm2d(in_channels) if (mode == "xnor" and input_norm) else None

    @classmethod
    def from_binary(cls, layer: BinaryConv2d) -> "PackedBinaryConv2d":
        """Pack a trained :class:`BinaryConv2d`."""
        new = cls(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                  layer.dilation, layer.groups, layer.bias is not None, mode=layer.mode,
                  input_norm=layer.input_norm is not None)
        if layer.input_norm is not None:
            new.input_norm = copy.deepcopy(layer.input_norm).float()
        new._store(layer.weight, layer.bias)
        return new

    def weight_sign_4d(self) -> torch.Tensor:
        """The binary weights ``(O, C/groups, kh, kw)`` as float32 +-1."""
        return self.weight_signs().view(self.out_channels, self.in_channels // self.groups, *self.kernel_size)

    def _forward(self, x):
        if self.mode == "bwn":
            y = F.conv2d(x, self.weight_sign_4d(), None, self.stride, self.padding, self.dilation, self.groups)
            return BF.scale_output(y, self.alpha, None, self.bias)
        if self.input_norm is not None:
            x = self.input_norm(x)
        k = BF.activation_scale_map(x, self.kernel_size, self.stride, self.padding, self.dilation)
        signs = self.weight_sign_4d()
        taps = self._derive("taps", lambda: packed_ops.pack_conv_weight_taps(signs))
        hw = tuple(x.shape[-2:])
        corr = None
        if self.padding != (0, 0):
            corr = self._derive(("corr", hw), lambda: packed_ops.padding_correction(
                signs, hw, self.stride, self.padding, self.dilation))
        y = packed_ops.xnor_conv2d_int(x, taps, signs, self.stride, self.padding, self.dilation,
                                       correction=corr, kernel=self.kernel, threads=self.threads)
        return BF.scale_output(torch.from_numpy(y).to(x.dtype), self.alpha, k, self.bias)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, mode={self.mode}, packed")


class PackedBinaryLinear(_PackedBase):
    """Inference form of :class:`~prunekit.binary.layers.BinaryLinear` with bit-packed weights."""

    def __init__(self, in_features, out_features, bias=True, *, mode="bwn", input_norm=True) -> None:
        super().__init__(out_features, in_features, bias, mode)
        self.in_features, self.out_features = in_features, out_features
        self.input_norm = nn.BatchNorm1d(in_features) if (mode == "xnor" and input_norm) else None

    @classmethod
    def from_binary(cls, layer: BinaryLinear) -> "PackedBinaryLinear":
        """Pack a trained :class:`BinaryLinear`."""
        new = cls(layer.in_features, layer.out_features, layer.bias is not None, mode=layer.mode,
                  input_norm=layer.input_norm is not None)
        if layer.input_norm is not None:
            new.input_norm = copy.deepcopy(layer.input_norm).float()
        new._store(layer.weight, layer.bias)
        return new

    def _forward(self, x):
        if self.mode == "bwn":
            return BF.scale_output(F.linear(x, self.weight_signs()), self.alpha, None, self.bias)
        if self.input_norm is not None:
            x = self.input_norm(x)
        beta = BF.activation_scale_rows(x)
        words = self._derive("words", lambda: np.ascontiguousarray(int64_to_words(self.weight_bits)))
        y = packed_ops.xnor_linear_int(x, words, self.in_features, kernel=self.kernel, threads=self.threads)
        return BF.scale_output(torch.from_numpy(y).to(x.dtype), self.alpha, beta, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, mode={self.mode}, packed"


PACKED_LAYERS = (PackedBinaryConv2d, PackedBinaryLinear)


def _count(module, inputs, output):
    return layer_op_counts(module, inputs, output)


register_op_counter(PackedBinaryConv2d, _count)
register_op_counter(PackedBinaryLinear, _count)


# ---- whole models ---------------------------------------------------------------------------------


def pack_model(model: nn.Module, *, kernel: str = "auto", threads: int | None = None) -> nn.Module:
    """An inference copy of a binarized ``model`` with every binary layer bit-packed (in eval mode).

    Args:
        model: a model from :func:`~prunekit.binary.binarize` (trained or not).
        kernel, threads: binary GEMM kernel and thread count of the XNOR layers.
    """
    if not any(isinstance(m, BINARY_LAYERS) for m in model.modules()):
        raise PrunekitError("pack_model: the model has no binary layers; convert it with prunekit.binary.binarize")
    packed = copy.deepcopy(model)
    for name, m in list(packed.named_modules()):
        if isinstance(m, BinaryConv2d):
            new = PackedBinaryConv2d.from_binary(m)
        elif isinstance(m, BinaryLinear):
            new = PackedBinaryLinear.from_binary(m)
        else:
            continue
        new.kernel, new.threads = kernel, threads
        if not name:  # the model is itself one binary layer
            packed = new
            break
        replace_module(packed, name, new)
    return packed.eval()


@dataclass
class LayerStorage:
    """Bytes of one binary layer's weights: float32 vs packed (signs + alphas)."""

    name: str
    mode: str
    weights: int
    float32_bytes: int
    sign_bytes: int
    alpha_bytes: int

    @property
    def ratio(self) -> float:
        """float32 bytes / (packed signs + alphas) bytes."""
        return self.float32_bytes / (self.sign_bytes + self.alpha_bytes)


@dataclass
class StorageReport:
    """Exact storage of a binarized model, float32 vs packed (every tensor of the state dict counted).

    Attributes:
        layers: per binary layer, its weights as float32 vs packed signs + alphas.
        binary_float32_bytes: the binary layers' weights stored as float32.
        binary_packed_bytes: the same weights packed (signs in 64-bit words, tail bits
            included) plus one float32 alpha per output channel.
        other_bytes: everything else, identical in both forms: full-precision layers (the
            kept first/last layers), biases, BatchNorm parameters and statistics.
        float32_bytes: whole model as float32 = ``binary_float32_bytes + other_bytes``.
        packed_bytes: whole packed model = ``binary_packed_bytes + other_bytes``.
    """

    layers: list[LayerStorage] = field(default_factory=list)
    binary_float32_bytes: int = 0
    binary_packed_bytes: int = 0
    other_bytes: int = 0

    @property
    def float32_bytes(self) -> int:
        return self.binary_float32_bytes + self.other_bytes

    @property
    def packed_bytes(self) -> int:
        return self.binary_packed_bytes + self.other_bytes

    @property
    def ratio(self) -> float:
        """Whole-model compression: float32 bytes / packed bytes."""
        return self.float32_bytes / self.packed_bytes if self.packed_bytes else float("nan")

    @property
    def binary_ratio(self) -> float:
        """Binary layers only (weights vs signs + alphas); 32x in the limit of wide layers."""
        return self.binary_float32_bytes / self.binary_packed_bytes if self.binary_packed_bytes else float("nan")

    def to_dict(self) -> dict:
        """JSON-able summary with the derived totals and ratios."""
        return {"float32_bytes": self.float32_bytes, "packed_bytes": self.packed_bytes, "ratio": self.ratio,
                "binary_float32_bytes": self.binary_float32_bytes, "binary_packed_bytes": self.binary_packed_bytes,
                "binary_ratio": self.binary_ratio, "other_bytes": self.other_bytes,
                "layers": [{**asdict(r), "ratio": r.ratio} for r in self.layers]}

    def to_markdown(self) -> str:
        """A Markdown table of the layers and the totals."""
        lines = ["| layer | mode | weights | float32 bytes | packed signs | alphas | ratio |",
                 "|---|---|---:|---:|---:|---:|---:|"]
        for r in self.layers:
            lines.append(f"| {r.name} | {r.mode} | {r.weights} | {r.float32_bytes} | {r.sign_bytes} | "
                         f"{r.alpha_bytes} | {r.ratio:.2f}x |")
        lines.append(f"| binary layers | | | {self.binary_float32_bytes} | | {self.binary_packed_bytes} (total) | "
                     f"{self.binary_ratio:.2f}x |")
        lines.append(f"| whole model (+{self.other_bytes} B full-precision rest) | | | {self.float32_bytes} | | "
                     f"{self.packed_bytes} (total) | {self.ratio:.2f}x |")
        return "\n".join(lines)


def storage_report(model: nn.Module) -> StorageReport:
    """Exact float32-vs-packed storage of a binarized (float or packed) ``model``'s state dict.

    Floating tensors count 4 bytes per element in the float32 form; integer buffers
    (e.g. BatchNorm's ``num_batches_tracked``) their own size in both.
    """
    rep = StorageReport()
    binary_keys: set[str] = set()
    for name, m in model.named_modules():
        if isinstance(m, BINARY_LAYERS + PACKED_LAYERS):
            prefix = f"{name}." if name else ""
            out = m.out_channels if hasattr(m, "out_channels") else m.out_features
            weights = out * m.fan_in
            sign_bytes = out * words_for(m.fan_in) * 8
            rep.layers.append(LayerStorage(name, m.mode, weights, 4 * weights, sign_bytes, 4 * out))
            binary_keys |= {prefix + "weight", prefix + "weight_bits", prefix + "alpha"}
    rep.binary_float32_bytes = sum(r.float32_bytes for r in rep.layers)
    rep.binary_packed_bytes = sum(r.sign_bytes + r.alpha_bytes for r in rep.layers)
    for key, t in model.state_dict().items():
        if key in binary_keys:
            continue
        rep.other_bytes += t.numel() * (4 if t.is_floating_point() else t.element_size())
    return rep


# ---- the .pkb file --------------------------------------------------------------------------------


def save_packed(model: nn.Module, path: str | os.PathLike, *, meta: dict | None = None,
                overwrite: bool = True) -> Path:
    """Write a binarized model (float or already packed) as a packed ``.pkb`` file, atomically.

    The model needs its ``prunekit_spec`` (models from :func:`~prunekit.binary.binarize`
    of a zoo model or a checkpoint have it). ``meta`` must be JSON-able.
    """
    import json

    from prunekit.checkpoint import get_spec
    from prunekit.utils.io import atomic_save_torch, check_overwrite

    p = check_overwrite(path, overwrite)
    spec = get_spec(model)
    if spec is None or not any(t.get("kind") == "binarize" for t in spec.transforms):
        raise CheckpointError("save_packed: the model has no prunekit_spec with a 'binarize' transform; "
                              "binarize a zoo model or a prunekit checkpoint with prunekit.binary.binarize")
    packed = model if any(isinstance(m, PACKED_LAYERS) for m in model.modules()) else pack_model(model)
    meta = dict(meta or {})
    meta.setdefault("storage", storage_report(packed).to_dict())
    try:
        json.dumps(meta)
    except TypeError as e:
        raise CheckpointError(f"save_packed: meta must be JSON-serialisable: {e}") from None
    atomic_save_torch({"format": FORMAT, "version": VERSION, "spec": spec.to_dict(),
                       "state_dict": packed.state_dict(), "meta": meta}, p)
    return p


def load_packed(path: str | os.PathLike, *, kernel: str = "auto", threads: int | None = None, trusted_factories=()):
    """Load a ``.pkb`` file as a runnable packed model (eval mode).

    ``trusted_factories``: the model factories the file may use (see :func:`prunekit.checkpoint.load`).

    Returns:
        :class:`prunekit.checkpoint.Checkpoint` with ``model`` (packed layers), ``spec``,
        ``meta`` (including the storage report written by :func:`save_packed`).

    Raises:
        CheckpointError: missing, corrupt or not a packed prunekit model.
    """
    from prunekit.checkpoint import Checkpoint, ModelSpec, build, check_base_size

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such packed model file")
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises assorted types on garbage input
        raise CheckpointError(f"{p}: not a readable packed model ({type(e).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{p}: not a packed prunekit model (no '{FORMAT}' header)")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{p}: packed format version {payload.get('version')!r} is not supported")
    spec = ModelSpec.from_dict(payload["spec"])
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{p}: 'state_dict' must map names to tensors")
    # packed weights take 1/32 of their float size: the growth bound of check_base_size covers that
    check_base_size(spec, sum(t.numel() for t in state.values()), str(p))
    model = pack_model(build(spec, trusted_factories=trusted_factories), kernel=kernel, threads=threads)
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{p}: packed weights do not fit the stored architecture: "
                              f"{str(e).splitlines()[0]}") from None
    model.prunekit_spec = spec
    return Checkpoint(model=model.eval(), spec=spec, meta=dict(payload.get("meta", {})), train_state=None, path=p)
