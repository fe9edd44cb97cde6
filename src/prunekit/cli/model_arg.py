"""The model a command works on: a checkpoint, ``--model package.module:factory``, or a ``torch.export`` ``.pt2``.

Every command that takes a model calls :func:`add_model_arguments` (the positional
``CKPT`` and ``--model`` with ``--model-kwargs``, ``--input-shape`` (repeatable, one per
positional input), ``--example-inputs`` and ``--weights``) and :func:`load_model`, which
returns a :class:`LoadedModel` with the attributes of a loaded
:class:`prunekit.checkpoint.Checkpoint` (``model``, ``spec``, ``meta``, ``path``) plus the
example inputs. A factory named on the command line is trusted (the user typed it) and
found on ``sys.path`` and in the current directory; the checkpoint a command writes
records it, and reloads with ``--trust-factory package.module:factory``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

_COMPANIONS = ("model_kwargs", "input_shape", "example_inputs", "weights")


def add_model_arguments(parser: argparse.ArgumentParser, *, positional: bool = True, model_flag: bool = True) -> None:
    """Add the model flags; ``positional``: the optional ``CKPT`` argument; ``model_flag``: ``--model`` itself."""
    if positional:
        parser.add_argument("checkpoint", metavar="CKPT", nargs="?",
                            help="prunekit checkpoint (.pt) or torch.export program (.pt2); or use --model")
    if model_flag:
        parser.add_argument("--model", metavar="MODULE:FACTORY",
                            help="a model of your own: 'package.module:function' returning an nn.Module (looked up on "
                                 "sys.path and in the current directory; it is imported and run), or a torch.export "
                                 ".pt2 file. See docs/your-model.md")
    parser.add_argument("--model-kwargs", metavar="JSON", help="keyword arguments of the --model factory, a JSON "
                                                               "object, e.g. '{\"width\": 16}'")
    parser.add_argument("--input-shape", metavar="C,H,W", action="append",
                        help="one sample's shape for the --model factory (no batch dimension); repeat it for a model "
                             "with several inputs, e.g. --input-shape 3,32,32 --input-shape 10 (default: the "
                             "dataset's sample shape where the command takes --data)")
    parser.add_argument("--example-inputs", metavar="FILE.pt",
                        help="example inputs for the --model factory instead of --input-shape: a tensor or a tuple "
                             "of tensors saved with torch.save, batch dimension first (read with weights_only=True)")
    parser.add_argument("--weights", metavar="FILE",
                        help="a state dict (.pt or .safetensors) loaded into the --model factory's model")


@dataclass
class LoadedModel:
    """What :func:`load_model` returns: the fields of a Checkpoint plus the model's example inputs.

    Attributes:
        model: the module (eval mode).
        spec: its ModelSpec (None for a .pt2 program, which cannot be saved as a checkpoint).
        meta: the checkpoint's meta (empty for a factory model or a program).
        path: the file the model came from (checkpoint, .pt2, or --weights file), or None.
        kind: ``"checkpoint"``, ``"factory"`` or ``"exported"``.
        name: a label for reports: the file name or the factory name.
        example: batch-1 example inputs: a tensor, or a tuple for several inputs.
        inputs: what to pass to :func:`prunekit.measure.profile` as ``input_shape`` (shapes or tensors).
    """

    model: object
    spec: object
    meta: dict
    path: Path | None
    kind: str
    name: str
    example: object
    inputs: object
    train_state: dict | None = None

    @property
    def input_shape(self) -> list[int]:
        """The first input's per-sample shape."""
        first = self.example[0] if isinstance(self.example, tuple) else self.example
        return list(first.shape[1:])

    def require_spec(self, what: str) -> None:
        """PrunekitError unless the model can be saved as a checkpoint (a .pt2 program cannot)."""
        from prunekit.errors import PrunekitError

        if self.spec is None:
            raise PrunekitError(
                f"{self.path}: a torch.export program cannot be {what}: its graph holds aten operations and raw "
                "parameters, not the layers prunekit slices and retrains. Use the nn.Module instead (--model "
                "package.module:factory, or a checkpoint) and export the result with 'prunekit export'")


def _parse_shape(text: str) -> list[int]:
    from prunekit.errors import PrunekitError

    parts = [s.strip() for s in re.split(r"[,x]", text.strip())]   # 3,32,32 or 3x32x32
    shape = [int(s) for s in parts] if all(s.isdigit() for s in parts) else []
    if not shape or any(s < 1 for s in shape) or len(shape) > 8:
        raise PrunekitError(f"--input-shape: expected 1 to 8 positive integers separated by commas, e.g. 3,32,32; "
                            f"got {text!r}")
    return shape


def _load_example_inputs(path) -> tuple:
    import torch

    from prunekit.errors import PrunekitError

    p = Path(path)
    if not p.is_file():
        raise PrunekitError(f"--example-inputs {p}: no such file")
    try:
        value = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:   # torch's unpickler raises assorted types on bad files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PrunekitError(f"--example-inputs {p}: not readable with weights_only=True ({first[:200]})") from None
    items = (value,) if isinstance(value, torch.Tensor) else value
    if not isinstance(items, (tuple, list)) or not items or not all(
            isinstance(t, torch.Tensor) and t.dim() > 0 and t.shape[0] > 0 for t in items):
        raise PrunekitError(f"--example-inputs {p}: expected a tensor or a tuple of tensors with a batch dimension "
                            "first")
    return tuple(t[:1] for t in items)


def _random_example(shapes) -> tuple:
    import torch

    # the seed and order prune has always used for its example input: plans stay reproducible
    return tuple(torch.randn(1, *s, generator=torch.Generator().manual_seed(i)) for i, s in enumerate(shapes))


def _check_runs(model, example, what: str) -> None:
    import torch

    from prunekit.errors import PrunekitError

    shapes = " + ".join("x".join(str(s) for s in t.shape[1:]) for t in example)
    try:
        with torch.no_grad():
            model.eval()(*example)
    except PrunekitError:
        raise
    except Exception as e:   # whatever the user's forward raises on inputs of the wrong shape
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PrunekitError(f"{what} does not accept inputs of shape {shapes} (batch 1): {type(e).__name__}: "
                            f"{first[:300]}; pass --input-shape (once per input) or --example-inputs") from None


def usage_error(args, message: str):
    """Exit as argparse does for a wrong command line (one line, status 2): the model arguments are checked together
    here, after parsing, because argparse cannot say "CKPT or --model, exactly one"."""
    import sys

    command = getattr(args, "command", None)
    where = f"prunekit {command}" if command else "prunekit"
    print(f"prunekit: error: {message} (see '{where} --help')", file=sys.stderr)
    raise SystemExit(2)


def _given(args, name):
    return getattr(args, name, None)


def load_model(args, *, data_shape=None, model_value: str | None = None) -> LoadedModel:
    """The model the command line names: ``CKPT``, ``--model package.module:factory`` or a ``.pt2`` program.

    ``data_shape``: the dataset's sample shape, the default input shape of a factory model.
    ``model_value``: the value of ``--model`` where the command gives that flag a wider meaning
    (train: a zoo name or checkpoint first); by default ``args.model``.
    Bad combinations and bad values are one-line PrunekitErrors naming the flag.
    """
    from prunekit.cli.trust import trusted
    from prunekit.errors import PrunekitError
    from prunekit.models.user import cwd_on_path

    ckpt_arg = _given(args, "checkpoint")
    model_arg = model_value if model_value is not None else _given(args, "model")
    if ckpt_arg and model_arg:
        hint = f"; a checkpoint written from {model_arg} loads with --trust-factory {model_arg}" \
            if ":" in str(model_arg) else ""
        usage_error(args, f"give either a checkpoint ({ckpt_arg}) or --model {model_arg}, not both{hint}")
    if not ckpt_arg and not model_arg:
        usage_error(args, "no model: pass a checkpoint CKPT, a .pt2 program, or --model package.module:factory")
    source = ckpt_arg or model_arg
    is_program = str(source).endswith(".pt2")
    companions = [n for n in _COMPANIONS if _given(args, n)]
    if (ckpt_arg or is_program) and companions:
        flag = "--" + companions[0].replace("_", "-")
        raise PrunekitError(f"{flag} applies to --model package.module:factory, not to the file {source}")
    if is_program:
        from prunekit.models.user import load_exported

        module, inputs = load_exported(source)
        example = inputs[0] if len(inputs) == 1 else tuple(inputs)
        return LoadedModel(model=module, spec=None, meta={}, path=Path(source), kind="exported",
                           name=Path(source).name, example=example, inputs=tuple(inputs))
    if ckpt_arg:
        from prunekit import checkpoint

        with cwd_on_path():   # a trusted factory of the user's own, beside their files
            ckpt = checkpoint.load(ckpt_arg, trusted_factories=trusted(args))
        shapes = ckpt.spec.input_shapes
        example = _random_example(shapes)
        return LoadedModel(model=ckpt.model, spec=ckpt.spec, meta=ckpt.meta, path=ckpt.path, kind="checkpoint",
                           name=ckpt.path.name, example=example[0] if len(example) == 1 else example,
                           inputs=ckpt.spec.input_shape if len(shapes) == 1 else shapes,
                           train_state=ckpt.train_state)
    return _load_factory(args, model_arg, data_shape)


def _load_factory(args, name: str, data_shape) -> LoadedModel:
    from prunekit.errors import PrunekitError
    from prunekit.models.user import from_factory, import_factory

    if ":" not in name:
        hint = "no such file" if not os.path.exists(name) else "a .pt checkpoint is the positional CKPT argument"
        raise PrunekitError(f"--model {name!r}: expected 'package.module:function' (e.g. mynet:build) or a .pt2 "
                            f"file ({hint})")
    import_factory(name)   # the spec's errors first: form, module, attribute, callable
    kwargs = {}
    if _given(args, "model_kwargs"):
        try:
            kwargs = json.loads(args.model_kwargs)
        except json.JSONDecodeError as e:
            raise PrunekitError(f"--model-kwargs: not JSON ({e}): {args.model_kwargs!r}") from None
        if not isinstance(kwargs, dict):
            raise PrunekitError(f"--model-kwargs: expected a JSON object such as '{{\"width\": 16}}', got "
                                f"{args.model_kwargs!r}")
    if _given(args, "example_inputs") and _given(args, "input_shape"):
        raise PrunekitError("give either --input-shape or --example-inputs, not both")
    if _given(args, "example_inputs"):
        example = _load_example_inputs(args.example_inputs)
        shapes = [list(t.shape[1:]) for t in example]
        inputs = example
    else:
        if _given(args, "input_shape"):
            shapes = [_parse_shape(s) for s in args.input_shape]
        elif data_shape is not None:
            shapes = [list(data_shape)]
        else:
            raise PrunekitError(f"--model {name} needs the input shape: --input-shape C,H,W (once per input) or "
                                "--example-inputs FILE.pt")
        example = _random_example(shapes)
        inputs = shapes[0] if len(shapes) == 1 else shapes
    model = from_factory(name, kwargs, input_shape=shapes, weights=_given(args, "weights"))
    _check_runs(model, example, f"the model of {name}")
    weights = _given(args, "weights")
    return LoadedModel(model=model.eval(), spec=model.prunekit_spec, meta={}, path=Path(weights) if weights else None,
                       kind="factory", name=name, example=example[0] if len(example) == 1 else example,
                       inputs=inputs)


def check_data_shape(loaded: LoadedModel, data_shape, data_name: str) -> None:
    """PrunekitError if the model's (first) input shape is not the dataset's sample shape."""
    from prunekit.errors import PrunekitError

    if isinstance(loaded.example, tuple):
        raise PrunekitError(f"{loaded.name} takes {len(loaded.example)} inputs; dataset {data_name!r} gives one")
    if list(loaded.input_shape) != list(data_shape):
        raise PrunekitError(f"{loaded.name}: the model takes inputs {tuple(loaded.input_shape)} but dataset "
                            f"{data_name!r} has {tuple(data_shape)}")


def names_model(args) -> bool:
    """Whether the command line names its model other than by a prunekit checkpoint CKPT.

    True for ``--model``, a ``.pt2`` program, or no model at all (so that :func:`load_model`
    reports what is missing); commands with their own checkpoint loader (masks, ...) keep it otherwise.
    """
    ckpt = getattr(args, "checkpoint", None)
    return bool(getattr(args, "model", None)) or not ckpt or str(ckpt).endswith(".pt2")
