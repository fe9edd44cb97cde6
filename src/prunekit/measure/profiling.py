"""Build :class:`~prunekit.measure.report.ProfileReport` objects: one model, or several timed side by side."""
from __future__ import annotations

import datetime
import os
import platform
from dataclasses import replace
from typing import Mapping, Sequence

from prunekit.errors import PrunekitError
from prunekit.measure._utils import input_shapes_of, make_inputs, model_device_dtype, resolve_inputs, shape_text
from prunekit.measure.threads import check_threads, num_threads
from prunekit.validate import check_int
from prunekit.measure.latency import check_latency_args, compare_latency
from prunekit.measure.macs import count_macs
from prunekit.measure.memory import peak_memory, peak_memory_method, size_on_disk
from prunekit.measure.params import count_nonzero_params, count_params
from prunekit.measure.report import ProfileReport
from prunekit.measure.speedup import SpeedConfig, time_interleaved


def layer_param_counts(model, layer_names) -> dict[str, int]:
    """Parameter elements per listed layer; a parameter of an unlisted module goes to its nearest listed ancestor.

    Parameters with no listed ancestor (e.g. a BatchNorm beside the convolutions) are left out.
    Tied parameters are counted once.
    """
    listed = set(layer_names)
    counts = {name: 0 for name in layer_names}
    seen: set[int] = set()
    for mod_name, module in model.named_modules():
        owner = mod_name
        while owner not in listed and owner:
            owner = owner.rpartition(".")[0]
        if owner not in listed:
            continue
        for p in module.parameters(recurse=False):
            if id(p) not in seen:
                seen.add(id(p))
                counts[owner] += p.numel()
    return counts


def _check_batch_sizes(batch_sizes) -> list[int]:
    if isinstance(batch_sizes, int):
        batch_sizes = [batch_sizes]
    try:
        sizes = list(batch_sizes)
    except TypeError:
        raise PrunekitError(f"batch_sizes must be a sequence of positive integers, got {batch_sizes!r}") from None
    if not sizes:
        raise PrunekitError("batch_sizes must not be empty")
    for b in sizes:
        check_int("batch size", b, error=PrunekitError)
    return list(dict.fromkeys(sizes))


def default_name(model) -> str:
    """The zoo name from ``model.prunekit_spec`` if there is one, else the class name."""
    from prunekit.checkpoint import get_spec

    spec = get_spec(model)
    if spec is not None and "model" in spec.arch:
        return str(spec.arch["model"])
    return type(model).__name__


def _environment(threads: int, example_input) -> dict:
    import torch

    return {"torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
            "machine": platform.machine(), "cpu_count": os.cpu_count(), "threads": threads,
            "macs_method": "torch.utils.flop_counter.FlopCounterMode, MACs = FLOPs / 2, batch size 1",
            "latency_method": "median of perf_counter-timed forward passes after warm-up, eval + inference_mode; "
                              "models of one call timed in interleaved rounds",
            "memory_method": peak_memory_method(example_input),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def profile_many(models: Mapping[str, object], input_shape: Sequence[int] | None = None,
                 batch_sizes: Sequence[int] = (1, 32), latency: bool = True, threads: int | None = None,
                 files: Mapping[str, str | os.PathLike] | None = None, *, memory: bool = True, warmup: int = 10,
                 repeats: int = 50, min_time_s: float = 0.0, progress: bool = False,
                 speed=None) -> dict[str, ProfileReport]:
    """Profile several models on the same input shape; their latencies are measured interleaved.

    This is the way to get a trustworthy before/after speed ratio on a noisy
    machine (see :func:`prunekit.measure.compare_latency`); pass the two
    reports to :func:`prunekit.measure.compare`, which gives the paired ratio with
    its bootstrap interval (:func:`prunekit.measure.paired_speedup`).

    Args:
        models: ``{name: module}``.
        input_shape: one sample's shape, e.g. ``(1, 28, 28)``; a list of shapes for models with several
            inputs, or example tensors (see :func:`profile`); None takes each model's ``prunekit_spec``
            input shapes (they must agree).
        files: optional ``{name: path}`` of the files the models were loaded from (their sizes are reported).
        speed: a :class:`prunekit.measure.SpeedConfig`: time the rounds by its rules instead
            (``rounds``, ``warmup``; ``until_tight`` repeats rounds, per batch size, until every
            model's interval against the first model is within ``tolerance`` or ``max_time_s``
            passes); its ``threads`` is replaced by ``threads``. ``warmup``, ``repeats`` and
            ``min_time_s`` are then unused.
        Other arguments: as in :func:`profile`.

    Example:
        >>> import torch.nn as nn
        >>> reps = profile_many({"a": nn.Linear(8, 4), "b": nn.Linear(8, 2)}, (8,), batch_sizes=(1,),
        ...                     warmup=1, repeats=3, memory=False)
        >>> reps["a"].macs.total, reps["b"].macs.total
        (32, 16)
    """
    if not isinstance(models, Mapping) or not models:
        raise PrunekitError("profile_many needs a non-empty dict {name: model}")
    sizes = _check_batch_sizes(batch_sizes)
    check_threads(threads)
    check_latency_args(warmup, repeats, threads, min_time_s, None)  # even with latency=False: catch typos early
    if speed is not None:
        if not isinstance(speed, SpeedConfig):
            raise PrunekitError(f"speed must be a prunekit.measure.SpeedConfig, got {type(speed).__name__}")
    files = dict(files or {})
    for key in files:
        if key not in models:
            raise PrunekitError(f"files names {key!r}, which is not one of the models: {', '.join(models)}")
    inputs = {name: resolve_inputs(m, input_shape) for name, m in models.items()}
    shapes = {name: input_shapes_of(t) for name, t in inputs.items()}
    if len({repr(s) for s in shapes.values()}) > 1:
        raise PrunekitError(f"the models expect different input shapes {shapes}; pass input_shape")
    templates, shape = next(iter(inputs.values())), next(iter(shapes.values()))
    reports: dict[str, ProfileReport] = {}
    with num_threads(threads) as used_threads:
        for name, model in models.items():
            try:
                macs = count_macs(model, make_inputs(model, templates, 1))
            except TypeError as e:   # forward(x, y) given one input (or the reverse): say how to pass several
                raise PrunekitError(f"{name}: the model does not take the input(s) {shape_text(shape)}: {e}; a model "
                                    "with several inputs takes a list of shapes, e.g. input_shape=[(3, 32, 32), "
                                    "(10,)]") from None
            file = files.get(name)
            reports[name] = ProfileReport(
                name=name, input_shape=list(shape), params=count_params(model),
                trainable_params=count_params(model, trainable_only=True),
                nonzero_params=count_nonzero_params(model), macs=macs,
                layer_params=layer_param_counts(model, list(macs.per_layer) + list(macs.extra_ops)),
                state_dict_bytes=size_on_disk(model),
                file=None if file is None else str(file),
                file_bytes=None if file is None else size_on_disk(file),
                environment=_environment(used_threads, make_inputs(model, templates, 1)))
            if memory:
                for bs in sizes:
                    reports[name].peak_memory[bs] = peak_memory(model, make_inputs(model, templates, bs))
        if latency:
            # Interleave only models that can share one input tensor (same device and dtype).
            groups: dict[tuple, list[str]] = {}
            for name, model in models.items():
                device, dtype = model_device_dtype(model)
                groups.setdefault((str(device), str(dtype)), []).append(name)
            for bs in sizes:
                for names in groups.values():
                    x = make_inputs(models[names[0]], templates, bs)
                    group = {n: models[n] for n in names}
                    if speed is None:
                        results = compare_latency(group, x, warmup=warmup, repeats=repeats, threads=used_threads,
                                                  min_time_s=min_time_s, progress=progress)
                    else:
                        results, _ = time_interleaved(group, x, replace(speed, threads=used_threads), progress)
                    for n, r in results.items():
                        reports[n].latency[bs] = r
    return reports


def profile(model, input_shape: Sequence[int] | None = None, batch_sizes: Sequence[int] = (1, 32),
            latency: bool = True, threads: int | None = None, file: str | os.PathLike | None = None, *,
            memory: bool = True, warmup: int = 10, repeats: int = 50, min_time_s: float = 0.0,
            name: str | None = None, progress: bool = False) -> ProfileReport:
    """Measure everything about one model: parameters, non-zeros, MACs per layer, latency, memory, size.

    MACs are per sample (batch size 1); latency and peak memory are measured
    for each of ``batch_sizes``. The model's train/eval flags and the torch
    thread count are restored afterwards.

    Args:
        model: an ``nn.Module``.
        input_shape: one sample's shape, e.g. ``(3, 32, 32)``; for a model with several positional inputs
            a list of shapes, e.g. ``[(3, 32, 32), (10,)]``; or example tensors (a tensor or a tuple, batch
            first: the first sample is repeated to each batch size, so integer inputs such as token ids stay
            valid); None takes the shapes of ``model.prunekit_spec``.
        batch_sizes: batch sizes for latency and peak memory.
        latency: measure latency (the slow part); False leaves ``report.latency`` empty.
        threads: torch intra-op threads for all measurements (None keeps the current count).
        file: the file the model was loaded from; its size is reported.
        memory: measure peak memory.
        warmup, repeats, min_time_s: see :func:`prunekit.measure.measure_latency`.
        name: label in the report (default: the zoo name or the class name).
        progress: tqdm bars over the timed runs.

    Example:
        >>> import torch.nn as nn
        >>> rep = profile(nn.Conv2d(3, 8, 3, padding=1), (3, 8, 8), batch_sizes=(1,), latency=False)
        >>> rep.params, rep.macs.total
        (224, 13824)
        >>> print(rep.to_table())            # doctest: +SKIP
    """
    label = name or default_name(model)
    files = {label: file} if file is not None else None
    return profile_many({label: model}, input_shape, batch_sizes, latency, threads, files, memory=memory,
                        warmup=warmup, repeats=repeats, min_time_s=min_time_s, progress=progress)[label]
