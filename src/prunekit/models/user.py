"""Models of your own: build one from a factory with its spec attached, load its weights, or load a ``.pt2``.

prunekit plans, saves and reloads a model through its :class:`~prunekit.spec.ModelSpec`
(``model.prunekit_spec``): how to rebuild it (a zoo name, or a ``"module:function"``
factory with JSON keyword arguments) and the shape of each input. Zoo models get it from
:func:`prunekit.models.create`; a model of your own gets it from :func:`from_factory`, so
that ``prunekit.checkpoint.save(path, model)`` records the factory and a later
``checkpoint.load(path, trusted_factories=["mynet:build"])`` (CLI: ``--trust-factory
mynet:build``) rebuilds it. The CLI's ``--model mynet:build`` is this function.

Example:
    >>> from prunekit import models
    >>> net = models.from_factory("mynet:build", {"width": 16}, input_shape=(3, 32, 32))   # doctest: +SKIP
    >>> net.prunekit_spec.arch                                                             # doctest: +SKIP
    {'factory': 'mynet:build', 'kwargs': {'width': 16}}
"""
from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Callable, Iterator

from prunekit.errors import PrunekitError
from prunekit.spec import ModelSpec, attach_spec

__all__ = ["ExportedModule", "from_factory", "import_factory", "load_exported", "load_weights"]

_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


@contextlib.contextmanager
def cwd_on_path() -> Iterator[None]:
    """The current directory on ``sys.path`` for the duration (a factory module beside the user's files).

    ``python -m`` puts it there already, the ``prunekit`` console script does not; the
    user named the module on the command line, so looking for it here is what they expect.
    It goes last, so that a file in the current directory never shadows an installed package.
    """
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.append(cwd)
    try:
        yield
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def import_factory(name: str) -> Callable:
    """The callable ``"package.module:function"`` names, imported from ``sys.path`` and the current directory.

    Calling this trusts the module: importing it runs its code (use it for names the
    user typed, never for names read from a file). Errors are one-line PrunekitErrors
    naming what is wrong: the form, the module, the attribute, or a value that is not callable.

    Example:
        >>> import_factory("collections:OrderedDict").__name__
        'OrderedDict'
    """
    if not isinstance(name, str) or name.count(":") != 1:
        raise PrunekitError(f"a model factory is named 'package.module:function' (e.g. mynet:build), got {name!r}")
    mod_name, _, attr = name.partition(":")
    if not _DOTTED.fullmatch(mod_name) or not _DOTTED.fullmatch(attr):
        raise PrunekitError(f"model factory {name!r}: 'package.module:function' must be Python names on both sides "
                            "of the colon")
    with cwd_on_path():
        try:
            obj = importlib.import_module(mod_name)
        except ModuleNotFoundError as e:
            where = "sys.path and the current directory"
            raise PrunekitError(f"model factory {name!r}: cannot import module {mod_name!r} ({e}; looked on "
                                f"{where} {os.getcwd()})") from None
        except Exception as e:   # the user's module failed while importing: say so in one line
            raise PrunekitError(f"model factory {name!r}: importing {mod_name!r} raised {type(e).__name__}: "
                                f"{str(e).splitlines()[0] if str(e) else ''}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise PrunekitError(f"model factory {name!r}: module {mod_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise PrunekitError(f"model factory {name!r} is not callable (it is a {type(obj).__name__})")
    return obj


def _shapes(input_shape) -> list[list[int]]:
    """One shape or a list of shapes -> a list of shapes, each of positive ints."""
    nested = isinstance(input_shape, (list, tuple)) and input_shape and all(isinstance(s, (list, tuple))
                                                                           for s in input_shape)
    if nested:
        shapes = input_shape
    else:
        shapes = [input_shape]
    out = []
    for shape in shapes:
        try:
            dims = [int(s) for s in shape]
        except (TypeError, ValueError):
            raise PrunekitError(f"input shape must be positive integers, e.g. (3, 32, 32), got {shape!r}") from None
        if not dims or any(d < 1 or isinstance(d, bool) for d in dims):
            raise PrunekitError(f"input shape must be positive integers, e.g. (3, 32, 32), got {shape!r}")
        out.append(dims)
    return out


def from_factory(factory, kwargs: dict | None = None, *, input_shape, weights=None):
    """Build a model of your own with the spec prunekit needs to plan, save and reload it.

    Args:
        factory: ``"package.module:function"`` (imported from ``sys.path`` and the current
            directory) or the function itself (defined in an importable module, not in
            ``__main__``: a checkpoint stores its name to rebuild it).
        kwargs: keyword arguments of the factory; JSON values (they are stored in the checkpoint).
        input_shape: one sample's shape without the batch dimension, e.g. ``(3, 32, 32)``; a list
            of shapes for a model with several positional inputs, e.g. ``[(3, 32, 32), (10,)]``.
        weights: optional state-dict file (``.pt`` or ``.safetensors``) loaded into the model.

    Returns:
        The module, with ``model.prunekit_spec`` set, in eval mode if weights were loaded.

    Example:
        >>> net = from_factory("mynet:build", {"width": 16}, input_shape=(3, 32, 32))   # doctest: +SKIP
        >>> plan = prunekit.plan(net, torch.randn(1, 3, 32, 32), macs=0.5)              # doctest: +SKIP
        >>> checkpoint.save("small.pt", plan.apply(net))   # reload: trusted_factories=["mynet:build"]  # doctest: +SKIP
    """
    kwargs = dict(kwargs or {})
    try:
        json.dumps(kwargs)
    except (TypeError, ValueError) as e:
        raise PrunekitError(f"model factory kwargs must be JSON values (they are stored in the checkpoint): {e}") \
            from None
    if isinstance(factory, str):
        name, fn = factory, import_factory(factory)
    elif callable(factory):
        name, fn = f"{factory.__module__}:{factory.__qualname__}", factory
        if factory.__module__ == "__main__" or "<locals>" in factory.__qualname__:
            raise PrunekitError(f"model factory {name!r} is not importable by name (defined in a script or inside "
                                "a function); move it to a module, e.g. mynet.py, and pass 'mynet:build'")
    else:
        raise PrunekitError(f"factory must be 'package.module:function' or a function, got {factory!r}")
    shapes = _shapes(input_shape)
    try:
        model = fn(**kwargs)
    except TypeError as e:
        raise PrunekitError(f"model factory {name!r} with kwargs {kwargs}: {e}") from None
    import torch.nn as nn

    if not isinstance(model, nn.Module):
        raise PrunekitError(f"model factory {name!r} returned a {type(model).__name__}, not a torch nn.Module")
    spec = ModelSpec(arch={"factory": name, "kwargs": kwargs}, input_shape=shapes[0], extra_input_shapes=shapes[1:])
    attach_spec(model, spec)
    if weights is not None:
        load_weights(model, weights)
    return model


def load_weights(model, path) -> None:
    """Load a state-dict file into ``model``: ``.safetensors``, or a ``.pt`` read with ``weights_only=True``.

    A ``.pt`` may hold the state dict itself or a dict with a ``"state_dict"`` entry (a common
    training-checkpoint layout). Missing or unexpected keys and wrong shapes are one-line
    PrunekitErrors naming the file.
    """
    import torch

    p = Path(path)
    if not p.is_file():
        raise PrunekitError(f"{p}: no such weights file")
    if p.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise PrunekitError(f"{p}: reading .safetensors needs the safetensors package "
                                "(pip install safetensors)") from None
        try:
            state = load_file(str(p))
        except Exception as e:   # safetensors raises its own error types on bad files
            raise PrunekitError(f"{p}: not a readable safetensors file ({e})") from None
    else:
        try:
            state = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as e:   # torch's unpickler raises assorted types on garbage or pickled objects
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise PrunekitError(f"{p}: not a state dict readable with weights_only=True ({first[:200]})") from None
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise PrunekitError(f"{p}: not a state dict (a mapping of names to tensors)")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        lines = [s.strip() for s in str(e).splitlines() if s.strip()]
        raise PrunekitError(f"{p}: the weights do not fit the model: {' '.join(lines[1:3]) or lines[0]}"[:400]) \
            from None
    model.eval()


def _exported_module_class():
    import torch.nn as nn

    class ExportedModule(nn.Module):
        """A ``torch.export`` program as a module prunekit can measure and evaluate.

        ``ExportedProgram.module()`` refuses ``.train()``/``.eval()`` (the mode is fixed at
        export time); prunekit's measurements switch modes, so this wrapper only records the flag.
        """

        def __init__(self, program, fixed_batch: int | None = None):
            super().__init__()
            self.program = program.module()
            self.fixed_batch = fixed_batch   # the batch size a program exported without a dynamic batch takes

        def forward(self, *args, **kwargs):
            try:
                return self.program(*args, **kwargs)
            except AssertionError as e:   # torch.export's input guards (shapes fixed at export time)
                hint = (f"; it was exported with a fixed batch size of {self.fixed_batch} (export with a dynamic "
                        "batch dimension to run others)") if self.fixed_batch else ""
                raise PrunekitError(f"the exported program refuses these inputs ({str(e).splitlines()[0]}){hint}") \
                    from None

        def train(self, mode: bool = True):
            self.training = mode
            return self

    return ExportedModule


_CLASS = []


def __getattr__(name: str):
    # the wrapper class needs torch; it is made on first use so that importing this module stays light
    if name == "ExportedModule":
        if not _CLASS:
            _CLASS.append(_exported_module_class())
        return _CLASS[0]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _size(s) -> int:
    try:
        return int(s)
    except (TypeError, ValueError, RuntimeError):   # a dynamic (symbolic) size: one sample of it
        return 1


def load_exported(path):
    """Load a ``torch.export`` ``.pt2`` file: ``(module, example_inputs)``.

    The module (an :class:`ExportedModule`) runs the exported program (``module.fixed_batch``: the
    batch size a program exported without a dynamic batch dimension accepts, else None); the example inputs are
    the ones stored at export time, else zeros of the shapes and dtypes in the program's input
    specs. ``torch.export.load`` may unpickle parts of the file (it falls back to
    ``weights_only=False``), so load only programs you trust. It can be profiled and evaluated;
    it cannot be pruned (its graph holds aten ops and raw parameters, not the layers prunekit
    slices): prune the ``nn.Module`` and export the result.
    """
    import torch

    p = Path(path)
    if not p.is_file():
        raise PrunekitError(f"{p}: no such .pt2 file")
    try:
        program = torch.export.load(str(p))
    except Exception as e:   # a zip of another kind, a truncated file, another torch's format
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PrunekitError(f"{p}: not a readable torch.export program ({first[:200]})") from None
    user = set(program.graph_signature.user_inputs)
    vals = [n.meta.get("val") for n in program.graph.nodes if n.op == "placeholder" and n.name in user]
    if not vals or not all(isinstance(v, torch.Tensor) and v.dim() > 0 for v in vals):
        raise PrunekitError(f"{p}: the program's inputs are not all batched tensors; prunekit cannot make example "
                            "inputs for it")
    stored = getattr(program, "example_inputs", None)
    if stored and stored[0]:
        inputs = tuple(stored[0])
    else:
        inputs = tuple(torch.zeros([_size(s) for s in v.shape], dtype=v.dtype) for v in vals)
    # a fixed batch: every input's first size is a plain int, the same for all (a dynamic one is a SymInt)
    firsts = [v.shape[0] for v in vals]
    fixed = firsts[0] if all(type(b) is int for b in firsts) and len(set(firsts)) == 1 else None
    if not all(isinstance(t, torch.Tensor) for t in inputs):
        raise PrunekitError(f"{p}: the stored example inputs are not all tensors")
    module = __getattr__("ExportedModule")(program, fixed)
    return module, inputs
