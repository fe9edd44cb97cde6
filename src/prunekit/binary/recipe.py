"""The binarization recipe behind ``prunekit binarize``: convert, train, pack, verify, report.

XNOR-Net's training rule (Rastegari et al., ECCV 2016; seed 004): forward and backward
passes use the binary weights (and, in XNOR mode, binary inputs), the optimizer updates
the real-valued weights. :func:`run_binarize` starts from a full-precision checkpoint
(its weights initialise the latent weights) or from scratch, trains with
:class:`prunekit.train.Trainer`, then

* evaluates the float-binarized model and its bit-packed form, and checks that their
  outputs on the whole test set are identical;
* writes ``model.pt`` (a prunekit checkpoint that reloads with
  :func:`prunekit.checkpoint.load`), ``model.pkb`` (the packed model,
  :func:`~prunekit.binary.load_packed`), ``report.json`` and ``report.md`` (accuracy,
  exact storage ratio, binary ops vs float MACs).

Example:
    >>> cfg = BinarizeConfig(mode="bwn", data="mnist5k", finetune={"epochs": 2})
    >>> report = run_binarize("lenet5", cfg, "runs/lenet5_bwn")     # doctest: +SKIP
    >>> report["binarized"]["top1"], report["storage"]["ratio"]       # doctest: +SKIP
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from prunekit.binary.layers import check_mode
from prunekit.config import from_dict, load_yaml, to_dict
from prunekit.errors import ConfigError, PrunekitError
from prunekit.train import FinetuneConfig, as_finetune, finetune_field


@dataclass
class BinarizeFinetune(FinetuneConfig):
    """The training of a binarized network: :class:`~prunekit.train.FinetuneConfig` with binary defaults.

    10 epochs of Adam at 2e-3, cosine schedule, no weight decay (decay pulls latent
    weights to 0, where their signs flip at random); overridable key by key under ``finetune:``.
    """

    epochs: int = 10
    optimizer: str = "adam"
    lr: float = 2e-3
    weight_decay: float = 0.0

OUTPUT_FILES = ("model.pt", "model.pkb", "report.json", "report.md")


@dataclass
class BinarizeConfig:
    """Settings of one binarization run (YAML keys of ``prunekit binarize --config``).

    Attributes:
        mode: ``"bwn"`` (binary weights) or ``"xnor"`` (binary weights and inputs).
        keep_first_last: keep the first and last Conv2d/Linear in full precision.
        reorder: XNOR only: re-order blocks to ``BN -> BinActiv -> BinConv -> Pool``.
        exclude: further layer names to keep in full precision.
        from_scratch: re-initialise the weights instead of starting from the checkpoint's
            (:func:`prunekit.train.reinitialize` with the training seed, the from-scratch rule
            of every family).
        data: dataset name for :func:`prunekit.data.load_dataset`.
        kernel: binary GEMM kernel of the packed model (``"auto"``, ``"avx512"``, ``"numpy"``, ...).
        finetune: the training (:class:`BinarizeFinetune`, a :class:`prunekit.train.FinetuneConfig`).

    Example:
        >>> BinarizeConfig.from_dict({"mode": "xnor", "finetune": {"epochs": 3}}).finetune.epochs
        3
    """

    RENAMED_KEYS: ClassVar[dict] = {"train": "finetune (e.g. finetune: {epochs: 3})"}

    mode: str = "xnor"
    keep_first_last: bool = True
    reorder: bool = True
    exclude: list[str] = field(default_factory=list)
    from_scratch: bool = False
    data: str = "mnist5k"
    kernel: str = "auto"
    finetune: BinarizeFinetune = finetune_field(BinarizeFinetune)

    def __post_init__(self):
        try:
            check_mode(self.mode)
        except ConfigError as e:
            raise ConfigError(f"binarize config key 'mode': {e}") from None
        self.finetune = as_finetune(self.finetune, BinarizeFinetune, "finetune")

    def to_dict(self) -> dict:
        """Plain dict (round-trips through :meth:`from_dict`)."""
        return to_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "BinarizeConfig":
        """Build from a dict; unknown keys or wrong types raise ConfigError naming the key."""
        return from_dict(cls, d)

    @classmethod
    def from_yaml(cls, path) -> "BinarizeConfig":
        """Read a YAML file of these keys."""
        return cls.from_dict(load_yaml(path))


def binary_ops(model, example_input) -> dict:
    """Float MACs and binary op counts of one forward pass, total and per layer.

    Uses :func:`prunekit.measure.count_macs`, where the binary layers report
    ``binary_ops`` (XNOR: 1-bit xnor+popcount MACs), ``bwn_adds`` (BWN: additions that
    replace MACs) and their remaining float ``macs`` (scaling, ``K`` map).

    Returns:
        ``{"float_macs": int, "binary_ops": int, "bwn_adds": int, "per_layer": {name: {...}}}``.

    Example:
        >>> import torch
        >>> from prunekit import models
        >>> from prunekit.binary import binarize
        >>> net = binarize(models.create("lenet5", in_channels=1), "xnor")
        >>> ops = binary_ops(net, torch.zeros(1, 1, 28, 28))
        >>> ops["binary_ops"] > 0 and ops["bwn_adds"] == 0
        True
    """
    from prunekit.measure import count_macs

    rep = count_macs(model, example_input)
    per_layer: dict[str, dict] = {}
    for name in list(rep.per_layer) + [n for n in rep.extra_ops if n not in rep.per_layer]:
        per_layer[name] = {"type": rep.layer_types.get(name, "?"), "float_macs": rep.per_layer.get(name, 0),
                           **rep.extra_ops.get(name, {})}
    extra = rep.extra_totals
    return {"float_macs": rep.total, "binary_ops": extra.get("binary_ops", 0),
            "bwn_adds": extra.get("bwn_adds", 0), "per_layer": per_layer}


def _check_source(source) -> None:
    from torch import nn

    from prunekit import models

    if isinstance(source, nn.Module) or (isinstance(source, (str, os.PathLike)) and Path(source).exists()):
        return
    if not (isinstance(source, str) and source in models.list_models()):
        raise PrunekitError(f"{source}: neither a checkpoint file nor a zoo model name "
                            f"(known models: {', '.join(models.list_models())})")


def resolve_model(source, splits, from_scratch: bool, seed: int = 0, trusted_factories=()):
    """The starting model: an ``nn.Module``, a checkpoint path, or a zoo name (always from scratch).

    A checkpoint ``from_scratch`` is re-initialised by :func:`prunekit.train.reinitialize` with ``seed``.
    Returns ``(model, from_scratch, description)``; ``from_scratch`` is forced True for zoo names.
    ``trusted_factories``: the model factories a checkpoint may use (see :func:`prunekit.checkpoint.load`).
    """
    from torch import nn

    from prunekit import checkpoint, models
    from prunekit.train import reinitialize

    if isinstance(source, nn.Module):
        model, desc = source, type(source).__name__
    elif isinstance(source, (str, os.PathLike)) and Path(source).exists():
        ckpt = checkpoint.load(source, trusted_factories=trusted_factories)
        model, desc = ckpt.model, str(source)
        if from_scratch:
            model = reinitialize(model, seed)
    else:
        _check_source(source)
        model = models.create(source, num_classes=splits.num_classes, in_channels=splits.in_channels,
                              input_size=tuple(splits.image_size))
        desc, from_scratch = f"zoo:{source}", True
    spec = checkpoint.get_spec(model)
    if spec is not None and tuple(spec.input_shape) != tuple(splits.input_shape):
        raise PrunekitError(f"{desc}: the model takes inputs {tuple(spec.input_shape)} but dataset "
                            f"{splits.name!r} has {tuple(splits.input_shape)}")
    return model, from_scratch, desc


def compare_outputs(a, b, x, batch_size: int = 500) -> dict:
    """Run two models on ``x`` in eval mode: how many output elements differ, and by how much at most."""
    import torch

    a.eval(), b.eval()
    differ, total, max_diff = 0, 0, 0.0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch_size):
            ya, yb = a(x[i:i + batch_size]), b(x[i:i + batch_size])
            differ += int((ya != yb).sum())
            total += ya.numel()
            max_diff = max(max_diff, float((ya - yb).abs().max()))
    return {"identical": differ == 0, "differing_elements": differ, "elements": total, "max_abs_diff": max_diff}


def verify_packed(bmodel, splits, *, kernel: str = "auto", threads: int | None = None) -> dict:
    """Evaluate a trained binarized model and its packed form, and compare their outputs.

    Returns ``{"packed": model, "binarized": metrics, "packed_metrics": metrics,
    "packed_vs_float": compare_outputs(...), "storage": StorageReport}``.
    """
    from prunekit.binary.packed import pack_model, storage_report
    from prunekit.train import evaluate

    bmodel.eval()
    packed = pack_model(bmodel, kernel=kernel, threads=threads)
    return {"packed": packed, "binarized": evaluate(bmodel, splits.test_x, splits.test_y),
            "packed_metrics": evaluate(packed, splits.test_x, splits.test_y),
            "packed_vs_float": compare_outputs(bmodel, packed, splits.test_x), "storage": storage_report(bmodel)}


def run_binarize(source, config: BinarizeConfig, out_dir, *, overwrite: bool = False, progress: bool = True,
                 callbacks=(), meta: dict | None = None, trusted_factories=()) -> dict:
    """Binarize, train, pack and verify a model; write ``model.pt``, ``model.pkb`` and reports to ``out_dir``.

    Args:
        source: full-precision checkpoint path, zoo model name (trained from scratch) or ``nn.Module``.
        config: the run's :class:`BinarizeConfig`.
        out_dir: output folder; refused if it holds a previous run's files unless ``overwrite``.
        progress: tqdm bars during training.
        callbacks: extra :class:`prunekit.train.Callback` objects.
        meta: JSON-able extras stored in the checkpoints (e.g. the command line).
        trusted_factories: the model factories a checkpoint ``source`` may use (see :func:`prunekit.checkpoint.load`).

    Returns:
        The report dict also written to ``report.json``.
    """
    import torch

    from prunekit import checkpoint
    from prunekit.binary.convert import binarize, binary_layers
    from prunekit.binary.gemm import available_kernels
    from prunekit.binary.packed import save_packed
    from prunekit.data import load_dataset
    from prunekit.runs import RunDir, complete
    from prunekit.train import evaluate, run_finetune
    from prunekit.utils.seed import seed_everything

    keep = [source] if isinstance(source, (str, os.PathLike)) else []
    run = RunDir.open(out_dir, OUTPUT_FILES, overwrite=overwrite, keep=keep)
    tcfg = config.finetune.resolve(progress=progress)
    _check_source(source)  # before the (slower) dataset load
    splits = load_dataset(config.data)
    model, from_scratch, desc = resolve_model(source, splits, config.from_scratch, tcfg.seed, trusted_factories)
    if binary_layers(model):
        raise PrunekitError(f"{desc}: the model is already binarized")
    seed_everything(tcfg.seed)
    fp_metrics = None if from_scratch else evaluate(model, splits.test_x, splits.test_y)
    example = splits.test_x[:1]
    fp_ops = binary_ops(model, example)
    bmodel = binarize(model, config.mode, config.keep_first_last, reorder=config.reorder,
                      exclude=tuple(config.exclude))
    history = run_finetune(bmodel, splits, tcfg, callbacks=callbacks).history
    check = verify_packed(bmodel, splits, kernel=config.kernel, threads=tcfg.num_threads)
    packed, b_metrics, p_metrics, same, storage = (check[k] for k in ("packed", "binarized", "packed_metrics",
                                                                       "packed_vs_float", "storage"))
    from prunekit.runs import lineage

    parent = source if isinstance(source, (str, os.PathLike)) else None  # a zoo name is no file: no parent
    meta = {"data": config.data, "source": desc, "binarize": config.to_dict(), **(meta or {}),
            **lineage(parent, None, dataset=config.data, input_shape=tuple(splits.test_x.shape[1:]))}
    ckpt_path = checkpoint.save(run.file("model.pt"), bmodel, meta={**meta, "test": b_metrics})
    pkb_path = save_packed(packed, run.file("model.pkb"), meta={**meta, "test": p_metrics})
    report = {
        "source": desc, "data": config.data, "mode": config.mode, "from_scratch": from_scratch,
        "config": config.to_dict(), "train": tcfg.to_dict(),
        "binary_layers": [name for name, _ in binary_layers(bmodel)],
        "full_precision": fp_metrics, "binarized": b_metrics, "packed": p_metrics, "packed_vs_float": same,
        "storage": storage.to_dict(),
        "files": {"model.pt": os.path.getsize(ckpt_path), "model.pkb": os.path.getsize(pkb_path)},
        "ops": {"full_precision": _ops_totals(fp_ops), "binarized": _ops_totals(binary_ops(bmodel, example)),
                "per_layer": binary_ops(bmodel, example)["per_layer"]},
        "kernel": config.kernel if config.kernel != "auto" else available_kernels()[0],
        "history": history.to_list(),
        "threads": torch.get_num_threads(),
    }
    prov = complete({"command": (meta or {}).get("command")}, call="prunekit.binary.recipe.run_binarize",
                    config=config.to_dict(), dataset=config.data, source=source if keep else desc)
    return run.write_report(_report(report, storage), prov)


def _ops_totals(ops: dict) -> dict:
    return {k: v for k, v in ops.items() if k != "per_layer"}


def _report(report: dict, storage):
    """The :class:`prunekit.runs.Report` of a binarization run (``report`` is what report.json holds)."""
    from prunekit.runs import Report, Section

    def acc(m):
        return "-" if m is None else f"{m['top1']:.2f}%"

    ops_b, ops_f = report["ops"]["binarized"], report["ops"]["full_precision"]
    same = report["packed_vs_float"]
    lines = [
        "| model | test top-1 |", "|---|---:|",
        f"| full precision (start) | {acc(report['full_precision'])} |",
        f"| {report['mode']} (float reference) | {acc(report['binarized'])} |",
        f"| {report['mode']} (bit-packed, kernel `{report['kernel']}`) | {acc(report['packed'])} |", "",
        f"Packed vs float outputs on the {same['elements']} test logits: "
        + ("identical" if same["identical"] else f"{same['differing_elements']} differ")
        + f" (max abs diff {same['max_abs_diff']:g}).", "",
        f"Binary layers: {', '.join(report['binary_layers'])}.",
    ]
    storage_md = (f"{storage.to_markdown()}\n\nFiles on disk: model.pt {report['files']['model.pt']} B, "
                  f"model.pkb {report['files']['model.pkb']} B.")
    ops = "\n".join(["| | float MACs | binary ops (xnor+popcount) | BWN adds |", "|---|---:|---:|---:|",
                     f"| full precision | {ops_f['float_macs']} | 0 | 0 |",
                     f"| {report['mode']} | {ops_b['float_macs']} | {ops_b['binary_ops']} | {ops_b['bwn_adds']} |"])
    st = report["storage"]
    profile = {"before": {"test top-1 %": (report["full_precision"] or {}).get("top1"),
                          "bytes": st["float32_bytes"]},
               "after": {"test top-1 %": report["packed"]["top1"], "bytes": st["packed_bytes"]}}
    return Report(title=f"prunekit binarize: {report['mode'].upper()} of {report['source']} on {report['data']}",
                  data=report, profile=profile, labels=("full precision", f"{report['mode']} packed"), sections=[Section("Accuracy", "\n".join(lines)),
                                         Section("Storage (exact bytes of the state dict)", storage_md),
                                         Section("Ops per sample", ops)])


# ---- the ``binarize`` step of ``prunekit run`` recipes ---------------------------------------------


@dataclass
class BinarizeStepConfig:
    """Keys of a recipe's ``- binarize: {...}`` step (see :func:`binarize_step`).

    Attributes: as :class:`BinarizeConfig` without ``data`` and ``from_scratch`` (the recipe
    provides the data and the current model).
    """

    mode: str = "xnor"
    keep_first_last: bool = True
    reorder: bool = True
    exclude: list[str] = field(default_factory=list)
    kernel: str = "auto"
    finetune: BinarizeFinetune = finetune_field(BinarizeFinetune)

    RENAMED_KEYS: ClassVar[dict] = BinarizeConfig.RENAMED_KEYS

    def __post_init__(self):
        self.finetune = BinarizeConfig(mode=self.mode, finetune=self.finetune).finetune  # same checks, same messages


def binarize_step(state, cfg: BinarizeStepConfig) -> None:
    """Recipe step: binarize ``state.model``, train it, write ``model.pkb``, check it, record the figures.

    ``state`` is a :class:`prunekit.recipe.RecipeState`; afterwards ``state.model`` is the
    trained float-binarized model (saved by the recipe as ``model.pt``).
    """
    from prunekit.binary.convert import binarize, binary_layers
    from prunekit.binary.packed import save_packed
    from prunekit.train import run_finetune

    full = BinarizeConfig(mode=cfg.mode, keep_first_last=cfg.keep_first_last, reorder=cfg.reorder,
                          exclude=list(cfg.exclude), kernel=cfg.kernel, finetune=cfg.finetune)
    tcfg = full.finetune.resolve(progress=bool(state.extras.get("progress", True)))
    bmodel = binarize(state.model, cfg.mode, cfg.keep_first_last, reorder=cfg.reorder, exclude=tuple(cfg.exclude))
    run_finetune(bmodel, state.data, tcfg)
    check = verify_packed(bmodel, state.data, kernel=cfg.kernel, threads=tcfg.num_threads)
    save_packed(check["packed"], Path(state.out_dir) / "model.pkb", meta={"binarize": full.to_dict()})
    state.model = bmodel
    storage = check["storage"]
    state.record("binarize", mode=cfg.mode, test_top1=check["binarized"]["top1"],
                 packed_top1=check["packed_metrics"]["top1"],
                 packed_identical=check["packed_vs_float"]["identical"], storage_ratio=storage.ratio,
                 binary_layers_ratio=storage.binary_ratio, binary_layers=[n for n, _ in binary_layers(bmodel)])
