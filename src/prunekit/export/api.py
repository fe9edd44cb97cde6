"""Export a model to ONNX or ``torch.export`` (``.pt2``) and check the file against the eager model.

The file is written atomically (a temporary folder beside it, then renamed), then
loaded the way a deployment loads it (ONNX Runtime's ``InferenceSession``,
``torch.export.load``) and run on random inputs shaped like the example inputs for
several seeds (and, with a dynamic batch, at two batch sizes); the largest absolute
difference to the eager model is reported, and an :class:`~prunekit.errors.ExportError`
is raised when it exceeds ``atol + rtol * max|eager output|``.

Example:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    >>> r = export(net, torch.randn(1, 3, 8, 8), "/tmp/net.onnx", dynamic_batch=True, overwrite=True)  # doctest: +SKIP
    >>> r.checks[0]["batch"], r.ok                                                                        # doctest: +SKIP
    (1, True)
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from prunekit.errors import ExportError, PrunekitError
from prunekit.validate import check_bool, check_choice, check_int, check_number

__all__ = ["FORMATS", "ExportOptions", "ExportResult", "export", "flatten_outputs", "random_like"]

FORMATS = ("onnx", "pt2")
MAX_BATCH = 4096   # the upper bound of the dynamic batch dimension


@dataclass
class ExportOptions:
    """How an export is checked.

    Attributes:
        seeds: random inputs compared per batch size (seeds 0 .. seeds-1).
        atol, rtol: the refusal threshold ``atol + rtol * max|eager output|`` on the max abs difference.
        batch_sizes: the batch sizes checked with a dynamic batch (the example's batch size otherwise).
        opset: ONNX opset version (None: the exporter's default).
    """

    seeds: int = 3
    atol: float = 1e-4
    rtol: float = 1e-4
    batch_sizes: tuple = (1, 5)
    opset: int | None = None

    def __post_init__(self):
        check_int("seeds", self.seeds, minimum=1, error=ExportError)
        check_number("atol", self.atol, minimum=0, error=ExportError)
        check_number("rtol", self.rtol, minimum=0, error=ExportError)
        if not self.batch_sizes or len(self.batch_sizes) < 1:
            raise ExportError(f"batch_sizes must name at least one batch size, got {self.batch_sizes!r}")
        for b in self.batch_sizes:
            check_int("batch size", b, minimum=1, maximum=MAX_BATCH, error=ExportError)
        self.batch_sizes = tuple(int(b) for b in self.batch_sizes)
        if self.opset is not None:
            check_int("opset", self.opset, minimum=7, error=ExportError)

    def to_dict(self) -> dict:
        """Plain data (report.json)."""
        d = asdict(self)
        d["batch_sizes"] = list(self.batch_sizes)
        return d


@dataclass
class ExportResult:
    """What :func:`export` wrote and how closely it reproduces the eager model.

    Attributes:
        path: the exported file; ``files`` every file written (ONNX may add external weight data).
        format: ``"onnx"`` or ``"pt2"``.
        dynamic_batch: whether the batch dimension is dynamic.
        max_abs_diff: the largest absolute difference over every check.
        tolerance: the threshold it was held to.
        checks: one row per (batch size, seed): ``batch``, ``seed``, ``max_abs_diff``, ``max_abs_ref``.
        input_shapes: the example input shapes the file was traced with.
    """

    path: Path
    format: str
    dynamic_batch: bool
    max_abs_diff: float
    tolerance: float
    checks: list = field(default_factory=list)
    input_shapes: list = field(default_factory=list)
    files: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance

    def to_dict(self) -> dict:
        """Plain data (report.json)."""
        return {"path": str(self.path), "format": self.format, "dynamic_batch": self.dynamic_batch,
                "max_abs_diff": self.max_abs_diff, "tolerance": self.tolerance, "ok": self.ok,
                "checks": [dict(c) for c in self.checks], "input_shapes": [list(s) for s in self.input_shapes],
                "files": [str(f) for f in self.files]}


def flatten_outputs(out) -> list:
    """The tensors of a model output in a fixed order (tensor, tuple/list, dict, HF ``ModelOutput``)."""
    import torch

    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):   # HF ModelOutput is an OrderedDict of its non-None fields
        return [t for v in out.values() for t in flatten_outputs(v)]
    if isinstance(out, (tuple, list)):
        return [t for v in out for t in flatten_outputs(v)]
    if out is None:
        return []
    raise ExportError(f"cannot export a model returning {type(out).__name__}: tensors, tuples, lists and dicts "
                      "of tensors are exportable")


def _as_tuple(example_inputs) -> tuple:
    import torch

    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,)
    if isinstance(example_inputs, (tuple, list)) and example_inputs and \
            all(isinstance(t, torch.Tensor) for t in example_inputs):
        return tuple(example_inputs)
    raise ExportError("example_inputs must be a tensor or a non-empty tuple of tensors, got "
                      f"{type(example_inputs).__name__}")


def random_like(example: tuple, batch: int, seed: int) -> tuple:
    """Random inputs with the example's dtypes and sample shapes at batch size ``batch``.

    Floating inputs are standard normal; integer inputs (token ids) are uniform over
    ``0 .. max(example)``; booleans (masks) are all True.
    """
    import torch

    g = torch.Generator().manual_seed(seed)
    out = []
    for t in example:
        shape = (batch, *t.shape[1:])
        if t.dtype.is_floating_point:
            out.append(torch.randn(shape, generator=g).to(t.dtype))
        elif t.dtype == torch.bool:
            out.append(torch.ones(shape, dtype=torch.bool))
        else:
            high = int(t.max()) + 1 if t.numel() else 2
            out.append(torch.randint(0, max(high, 1), shape, generator=g).to(t.dtype))
    return tuple(out)


def _dynamic_shapes(example: tuple):
    import torch

    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    return tuple({0: batch} for _ in example)


def _export_program(model, example: tuple, dynamic: bool):
    import torch

    try:
        return torch.export.export(model, example, dynamic_shapes=_dynamic_shapes(example) if dynamic else None,
                                   strict=False)
    except Exception as e:  # noqa: BLE001 - torch.export raises many types; the user needs the first line
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        if dynamic and ("batch" in str(e) or "Constraint" in type(e).__name__ or "specializ" in str(e).lower()):
            raise ExportError(f"this model does not support a dynamic batch dimension (its code fixes the batch "
                              f"size): {first}; export without --dynamic-batch") from None
        raise ExportError(f"torch.export cannot capture this model: {type(e).__name__}: {first}") from None


@contextlib.contextmanager
def _quiet():
    """Silence the exporters' progress logs and warnings (e.g. about torchvision ops it skips registering)."""
    import logging
    import warnings

    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _write_onnx(model, example: tuple, dynamic: bool, target: Path, opts: ExportOptions) -> None:
    import torch

    try:
        import onnx  # noqa: F401 - the exporter and the check need it; fail early with the extra's name
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise ExportError(f"ONNX export needs the onnx extra (onnx, onnxruntime, onnxscript): "
                          f"pip install 'prunekit[onnx]' ({e})") from None
    program = _export_program(model, example, dynamic)   # one capture; its errors are the ones users can act on
    kwargs = {} if opts.opset is None else {"opset_version": opts.opset}
    try:
        onnx_program = torch.onnx.export(program, example, dynamo=True, verbose=False,
                                         input_names=[f"input{i}" for i in range(len(example))], **kwargs)
        onnx_program.save(str(target))
    except Exception as e:  # noqa: BLE001 - the exporter raises many types
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise ExportError(f"the ONNX exporter failed: {type(e).__name__}: {first}") from None


def _run_onnx(path: Path):
    import numpy as np
    import onnxruntime as ort
    import torch

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1   # the check is about values, not speed; a shared machine stays usable
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]

    def run(inputs):
        outs = sess.run(None, {n: t.numpy() for n, t in zip(names, inputs)})
        return [torch.from_numpy(np.asarray(o)) for o in outs]

    return run


def _run_pt2(path: Path):
    import torch

    module = torch.export.load(str(path)).module()
    return lambda inputs: flatten_outputs(module(*inputs))


def _check(model, example: tuple, path: Path, fmt: str, dynamic: bool, opts: ExportOptions) -> list:
    import torch

    run = _run_onnx(path) if fmt == "onnx" else _run_pt2(path)
    rows = []
    for batch in (opts.batch_sizes if dynamic else (int(example[0].shape[0]),)):
        for seed in range(opts.seeds):
            inputs = random_like(example, batch, seed)
            with torch.no_grad():
                ref = flatten_outputs(model(*inputs))
            try:
                with torch.no_grad():
                    got = run(inputs)
            except Exception as e:  # noqa: BLE001 - a runtime failure is the export's fault: say where
                first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
                raise ExportError(f"{path}: the exported {fmt} file fails at batch {batch}: {first}") from None
            if len(got) != len(ref) or any(tuple(g.shape) != tuple(r.shape) for g, r in zip(got, ref)):
                raise ExportError(f"{path}: the exported {fmt} file returns shapes "
                                  f"{[tuple(g.shape) for g in got]}, the model {[tuple(r.shape) for r in ref]} "
                                  f"(batch {batch})")
            diff = max((float((g.double() - r.double()).abs().max()) if r.numel() else 0.0)
                       for g, r in zip(got, ref))
            scale = max((float(r.double().abs().max()) if r.numel() else 0.0) for r in ref)
            rows.append({"batch": batch, "seed": seed, "max_abs_diff": diff, "max_abs_ref": scale})
    return rows


def export(model, example_inputs, path: str | os.PathLike, *, format: str = "onnx", dynamic_batch: bool = False,
           options: ExportOptions | None = None, overwrite: bool = False) -> ExportResult:
    """Export ``model`` (in eval mode) to ``path`` and check the file against the eager model.

    Args:
        model: the module; exported in eval mode (its training flag is restored afterwards).
        example_inputs: a tensor or tuple of tensors (batch first) the model is traced with.
        path: the file to write (``.onnx`` / ``.pt2`` by convention).
        format: ``"onnx"`` (dynamo exporter, needs the ``onnx`` extra) or ``"pt2"`` (``torch.export.save``).
        dynamic_batch: make dim 0 of every input dynamic; checked at ``options.batch_sizes``.
        options: :class:`ExportOptions` (seeds, tolerance, opset).
        overwrite: replace an existing ``path``.

    Raises:
        ExportError: the model cannot be captured, does not allow a dynamic batch, the file does not run,
            or its outputs differ from the model's by more than the tolerance (the file is then removed).
    """
    import torch

    check_choice("format", format, FORMATS, error=ExportError)
    check_bool("dynamic_batch", dynamic_batch, error=ExportError)
    opts = options or ExportOptions()
    example = _as_tuple(example_inputs)
    target = Path(path)
    if target.exists() and not overwrite:
        raise PrunekitError(f"{target} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
    if dynamic_batch and int(example[0].shape[0]) == 1:
        # torch.export specialises a size-1 dimension to the constant 1: trace at batch 2
        example = random_like(example, 2, 0)
    was_training = model.training
    model.eval()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        staged = tmp / target.name   # the same file name: ONNX external data refers to its weights by name
        with torch.no_grad(), _quiet():
            if format == "onnx":
                _write_onnx(model, example, dynamic_batch, staged, opts)
            else:
                torch.export.save(_export_program(model, example, dynamic_batch), str(staged))
        checks = _check(model, example, staged, format, dynamic_batch, opts)
        diff = max(c["max_abs_diff"] for c in checks)
        tol = opts.atol + opts.rtol * max(c["max_abs_ref"] for c in checks)
        if diff > tol:
            raise ExportError(f"the exported {format} file differs from the model by up to {diff:.3g} "
                              f"(tolerance {tol:.3g}); not written")
        files = []
        for f in sorted(tmp.iterdir()):
            os.replace(f, target.parent / f.name)
            files.append(target.parent / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        model.train(was_training)
    return ExportResult(path=target, format=format, dynamic_batch=dynamic_batch, max_abs_diff=diff, tolerance=tol,
                        checks=checks, input_shapes=[list(t.shape) for t in example], files=files)
