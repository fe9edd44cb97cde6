"""Shared plumbing of the structured methods: configs, plan construction, budgets, feature sampling.

Every structured method ends in a :class:`~prunekit.engine.PruningPlan`; the engine's
``plan.apply`` is the only code that removes channels. Methods whose channel choice is
not a weight criterion (LASSO, ThiNet, Network Slimming's global threshold) build their
plan with :func:`plan_from_removed`: a skeleton plan from the engine (``ratio=0``, so
the coupling groups are the engine's) with ``removed`` filled in by the method.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar, Optional

import numpy as np

from prunekit.errors import PrunekitError
from prunekit.train import FinetuneConfig, as_finetune, finetune_field
from prunekit.validate import check_fraction, check_int


@dataclass
class StructuredFinetune(FinetuneConfig):
    """The fine-tuning of the structured methods: :class:`~prunekit.train.FinetuneConfig` with their defaults.

    2 epochs of SGD (momentum 0.9) at 0.01, cosine schedule, batch 64, weight decay
    5e-4, no augmentation, evaluated only at the end. Slimming's sparsity training and
    the iterative methods' fine-tuning between steps use the same settings (with their
    own epochs and rate).
    """

    epochs: int = 2
    lr: float = 0.01
    augment: bool = False
    eval_every: int = 0
    checkpoint_every: int = 0


@dataclass
class CommonConfig:
    """Options every structured method shares (budget, calibration data, fine-tuning).

    Attributes:
        macs: keep this fraction of the model's MACs (None: use ``ratio``).
        macs_tolerance: allowed error of the MACs target (fraction of the original).
        ratio: fraction of each prunable group's channels to remove (when ``macs`` is None).
        calib_images: training images used for statistics (sampling, sensitivity, Taylor).
        finetune: the fine-tuning after pruning (:class:`StructuredFinetune`, a
            :class:`prunekit.train.FinetuneConfig`: ``{epochs, lr, batch_size, weight_decay,
            augment, label_smoothing, ...}``; ``epochs: 0`` skips it); its ``batch_size`` is
            also the Taylor calibration batch.
        from_scratch: re-initialise the pruned architecture (:func:`prunekit.train.reinitialize`,
            the from-scratch rule of every family) and train it for ``finetune.epochs`` instead
            of fine-tuning (Liu et al., "Rethinking the Value of Network Pruning", ICLR 2019).
        seed: seeds sampling, the re-initialisation and (unless ``finetune.seed`` is set) fine-tuning.
        latency: time the dense and the pruned network interleaved at batch 32 (30 rounds) and put
            their latency ratio with its interval in the report (:func:`prunekit.measure.compare_speed`).
    """

    #: keys of the flat spelling before ``finetune`` was one nested config
    RENAMED_KEYS: ClassVar[dict] = {"finetune_epochs": "finetune.epochs (finetune: {epochs: N})",
                                    "finetune_lr": "finetune.lr (finetune: {lr: X})",
                                    "batch_size": "finetune.batch_size (finetune: {batch_size: N})",
                                    "weight_decay": "finetune.weight_decay (finetune: {weight_decay: X})",
                                    "augment": "finetune.augment (finetune: {augment: true})"}

    macs: Optional[float] = 0.5
    macs_tolerance: float = 0.03
    ratio: Optional[float] = None
    calib_images: int = 256
    finetune: StructuredFinetune = finetune_field(StructuredFinetune)
    from_scratch: bool = False
    seed: int = 0
    latency: bool = True

    def __post_init__(self) -> None:
        self.finetune = as_finetune(self.finetune, StructuredFinetune, "finetune")

    def check(self) -> None:
        """Raise ConfigError for out-of-range values (types are checked by ``prunekit.config``)."""
        check_fraction("config key 'macs'", self.macs, allow_zero=False, allow_one=True, allow_none=True)
        check_fraction("config key 'ratio'", self.ratio, allow_none=True)
        check_int("config key 'calib_images'", self.calib_images)


def example_input(data):
    """One training image as the example input of tracing (batch of 1)."""
    return data.train_x[:1].clone()


def calib_batch(data, n: int, seed: int):
    """``(x, y)``: ``n`` training images drawn without replacement with a seeded generator."""
    import torch

    g = torch.Generator().manual_seed(int(seed))
    idx = torch.randperm(len(data.train_x), generator=g)[: min(n, len(data.train_x))]
    return data.train_x[idx], data.train_y[idx]


# ---------------------------------------------------------------------------------------- plans
def skeleton(model, x, criterion: str = "l1", keep_scores: bool = False):
    """The engine's plan with nothing removed: its groups are the ones every method fills in."""
    from prunekit.engine import plan

    return plan(model, x, criterion=criterion, ratio=0.0, keep_scores=keep_scores)


def plan_from_removed(model, x, removed: dict, info: dict | None = None, base=None):
    """A :class:`PruningPlan` removing ``removed[group_id]`` channels of each group.

    A thin wrapper of the engine's :func:`prunekit.engine.plan_from_channels` that also
    measures MACs and parameters on the pruned copy. ``base`` is accepted for callers
    that already hold a skeleton plan; the groups always come from the engine.
    """
    from prunekit.engine import plan_from_channels

    out = plan_from_channels(model, x, {int(k): v for k, v in removed.items()}, info=info)
    if base is not None and [g.size for g in base.groups] != [g.size for g in out.groups]:
        raise PrunekitError("plan_from_removed: the skeleton plan does not belong to this model")
    out.info.update(_estimate(model, x, out))
    return out


def _estimate(model, x, p) -> dict:
    """MACs and parameter counts after ``p`` (measured on the pruned copy, so always exact)."""
    from prunekit.measure import count_macs

    small = p.apply(model)
    return {"macs_after": float(count_macs(small, x).total),
            "params_after": float(sum(t.numel() for t in small.parameters()))}


@dataclass(frozen=True)
class PrunableLayer:
    """A group whose channels are read by exactly one layer (the case of He et al. and ThiNet).

    Attributes:
        group: the engine's group id.
        consumer: qualified name of the layer reading the channels (Conv2d or Linear).
        producers: layers writing the channels (role ``out``).
        size: channels in the group.
    """

    group: int
    consumer: str
    producers: tuple
    size: int


def prunable_layers(model, base) -> list[PrunableLayer]:
    """Groups with one Conv2d(groups=1)/Linear consumer reading channel ``c`` at input index ``c``.

    Residual streams (several consumers) and the classifier's outputs (no consumer) are
    left out, as in He et al. 2017 and ThiNet, which prune only inside residual branches.
    Ordered as the consumers appear in ``model.named_modules()`` (forward order for the zoo).
    """
    import torch

    mods = dict(model.named_modules())
    order = {n: i for i, n in enumerate(mods)}
    out = []
    for g in base.groups:
        ins = [m for m in g.members if m.role == "in"]
        outs = tuple(sorted({m.module for m in g.members if m.role == "out"}))
        if len(ins) != 1 or not outs or g.size < 2:
            continue
        m = ins[0]
        mod = mods.get(m.module)
        ok_conv = isinstance(mod, torch.nn.Conv2d) and mod.groups == 1 and mod.in_channels == g.size
        ok_lin = isinstance(mod, torch.nn.Linear) and mod.in_features == g.size
        identity = m.dim == 1 and np.array_equal(m.indices, np.arange(g.size)) and np.array_equal(m.channels, m.indices)
        if (ok_conv or ok_lin) and identity and m.param == m.module + ".weight":
            out.append(PrunableLayer(g.id, m.module, outs, g.size))
    return sorted(out, key=lambda p: order.get(p.consumer, 0))


def budget_counts(model, x, allowed: list[PrunableLayer], macs=None, ratio=None, base=None,
                  tolerance: float = 0.03) -> dict:
    """Channels to remove per allowed group for a MACs target (or a uniform ratio).

    The engine's policy does the budgeting (criterion ``l1``, groups outside
    ``allowed`` ignored); the *counts* are kept and the method chooses *which* channels.
    """
    from prunekit.engine import plan

    base = base if base is not None else skeleton(model, x)
    keep = {p.group for p in allowed}
    ignored = sorted({m.module for g in base.groups if g.id not in keep for m in g.members if m.role == "out"})
    if macs is None and ratio is None:
        raise PrunekitError("give a MACs target (macs) or a ratio")
    kw = {"macs": macs} if macs is not None else {"ratio": ratio}
    p = plan(model, x, criterion="l1", ignored_layers=ignored, tolerance=tolerance, **kw)
    sizes = {g.id: g.size for g in base.groups}
    counts = {}
    for g in p.groups:
        if g.id in keep and g.removed:
            if sizes.get(g.id) != g.size:
                raise PrunekitError("engine returned different groups for the same model (internal error)")
            counts[g.id] = len(g.removed)
    return counts


# ---------------------------------------------------------------------------------------- sampling
class _Stop(Exception):
    pass


def layer_input(model, name: str, images, batch: int = 128):
    """The input tensor of submodule ``name`` for ``images`` (forward stops at that layer)."""
    import torch

    mod = model.get_submodule(name)
    store = []

    def hook(_m, args):
        store.append(args[0].detach())
        raise _Stop

    h = mod.register_forward_pre_hook(hook)
    flags = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            for i in range(0, len(images), batch):
                try:
                    model(images[i:i + batch])
                except _Stop:
                    pass
    finally:
        h.remove()
        for m, t in flags.items():
            m.training = t
    return torch.cat(store)


@dataclass(frozen=True)
class Positions:
    """Sampled output positions of a layer, shared by its input patches and any output-shaped value.

    Attributes:
        img: image index of each point ``(N,)``.
        rows: output row (Conv2d) or token index (Linear on ``(B, ..., c)`` inputs) ``(N,)``.
        cols: output column (Conv2d) ``(N,)``, or None for Linear.
    """

    img: object
    rows: object
    cols: object = None

    def __len__(self) -> int:
        return int(self.img.numel())


def sample_positions(layer, input_shape, points_per_image: int, seed: int) -> Positions:
    """Random output positions of ``layer`` for an input of ``input_shape`` (He et al. sample 10 per image).

    Conv2d: ``min(points_per_image, oh * ow)`` distinct positions per image. Linear on
    ``(B, c)`` inputs: one point per image; on ``(B, ..., c)``: ``points_per_image``
    distinct tokens per image.
    """
    import torch

    g = torch.Generator().manual_seed(int(seed))
    B = int(input_shape[0])
    if isinstance(layer, torch.nn.Linear):
        tokens = int(np.prod(input_shape[1:-1])) if len(input_shape) > 2 else 1
        if tokens == 1:
            return Positions(torch.arange(B), torch.zeros(B, dtype=torch.long))
        p = min(points_per_image, tokens)
        tok = torch.stack([torch.randperm(tokens, generator=g)[:p] for _ in range(B)])
        return Positions(torch.arange(B).repeat_interleave(p), tok.reshape(-1))
    if isinstance(layer.padding, str):
        raise PrunekitError(f"layer {type(layer).__name__} with padding={layer.padding!r} is not supported for sampling")
    (kh, kw), (sh, sw), (dh, dw), (ph, pw) = layer.kernel_size, layer.stride, layer.dilation, layer.padding
    H, W = int(input_shape[2]) + 2 * ph, int(input_shape[3]) + 2 * pw
    oh, ow = (H - dh * (kh - 1) - 1) // sh + 1, (W - dw * (kw - 1) - 1) // sw + 1
    p = min(points_per_image, oh * ow)
    pos = torch.stack([torch.randperm(oh * ow, generator=g)[:p] for _ in range(B)])  # distinct per image
    return Positions(torch.arange(B).repeat_interleave(p), (pos // ow).reshape(-1), (pos % ow).reshape(-1))


def gather_patches(layer, inputs, pos: Positions):
    """``(N, c, k)`` input patches of ``layer`` at ``pos`` (only the sampled patches, no full im2col)."""
    import torch
    import torch.nn.functional as F

    if isinstance(layer, torch.nn.Linear):
        x = inputs.reshape(len(inputs), -1, inputs.shape[-1]).float()
        return x[pos.img, pos.rows].unsqueeze(-1)
    (kh, kw), (sh, sw), (dh, dw), (ph, pw) = layer.kernel_size, layer.stride, layer.dilation, layer.padding
    x = F.pad(inputs.float(), (pw, pw, ph, ph))
    c = x.shape[1]
    rows = (pos.rows * sh)[:, None, None] + (torch.arange(kh) * dh)[None, :, None]   # (n, kh, 1)
    cols = (pos.cols * sw)[:, None, None] + (torch.arange(kw) * dw)[None, None, :]   # (n, 1, kw)
    patches = x.permute(0, 2, 3, 1)[pos.img[:, None, None], rows, cols]             # (n, kh, kw, c)
    return patches.reshape(len(pos), kh * kw, c).permute(0, 2, 1).contiguous()


def gather_outputs(layer, values, pos: Positions):
    """``(N, n)``: an output-shaped tensor of ``layer`` (its output, or a value added to it) at ``pos``."""
    import torch

    if isinstance(layer, torch.nn.Linear):
        return values.reshape(len(values), -1, values.shape[-1]).float()[pos.img, pos.rows]
    return values.float().permute(0, 2, 3, 1)[pos.img, pos.rows, pos.cols]


def sample_patches(layer, inputs, points_per_image: int, seed: int):
    """``(N, c, k)`` input patches of ``layer`` at random output positions (He et al. sample 10 per image).

    The positions are :func:`sample_positions`; use it with :func:`gather_patches` and
    :func:`gather_outputs` to read other values at the same points. For a Linear layer
    ``k = 1`` and every image gives one point.
    """
    return gather_patches(layer, inputs, sample_positions(layer, inputs.shape, points_per_image, seed))


def layer_weight(layer):
    """``(n_out, c, k)`` view of a Conv2d or Linear weight."""
    w = layer.weight.detach().float()
    return w.reshape(w.shape[0], w.shape[1], -1)


# ---------------------------------------------------------------------------------------- mutation
def write_reconstructed(pruned, plan, weights: dict) -> None:
    """Second step after ``plan.apply``: copy reconstructed weights into the pruned model.

    ``weights[layer]`` has the layer's *original* output count and its *kept* input
    channels (what LASSO/ThiNet reconstruct); the output rows the plan removed are
    dropped here. A layer behind an input selection (:mod:`prunekit.surgery.select`)
    gets its weight written into the wrapped layer. This is the only place the
    structured methods write weights.
    """
    import torch

    from prunekit.surgery.select import inner_layer

    kept = plan.kept_indices()
    with torch.no_grad():
        for name, w in weights.items():
            layer = inner_layer(pruned.get_submodule(name))
            rows = kept.get((name + ".weight", 0))
            if rows is not None:
                w = w[torch.as_tensor(rows, dtype=torch.long)]
            w = w.reshape(layer.weight.shape) if w.numel() == layer.weight.numel() else w
            if tuple(w.shape) != tuple(layer.weight.shape):
                raise PrunekitError(f"reconstructed weight of {name!r} has shape {tuple(w.shape)}, "
                                    f"the pruned layer has {tuple(layer.weight.shape)}")
            layer.weight.copy_(w.to(layer.weight.dtype))


def with_defaults(cfg, **changes):
    """``dataclasses.replace`` that tolerates unknown names (for generic callers)."""
    return replace(cfg, **{k: v for k, v in changes.items() if hasattr(cfg, k)})
