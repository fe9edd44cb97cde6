"""Checkpoints that carry their architecture, so loading needs no other argument.

A prunekit checkpoint is a ``torch.save`` of plain data (dicts, lists, strings,
numbers, tensors) and is always loaded with ``torch.load(weights_only=True)``:
no pickled code is ever executed. It stores

* ``arch``: how to build the dense base model, either a zoo name
  (``{"model": "resnet20", "kwargs": {...}}``) or an importable factory of the
  user's own (``{"factory": "mypkg.nets:build", "kwargs": {...}}``), which is
  imported and called only if the caller trusts it (``trusted_factories=``, CLI
  ``--trust-factory``): a file must not be able to run code (docs/security.md);
* ``input_shape``: the shape of one input sample, e.g. ``[1, 28, 28]``;
* ``transforms``: an ordered list of structural changes applied to the base
  model before the weights fit, e.g. a pruning plan (``{"kind": "prune_plan", ...}``),
  binarization, or input-channel selection (``select_inputs``, see
  :mod:`prunekit.surgery.select`); each kind is registered in :data:`TRANSFORMS`;
* ``state_dict`` with ``weights_sha256`` (checked on load; ``torch.load`` does not
  verify the zip's CRCs) and free-form JSON-able ``meta`` (dataset, metrics, ...);
* optionally ``train_state`` (optimizer, scheduler, epoch) to resume training.

The model spec travels with a model as the attribute ``model.prunekit_spec``
(a :class:`~prunekit.spec.ModelSpec`, defined in the leaf module :mod:`prunekit.spec`
and re-exported here), set by :func:`prunekit.models.create` and extended by
code that changes the structure, so ``save(path, model)`` just works;
:func:`build` rebuilds the model a spec describes.

Example:
    >>> from prunekit import models, checkpoint
    >>> net = models.create("lenet5", num_classes=10, in_channels=1)
    >>> checkpoint.save("/tmp/lenet5.pt", net)          # doctest: +SKIP
    >>> net2 = checkpoint.load("/tmp/lenet5.pt").model   # doctest: +SKIP
"""
from __future__ import annotations

import importlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from prunekit.errors import CheckpointError
from prunekit.factories import check_factory_name, factory_name, resolve_factory
from prunekit.registry import Registry
from prunekit.spec import MAX_NESTING, ModelSpec, attach_spec, get_spec, nesting_depth
from prunekit.utils.io import atomic_save_torch, check_overwrite

__all__ = ["Checkpoint", "ModelSpec", "TRANSFORMS", "apply_transform", "build", "build_base", "check_base_size",
           "check_finite", "check_payload", "check_spec", "describe", "check_factory_name", "factory_name", "get_spec", "load", "read_raw", "read_versioned", "rebuild",
           "resolve_factory", "save", "transform_function", "weights_digest"]

FORMAT = "prunekit.checkpoint"
VERSION = 1

# kind -> fn(model, transform_dict) -> model. A kind listed in TRANSFORM_SOURCES is
# registered on first use: "module:function" names the function, a bare "module"
# registers its kinds itself when imported. Checkpoints store only the kind, so a
# kind keeps its name when the code behind it moves (old checkpoints still load).
TRANSFORMS: Registry[Callable] = Registry("checkpoint transform")
TRANSFORM_SOURCES = {
    "prune_plan": "prunekit.engine.pruning_plan:replay_transform",
    "binarize": "prunekit.binary",
    "select_inputs": "prunekit.surgery.select",
    "dynamic_gates": "prunekit.surgery.gates",
}


def transform_function(kind) -> Callable:
    """The function of the registered transform ``kind``, importing the code behind it on first use."""
    source = TRANSFORM_SOURCES.get(kind) if isinstance(kind, str) else None
    if source is not None and kind not in TRANSFORMS:
        module, _, name = source.partition(":")
        mod = importlib.import_module(module)
        # a module may register its kinds itself when imported; register only what is still missing
        if name and kind not in TRANSFORMS:
            TRANSFORMS.add(kind, getattr(mod, name))
    return TRANSFORMS.get(kind)


# Zoo models are built on the meta device first (no memory) to count their values: a file
# may make prunekit allocate at most this many values, or MAX_GROWTH times what it stores
# (a pruned model's dense base is larger than its weights), whichever is more. This stops
# a few-byte file from asking for a VGG with a width of 10**9.
MAX_GROWTH = 1024
MIN_BASE_VALUES = 1 << 26
MAX_ZOO_LIST = 1024   # entries of a list option (layer widths): every entry builds modules


def _arch_kwargs(arch: dict) -> dict:
    kwargs = arch.get("kwargs", {})
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise CheckpointError(f"model spec: 'kwargs' must be a mapping of option names, got {kwargs!r}")
    return dict(kwargs)


def build_base(spec: ModelSpec, *, trusted_factories=(), model_fn: Callable | None = None):
    """Build the dense base architecture of ``spec`` with freshly initialised weights.

    A zoo model (``arch["model"]``) is always built; a factory (``arch["factory"]``)
    only if ``trusted_factories`` allows it (see :func:`resolve_factory`), or by
    ``model_fn`` (the user's constructor, e.g. their ``nn.Module`` class) called with
    the stored ``kwargs`` instead of the factory the file names.
    Bad options (unknown or of the wrong type) are CheckpointErrors.
    """
    kwargs = _arch_kwargs(spec.arch)
    if model_fn is not None:
        if "factory" not in spec.arch:
            raise CheckpointError(f"model_fn is for models of your own class, but this file holds the zoo model "
                                  f"{spec.arch.get('model')!r}; load it without model_fn")
        try:
            return attach_spec(model_fn(**kwargs), spec.base())
        except TypeError as e:  # the stored kwargs do not fit this constructor
            raise CheckpointError(f"model_fn {getattr(model_fn, '__qualname__', model_fn)!r} does not accept the "
                                  f"stored arguments {kwargs}: {e}") from None
    if "model" in spec.arch:
        from prunekit import models

        name = spec.arch["model"]
        if not isinstance(name, str) or name not in models.list_models():
            raise CheckpointError(f"model spec names an unknown zoo model {name!r}")
        long = [k for k, v in kwargs.items() if isinstance(v, (list, tuple)) and len(v) > MAX_ZOO_LIST]
        if long:  # e.g. a VGG cfg of a million layers: each entry builds a module
            raise CheckpointError(f"model spec: zoo option {long[0]!r} of {name!r} has more than {MAX_ZOO_LIST} "
                                  "entries")
        try:
            return models.create(name, **kwargs)
        except (TypeError, ValueError, OverflowError, RuntimeError) as e:  # bad or unknown stored options
            raise CheckpointError(f"cannot build zoo model {name!r} with the stored options: {e}") from None
    if "factory" in spec.arch:
        fn = resolve_factory(spec.arch["factory"], trusted_factories)
        return attach_spec(fn(**kwargs), spec.base())
    raise CheckpointError(f"model spec has neither 'model' nor 'factory': {spec.arch}")


def check_base_size(spec: ModelSpec, stored_values: int, where: str = "model spec") -> None:
    """Refuse a zoo architecture far larger than the weights stored for it, before allocating it.

    The base is built on the meta device (no memory); it may hold at most
    ``max(MIN_BASE_VALUES, MAX_GROWTH * stored_values)`` values. Factories are
    the caller's own trusted code and are not checked.
    """
    if "model" not in spec.arch:
        return
    import torch

    with torch.device("meta"):
        base = build_base(spec)
    n = sum(t.numel() for t in base.state_dict().values())
    limit = max(MIN_BASE_VALUES, MAX_GROWTH * int(stored_values))
    if n > limit:
        raise CheckpointError(f"{where}: the stored architecture has {n:,} values for {stored_values:,} stored "
                              f"weights (more than {limit:,}); refusing to allocate it")


def build(spec: ModelSpec, *, trusted_factories=(), model_fn: Callable | None = None):
    """The model ``spec`` describes: base architecture with every transform applied, ready for ``load_state_dict``.

    ``trusted_factories``: names (``"module:function"``) or callables of the
    factories ``spec`` may use (see :func:`resolve_factory`); zoo models need none.
    ``model_fn``: the constructor to build a factory spec's base with (see :func:`build_base`).

    Example:
        >>> spec = ModelSpec(arch={"model": "lenet5", "kwargs": {"in_channels": 1}}, input_shape=[1, 28, 28])
        >>> build(spec).conv1.in_channels                   # doctest: +SKIP
        1
    """
    model = attach_spec(build_base(spec, trusted_factories=trusted_factories, model_fn=model_fn), spec.base())
    return _replay(model, spec)


def _replay(model, spec: ModelSpec):
    """``model`` (the base of ``spec``) with every transform of ``spec`` applied."""
    if not isinstance(spec.transforms, list):
        raise CheckpointError(f"model spec: 'transforms' must be a list, got {spec.transforms!r}")
    for t in spec.transforms:
        if not isinstance(t, dict) or not isinstance(t.get("kind"), str):
            raise CheckpointError(f"model spec: malformed transform {t!r} (a mapping with a 'kind' is expected)")
        if t["kind"] not in TRANSFORM_SOURCES and t["kind"] not in TRANSFORMS:
            known = ", ".join(sorted(set(TRANSFORM_SOURCES) | set(TRANSFORMS.names())))
            raise CheckpointError(f"model spec: unknown checkpoint transform {t['kind']!r} (known: {known})")
        try:
            model = apply_transform(model, t)
        except CheckpointError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as e:  # a malformed stored transform
            raise CheckpointError(f"model spec: cannot apply the stored {t['kind']!r} transform: "
                                  f"{type(e).__name__}: {e}") from None
    return model


def rebuild(model):
    """A freshly initialised model of the same architecture as ``model``, built from its ``prunekit_spec``.

    ``model`` is already in memory, so the factory its spec names (if any) was
    already trusted by whoever built it; it is trusted again here.
    """
    spec = get_spec(model)
    if spec is None:
        raise CheckpointError("model has no prunekit_spec to rebuild it from")
    factory = spec.arch.get("factory")
    return build(spec, trusted_factories=(factory,) if factory else ())


def apply_transform(model, transform: dict):
    """Apply one registered structural transform and record it in ``model.prunekit_spec``."""
    fn = transform_function(transform.get("kind"))
    spec = get_spec(model)
    model = fn(model, transform)
    if spec is not None:
        model.prunekit_spec = spec.with_transform(transform)
    return model


@dataclass
class Checkpoint:
    """A loaded checkpoint: the runnable model plus everything stored beside it."""

    model: Any
    spec: ModelSpec
    meta: dict
    train_state: dict | None
    path: Path


def save(path: str | os.PathLike, model, *, spec: ModelSpec | None = None, meta: dict | None = None,
         train_state: dict | None = None, overwrite: bool = True, check: bool = True) -> Path:
    """Write ``model`` with its architecture to ``path`` atomically.

    A path ending in ``.safetensors`` writes the weights as safetensors with the spec and
    meta data as JSON in its header (no pickle at all; see
    :mod:`prunekit.utils.safetensors_file`); any other path a ``torch.save`` of plain data.

    Args:
        path: destination file (``.pt`` by convention, or ``.safetensors``).
        model: the module; its ``prunekit_spec`` is used unless ``spec`` is given.
        spec: explicit architecture description (for models not built by prunekit; or call
            :func:`describe` on the model before pruning it, so the plan is recorded).
        meta: JSON-able extra information (dataset, metrics, command line).
        train_state: optimizer/scheduler/epoch state for resuming (``.pt`` only).
        overwrite: when False, refuse to replace an existing file.
        check: rebuild the spec's model (on the meta device: no memory, no weights) and refuse the
            save when its tensors differ from ``model``'s, so a file that could not load is never written.

    Raises:
        CheckpointError: no spec, a spec that does not describe ``model``, or meta that is not JSON-able.
    """
    from prunekit.utils.safetensors_file import write_safetensors

    p = check_overwrite(path, overwrite)
    spec = spec or get_spec(model)
    if spec is None:
        raise CheckpointError(
            f"model ({type(model).__name__}) has no prunekit_spec, so a checkpoint could not rebuild it; before "
            f"pruning call prunekit.checkpoint.describe(model, input_shape=[C, H, W], kwargs={{constructor "
            f"arguments}}) (or pass spec=ModelSpec(...))")
    meta = meta or {}
    try:
        json.dumps(meta)
    except TypeError as e:
        raise CheckpointError(f"meta must be JSON-serialisable: {e}") from None
    if check:
        check_spec(spec, model)
    state = model.state_dict()
    digest = weights_digest(state)
    if Path(p).suffix == ".safetensors":
        if train_state is not None:
            raise CheckpointError(f"{p}: a .safetensors checkpoint holds no training state; save it as .pt to "
                                  "resume training")
        write_safetensors(p, state, {"format": FORMAT, "version": str(VERSION), "spec": json.dumps(spec.to_dict()),
                                     "meta": json.dumps(meta), "weights_sha256": digest})
        return p
    payload = {"format": FORMAT, "version": VERSION, "spec": spec.to_dict(), "state_dict": state, "meta": meta,
               "weights_sha256": digest}
    if train_state is not None:
        payload["train_state"] = train_state
    atomic_save_torch(payload, p)
    return p


def describe(model, input_shape, *, kwargs: dict | None = None, factory: Callable | str | None = None):
    """Attach a :class:`ModelSpec` to a model of your own class so its checkpoints rebuild it; returns ``model``.

    Call it on the dense model before pruning: :meth:`prunekit.engine.PruningPlan.apply`
    then records the plan in the spec, and :func:`save` / :func:`load` (``model_fn=``)
    round-trip the pruned model onto your constructor without pickles.

    Args:
        model: the dense model (not yet pruned).
        input_shape: one sample's shape, e.g. ``[3, 32, 32]``.
        kwargs: the JSON-able arguments ``factory(**kwargs)`` rebuilds the model with (default none).
        factory: the constructor (default ``type(model)``) or its ``"module:function"`` name.

    Raises:
        CheckpointError: kwargs not JSON-able, or ``factory(**kwargs)`` builds tensors other than ``model``'s.

    Example:
        >>> import torch
        >>> net = describe(torch.nn.Linear(4, 2), [4], kwargs={"in_features": 4, "out_features": 2})
        >>> net.prunekit_spec.arch["factory"]
        'torch.nn.modules.linear:Linear'
    """
    kwargs = dict(kwargs or {})
    try:
        json.dumps(kwargs)
    except TypeError as e:
        raise CheckpointError(f"describe: kwargs must be JSON-serialisable (they are stored in the file): {e}") \
            from None
    fn = type(model) if factory is None else factory
    name = check_factory_name(fn) if isinstance(fn, str) else factory_name(fn)
    if "<locals>" in name:
        raise CheckpointError(f"describe: {name!r} is defined inside a function, so no file can name it; define "
                              "it at module level")
    spec = ModelSpec.from_dict({"arch": {"factory": name, "kwargs": kwargs}, "input_shape": list(input_shape)})
    check_spec(spec, model, model_fn=None if isinstance(fn, str) else fn)
    return attach_spec(model, spec)


def check_spec(spec: ModelSpec, model, *, model_fn: Callable | None = None) -> None:
    """Raise CheckpointError unless the model ``spec`` builds has exactly ``model``'s tensor names and shapes.

    The spec's model is built on the meta device (no memory, no weights; on the CPU when a
    transform needs values): the base, then every transform replayed. Its factory, if any, is trusted: ``model`` is already in memory, so the
    code that built it already ran.
    """
    import torch

    factory = spec.arch.get("factory")
    trusted = (factory,) if isinstance(factory, str) else ()
    try:
        with torch.device("meta"):
            base = attach_spec(build_base(spec, trusted_factories=trusted, model_fn=model_fn), spec.base())
        built = _replay(base, spec)   # outside the context: the transforms' index tensors stay on the CPU
    except CheckpointError:
        # some transforms read values (``.item()``), which meta tensors do not have: build for real
        try:
            built = build(spec, trusted_factories=trusted, model_fn=model_fn)
        except CheckpointError as e:
            raise CheckpointError(f"the model spec does not rebuild this model: {e}") from None
    want = {k: list(v.shape) for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}
    got = {k: list(v.shape) for k, v in built.state_dict().items() if isinstance(v, torch.Tensor)}
    if want == got:
        return
    kinds = [t.get("kind") for t in spec.transforms] or ["none"]
    where = f"the spec ({_arch_name(spec.arch)}, transforms: {', '.join(map(str, kinds))})"
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    shape = sorted(k for k in set(want) & set(got) if want[k] != got[k])
    if shape:
        k = shape[0]
        detail = f"tensor {k!r} is {want[k]} in the model but {got[k]} in what {where} builds"
    elif missing:
        detail = f"the model has tensor {missing[0]!r}, which {where} does not build"
    else:
        detail = f"{where} builds tensor {extra[0]!r}, which the model does not have"
    n = len(shape) + len(missing) + len(extra)
    raise CheckpointError(f"the model spec does not describe this model: {detail} ({n} tensor(s) differ); was it "
                          "pruned or changed after its spec was set? Call "
                          "describe() before pruning, or pass the matching spec=")


def _arch_name(arch: dict) -> str:
    return str(arch.get("model") or arch.get("factory"))


def read_versioned(path: str | os.PathLike, fmt: str, version: int, what: str, hint: str) -> dict:
    """Load a ``torch.save``-d dict whose ``format``/``version`` header must be ``fmt``/``version``.

    Weights only, no code executed. Every failure is a CheckpointError naming the file:
    missing, unreadable (corrupt or not a torch file), another format (``hint`` says
    what to use instead), or an unsupported version. ``what`` names the kind of file.
    """
    import torch

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such checkpoint file")
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch's unpickler raises assorted types on garbage input
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()   # torch's messages carry terminal colour codes
        if "Weights only load failed" in text and "Unsupported global" in text:
            # a readable torch file that pickles Python objects: typically torch.save(model) of a whole module
            raise CheckpointError(
                f"{p}: a pickled Python object (e.g. a whole model written by torch.save(model)), not a {what}; "
                "prunekit never unpickles objects because that can run code. To convert it, where you trust the "
                "file: model = torch.load(path, weights_only=False), then prunekit.checkpoint.save('model.pt', "
                "model) (spec=ModelSpec(...) for a model not built by prunekit)") from None
        unpickler = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)   # the cause, not torch's advice
        detail = (unpickler.group(1) if unpickler else text.splitlines()[0] if text else type(e).__name__)[:200]
        raise CheckpointError(f"{p}: not a readable {what} (corrupt or not a torch file: {detail})") from None
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        raise CheckpointError(f"{p}: not a {what} (no '{fmt}' header); {hint}")
    if payload.get("version") != version:
        raise CheckpointError(f"{p}: {what} format version {payload.get('version')!r} is not supported "
                              f"(this prunekit reads version {version})")
    return payload


def read_raw(path: str | os.PathLike) -> dict:
    """Load and validate the raw checkpoint dict (weights only, no code executed).

    A ``.safetensors`` checkpoint (see :func:`save`) reads as the same dict.
    """
    from prunekit.utils.safetensors_file import is_safetensors, read_safetensors

    p = Path(path)
    if not p.is_file() or not is_safetensors(p):
        return read_versioned(path, FORMAT, VERSION, "prunekit checkpoint",
                              "plain state_dicts need the architecture: see prunekit.checkpoint.save")
    state, header = read_safetensors(p)
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{p}: a .safetensors file without a prunekit model spec (no '{FORMAT}' metadata); "
                              "load its weights into your model with safetensors.torch.load_file")
    if header.get("version") != str(VERSION):
        raise CheckpointError(f"{p}: prunekit checkpoint format version {header.get('version')!r} is not supported "
                              f"(this prunekit reads version {VERSION})")
    try:
        spec, meta = json.loads(header.get("spec", "")), json.loads(header.get("meta", "{}"))
    except ValueError as e:
        raise CheckpointError(f"{p}: malformed spec or meta in the .safetensors metadata: {e}") from None
    return {"format": FORMAT, "version": VERSION, "spec": spec, "state_dict": state, "meta": meta,
            "weights_sha256": header.get("weights_sha256")}


def _fit_error(e: RuntimeError) -> str:
    """The first concrete problem of a ``load_state_dict`` error (its first line only names the class)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    detail = next((ln for ln in lines[1:]), lines[0] if lines else type(e).__name__)
    return detail[:300]


def load(path: str | os.PathLike, *, strict: bool = True, trusted_factories=(),
         model_fn: Callable | None = None) -> Checkpoint:
    """Rebuild the model stored at ``path`` and load its weights.

    ``trusted_factories``: names (``"module:function"``) or callables of the model
    factories the file may use; a file naming any other factory is refused (building
    it would run its code). Zoo models need none.
    ``model_fn``: your model's constructor (e.g. the class): the base is built by
    ``model_fn(**stored kwargs)``, every stored transform (a pruning plan) replayed, and
    the weights loaded, with no factory name resolved and nothing unpickled.

    Example:
        >>> ckpt = load("pruned.safetensors", model_fn=MyNet)   # doctest: +SKIP

    Raises:
        CheckpointError: the file is missing, corrupt, not a prunekit checkpoint,
            or its weights do not fit the architecture it describes.
    """
    p = Path(path)
    payload = read_raw(p)
    state = check_payload(payload, p)
    try:
        spec = ModelSpec.from_dict(payload["spec"])
        check_base_size(spec, sum(t.numel() for t in state.values()), str(p))
        model = build(spec, trusted_factories=trusted_factories, model_fn=model_fn)
    except CheckpointError as e:
        raise CheckpointError(e if str(e).startswith(str(p)) else f"{p}: {e}") from None
    try:
        model.load_state_dict(state, strict=strict)
    except RuntimeError as e:
        raise CheckpointError(f"{p}: weights do not fit the stored architecture: {_fit_error(e)}") from None
    model.eval()
    return Checkpoint(model=model, spec=get_spec(model) or spec, meta=dict(payload.get("meta") or {}),
                      train_state=payload.get("train_state"), path=p)


def check_finite(model, where: str) -> None:
    """Raise CheckpointError if a floating-point weight of ``model`` holds NaN or infinity, or a buffer NaN.

    Pruning ranks and compression clusters weights by value: on NaN they silently
    pick arbitrary channels or codebooks, so callers refuse such a model first.
    """
    from prunekit.validate import find_invalid_values

    bad = find_invalid_values(model)
    if bad is not None:
        name, count = bad
        raise CheckpointError(f"{where}: {name} holds {count} non-finite value(s) (NaN or infinity); the model "
                              "diverged or the file is damaged, so it cannot be pruned or compressed")


def weights_digest(state_dict) -> str:
    """SHA-256 (hex) of a state dict's names, dtypes, shapes and bytes, in name order.

    Stored by :func:`save` as ``weights_sha256`` and checked by :func:`load`:
    ``torch.load`` does not verify the zip CRCs, so a flipped byte inside a weight
    would otherwise load silently as a different weight.
    """
    import hashlib

    import torch

    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name]
        h.update(name.encode("utf-8") + b"\0")
        if isinstance(t, torch.Tensor):
            t = t.detach().cpu().contiguous()
            h.update(f"{t.dtype}{list(t.shape)}".encode())
            if t.numel():
                h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
        else:
            h.update(repr(t).encode("utf-8"))
    return h.hexdigest()


def check_payload(payload: dict, path) -> dict:
    """The state dict of a raw checkpoint payload after checking its fields' types and its weights' checksum.

    Raises a one-line CheckpointError naming ``path`` and the field.
    """
    import torch

    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise CheckpointError(f"{path}: 'state_dict' must map names to tensors, got {type(state).__name__}")
    if not isinstance(payload.get("spec"), dict):
        raise CheckpointError(f"{path}: 'spec' must be a mapping, got {type(payload.get('spec')).__name__}")
    if not isinstance(payload.get("meta", {}), dict):
        raise CheckpointError(f"{path}: 'meta' must be a mapping, got {type(payload.get('meta')).__name__}")
    if nesting_depth(payload.get("meta", {})) > MAX_NESTING:
        raise CheckpointError(f"{path}: 'meta' is nested deeper than {MAX_NESTING} levels")
    if payload.get("train_state") is not None and not isinstance(payload["train_state"], dict):
        raise CheckpointError(f"{path}: 'train_state' must be a mapping, got {type(payload['train_state']).__name__}")
    stored = payload.get("weights_sha256")
    if stored is not None and stored != weights_digest(state):  # absent in checkpoints written before it existed
        raise CheckpointError(f"{path}: weights checksum mismatch: the file was altered or corrupted")
    return state
