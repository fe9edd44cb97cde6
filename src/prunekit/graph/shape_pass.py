"""The capture's shape pass: the shape of every value of a traced graph, computed as cheaply as it can be.

The analysis needs the shape and dtype of every tensor (and the value of every
Python int, bool or size) on the example inputs, never the numbers inside.
:func:`record_shapes` tries its passes in order, each only when the one before
cannot run the graph:

* ``meta``: inputs and parameters become meta tensors; convolutions, norms,
  activations, linear layers and equal-shape adds get their output shape from
  the rules of :mod:`prunekit.graph.shapes`, other ``torch.nn`` layers run on
  meta copies of their weights (:func:`~prunekit.graph.shapes.meta_module_call`),
  every other op runs its meta kernel. Nothing is computed and nothing of the
  activations' size is allocated.
* ``fake``: the graph under ``FakeTensorMode`` (tensors with a shape and a
  device but no data, what ``torch.export`` traces with), which also covers
  tensors made mid-graph without a device (``torch.arange(n)``). Not in the
  default order: every op then dispatches through Python, and on the zoo models
  that was several times slower than the real forward. Not used when
  the graph calls a user module kept whole (its forward could keep a fake
  tensor in the model, a cache).
* ``real``: the forward on the example inputs; values that depend on the data
  (a boolean mask, ``.item()``, ``nonzero``) need it. Its peak memory is the
  model's own forward (the interpreter frees each value after its last use).

The :class:`ShapeRecord` says which pass ran and why the cheaper ones did not
(the first node each could not run, with its error). Every pass records the
same shapes and values: the tests compare them node by node on zoo, test and
timm models.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

from prunekit.errors import UnsupportedModelError

PASSES = ("meta", "fake", "real")
DEFAULT_PASSES = ("meta", "real")


@dataclass
class ShapeRecord:
    """The recorded values of a graph and how they were obtained.

    Attributes:
        meta: node -> summary of its value (:func:`summarize`).
        how: the pass that ran the whole graph: ``"meta"``, ``"fake"`` or ``"real"``.
        why: why the cheaper passes could not, ``"meta: node conv (Conv2d): ..."``
            joined by ``"; "`` (empty when the meta pass ran).
    """

    meta: dict
    how: str
    why: str = ""

    def describe(self) -> str:
        """``"meta"``, or the pass that ran and why, in one line."""
        return self.how if not self.why else f"{self.how} ({self.why})"


def summarize(value):
    """Shape-level summary of a traced value: tensors become ``("tensor", shape, dtype)``."""
    import torch

    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(int(s) for s in value.shape), value.dtype)
    if isinstance(value, torch.Size):
        return tuple(int(s) for s in value)
    if isinstance(value, list):
        return [summarize(v) for v in value]
    if isinstance(value, tuple):
        return tuple(summarize(v) for v in value)
    if isinstance(value, dict):
        return {k: summarize(v) for k, v in value.items()}
    if isinstance(value, (bool, int, float, str, type(None))):
        return value
    return ("other", type(value).__name__)


def record_shapes(gm, example_inputs: tuple, passes=DEFAULT_PASSES) -> ShapeRecord:
    """Run ``gm`` once with the cheapest pass of ``passes`` that can, recording every node's value.

    Args:
        gm: the traced ``torch.fx.GraphModule`` (eval mode and ``torch.no_grad()``
            are the caller's).
        example_inputs: positional inputs (real tensors).
        passes: the passes to try, in order (a subset of ``("meta", "fake", "real")``;
            default ``("meta", "real")``).

    Raises:
        UnsupportedModelError: ``"fake"`` is the last pass and the graph calls a user module kept whole.
        whatever the last pass raises (the real forward's error on inputs that do not fit).

    Example:
        >>> import torch, torch.fx as fx
        >>> gm = fx.symbolic_trace(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten()))
        >>> rec = record_shapes(gm, (torch.randn(1, 3, 5, 5),))
        >>> rec.how, [v for n, v in rec.meta.items() if n.op == "output"]
        ('meta', [('tensor', (1, 36), torch.float32)])
    """
    unknown = [p for p in passes if p not in PASSES]
    if unknown or not passes:
        raise ValueError(f"passes must be a non-empty subset of {PASSES}, got {passes!r}")
    reasons = []
    for i, how in enumerate(passes):
        last = i == len(passes) - 1
        skip = _fake_unsafe(gm) if how == "fake" else None
        if skip is not None:
            if last:
                raise UnsupportedModelError(f"the fake shape pass cannot run this graph: {skip}")
            reasons.append(f"fake: {skip}")
            continue
        recorder = _recorders()[how](gm)
        try:
            recorder.record(example_inputs)
        except Exception as e:  # noqa: BLE001 - any failure means: the next pass, or the caller's error
            if last:
                raise
            node = recorder.current
            where = f"node {node.name} ({_op(gm, node)})" if node is not None else "inputs"
            text = str(e).strip().splitlines()
            reasons.append(f"{how}: {where}: {type(e).__name__}: {(text[0] if text else '')[:160]}")
            continue
        return ShapeRecord(recorder.values, how, "; ".join(reasons))
    raise AssertionError("unreachable: the last pass returns or raises")


def _op(gm, node) -> str:
    if node.op == "call_module":
        try:
            return type(gm.get_submodule(node.target)).__name__
        except AttributeError:
            return str(node.target)
    if node.op in ("call_function", "call_method"):
        return getattr(node.target, "__name__", str(node.target))
    return node.op


def _fake_unsafe(gm) -> str | None:
    """Why fake tensors must not run ``gm`` (a user module's own forward among its nodes), or None."""
    for node in gm.graph.nodes:
        if node.op == "call_module":
            mod = type(gm.get_submodule(node.target)).__module__
            if not (mod.startswith("torch.nn") or mod.startswith("torch.ao.nn")):
                return (f"node {node.name} calls a {mod} module kept whole, whose forward could keep fake tensors; "
                        "not tried")
    return None


@functools.lru_cache(maxsize=1)
def _recorders() -> dict:
    """The recorder classes (defined on first use: torch is imported lazily)."""
    import torch
    import torch.fx as fx

    from prunekit.graph.shapes import NoShapeRule, meta_leaf_output, meta_module_call, meta_same_shape_binary

    class Recorder(fx.Interpreter):
        """Runs the graph on real tensors, keeping each node's summary."""

        def __init__(self, gm):
            super().__init__(gm)
            self.values: dict = {}
            self.current = None

        def run_node(self, n):
            self.current = n
            result = super().run_node(n)
            self.values[n] = summarize(result)
            return result

        def record(self, inputs) -> None:
            self.run(*inputs)
            self.current = None

    class MetaRecorder(Recorder):
        # parameters and inputs become meta tensors and the costly leaves get their
        # output shape from graph.shapes; anything else raises (a data-dependent value,
        # a leaf without a rule, a real tensor made mid-graph) and the next pass runs
        def get_attr(self, target, args, kwargs):
            value = super().get_attr(target, args, kwargs)
            return value.to("meta") if isinstance(value, torch.Tensor) else value

        def call_module(self, target, args, kwargs):
            module = self.fetch_attr(target)
            try:
                return meta_leaf_output(module, args, kwargs)
            except NoShapeRule:
                return meta_module_call(module, args, kwargs)

        def call_function(self, target, args, kwargs):
            out = meta_same_shape_binary(target, args, kwargs)
            return super().call_function(target, args, kwargs) if out is None else out

        def record(self, inputs) -> None:
            super().record([a.to("meta") if isinstance(a, torch.Tensor) else a for a in inputs])

    class FakeRecorder(Recorder):
        # every op runs under FakeTensorMode; parameters stay real and are seen as fake
        # where an op uses them (allow_non_fake_inputs), so nothing of the model is copied
        def record(self, inputs) -> None:
            from torch._subclasses.fake_tensor import FakeTensorMode

            mode = FakeTensorMode(allow_non_fake_inputs=True)
            with mode:
                fake = [mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in inputs]
                super().record(fake)

    return {"real": Recorder, "meta": MetaRecorder, "fake": FakeRecorder}
