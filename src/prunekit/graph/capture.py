"""Capture a model as a torch.fx graph plus the concrete shape of every value.

The capture uses :func:`torch.fx` symbolic tracing with two additions:

* **Leaf fallback.** A user submodule whose ``forward`` cannot be traced
  (data-dependent control flow, unsupported Python) is retried as an opaque
  leaf; the analysis then keeps its input and output channels whole and warns
  once, naming it. Only a failure in the root ``forward`` itself is an error.
* **Attribute tags.** While a user module's ``forward`` is traced, its plain
  ``int`` attributes (``num_heads``, ``head_dim``, ``groups``...) are replaced
  by :class:`TaggedInt` values. A tag that reaches a ``reshape``/``view`` size
  argument tells the analysis that this size follows the attribute, which the
  surgery then updates (so a pruned model's forward never uses a stale head
  count). A tag used any other way (arithmetic, comparisons, ``range``) is
  marked *misused* and its dimension is kept whole.

Shapes come from running the traced graph once on the example inputs under
``torch.no_grad()`` in eval mode (a recording :class:`torch.fx.Interpreter`, like
:class:`torch.fx.passes.shape_prop.ShapeProp` but also keeping Python ints), on
meta or fake tensors where it can (:mod:`prunekit.graph.shape_pass`).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

from prunekit.errors import UnsupportedModelError
from prunekit.graph.shape_pass import DEFAULT_PASSES, record_shapes, summarize

_MAX_RETRIES = 64


@dataclass
class AttrTag:
    """Record of one module attribute seen during tracing."""

    module: str
    attr: str
    value: int
    misused: bool = False
    reasons: list = field(default_factory=list)

    def misuse(self, why: str) -> None:
        self.misused = True
        if len(self.reasons) < 3:
            self.reasons.append(why)


class TaggedInt(int):
    """An ``int`` that remembers which module attribute it came from.

    Arithmetic and comparisons return plain ints and mark the tag misused,
    because the analysis cannot follow the attribute through them.
    """

    tag: AttrTag

    def __new__(cls, value: int, tag: AttrTag):
        obj = int.__new__(cls, value)
        obj.tag = tag
        return obj

    def __reduce__(self):  # deepcopy/pickle of a graph turns it back into an int
        return (int, (int(self),))


def _make_misusing(name):
    base = getattr(int, name)

    def method(self, *args):
        self.tag.misuse(name)
        return base(int(self), *(int(a) if isinstance(a, TaggedInt) else a for a in args))

    method.__name__ = name
    return method


for _name in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__floordiv__",
              "__rfloordiv__", "__truediv__", "__rtruediv__", "__mod__", "__rmod__", "__pow__", "__rpow__",
              "__neg__", "__lt__", "__le__", "__gt__", "__ge__", "__eq__", "__ne__", "__bool__", "__index__",
              "__lshift__", "__rshift__", "__and__", "__or__", "__xor__", "__divmod__", "__float__"):
    setattr(TaggedInt, _name, _make_misusing(_name))
TaggedInt.__hash__ = int.__hash__


def _is_torch_nn(module) -> bool:
    mod = type(module).__module__
    return mod.startswith("torch.nn") or mod.startswith("torch.ao.nn")


@dataclass
class Capture:
    """A traced model.

    Attributes:
        gm: the fx GraphModule (it shares submodules and parameters with the model).
        meta: node -> summary of its value (see :func:`summarize`).
        opaque: qualified names of user modules kept as opaque leaves, with the reason.
        tags: (module, attr) -> :class:`AttrTag`.
        kind: ``"fx"`` or ``"export"``.
        param_placeholders: export graphs: placeholder name -> parameter or buffer name.
        shape_pass: how the shapes were recorded (:meth:`ShapeRecord.describe
            <prunekit.graph.shape_pass.ShapeRecord.describe>`; ``"export"`` for torch.export's own).
    """

    gm: object
    meta: dict
    opaque: dict
    tags: dict
    kind: str = "fx"
    param_placeholders: dict = field(default_factory=dict)
    shape_pass: str = "meta"


def capture(model, example_inputs: tuple, is_handled_module, leaf_names=(), tracer: str = "auto",
            shapes: str = "auto") -> Capture:
    """Trace ``model`` and record the shape of every node on ``example_inputs``.

    Args:
        model: the ``nn.Module``.
        example_inputs: positional inputs (a tuple).
        is_handled_module: predicate: should this module be a leaf the analysis knows?
        leaf_names: qualified names to keep opaque from the start.
        tracer: ``"auto"`` (fx, torch.export when fx cannot trace the root forward),
            ``"fx"`` (never fall back) or ``"export"`` (always torch.export).
        shapes: ``"auto"`` (meta tensors, the real forward where they cannot run;
            see :mod:`prunekit.graph.shape_pass`) or ``"real"`` (always the real forward).

    Raises:
        UnsupportedModelError: the root forward cannot be traced, or the example
            inputs do not fit the model.
    """
    import torch
    import torch.fx as fx

    if tracer not in ("auto", "fx", "export"):
        raise ValueError(f"tracer must be 'auto', 'fx' or 'export', got {tracer!r}")
    if shapes not in ("auto", "real"):
        raise ValueError(f"shapes must be 'auto' or 'real', got {shapes!r}")
    if tracer == "export":
        return _capture_export(model, example_inputs, type(model).__name__, "tracer='export' requested")
    opaque = {name: "requested" for name in leaf_names}
    tags: dict = {}

    class Tracer(fx.Tracer):
        def __init__(self, autowrap=()):
            super().__init__(autowrap_functions=autowrap)
            self.failed = None
            self.paths: dict = {}

        def create_node(self, *args, **kwargs):
            # remember the user's source line of every node (cheaper than fx's
            # record_stack_traces, which formats the whole stack each time): a
            # frozen region then names the line that made it
            node = super().create_node(*args, **kwargs)
            node.meta["prunekit_line"] = _caller_line(self.paths)
            return node

        def is_leaf_module(self, m, qualname):
            if qualname in opaque:
                return True
            if is_handled_module(m):
                return True
            if _is_torch_nn(m):
                # torch.nn containers and composite layers without a handler are traced
                # through; childless ones are opaque leaves (the analysis warns).
                return not any(True for _ in m.children())
            return False

        def call_module(self, m, forward, args, kwargs):
            qualname = self.path_of_module(m)
            leaf = self.is_leaf_module(m, qualname)
            try:
                return super().call_module(m, forward, args, kwargs)
            except Exception as e:
                if self.failed is None and not leaf:
                    self.failed = (qualname, type(m).__name__, e)
                raise

    root_name = type(model).__name__
    graph = None
    autowrap = ()
    for _ in range(_MAX_RETRIES):
        tr = Tracer(autowrap)
        # every traced-through user module's int attributes are tagged for the whole trace,
        # not only while its forward runs: a parent may call its method (timm's
        # ``self.rel_pos.get_bias()``), and the sizes read there must follow pruning too
        saved = _tag_attributes(model, tags, lambda name, m: name in opaque or is_handled_module(m))
        try:
            graph = tr.trace(model)
            break
        except Exception as e:  # fx raises many types on untraceable Python
            _restore(saved)  # before torch.export may run the model
            failed = tr.failed
            if failed is None or failed[0] in opaque or failed[0] == "":
                if not autowrap and library_notrace_functions():
                    # the root forward branches on sizes: once more with the helpers the model's
                    # library declares untraceable kept as single calls (only then: wrapping them
                    # everywhere would hide ops fx follows well, e.g. window partitions)
                    autowrap = library_notrace_functions()
                    continue
                if tracer == "fx":
                    raise UnsupportedModelError(
                        f"torch.fx cannot trace the forward of {root_name}: {_first_line(e)}. Move data-dependent "
                        "code into a submodule (kept whole), pass that module in ignored_layers=[...], or use "
                        "tracer='auto' to fall back to torch.export") from None
                return _capture_export(model, example_inputs, root_name, _first_line(e))
            if not autowrap and _fails_in(failed[2], library_notrace_functions()):
                # the submodule fails inside a helper its library declares untraceable
                # (SAM's ``get_rel_pos``): trace again with those helpers kept as single calls
                autowrap = library_notrace_functions()
                continue
            opaque[failed[0]] = f"{failed[1]}: {_first_line(failed[2])}"
        finally:
            _restore(saved)
    if graph is None:
        raise UnsupportedModelError(f"tracing {root_name} did not converge after {_MAX_RETRIES} retries")
    if tracer == "auto" and _mostly_opaque(model, opaque):
        # fx could only trace around the bulk of the model (HF transformers models,
        # whose forwards branch on tensor properties): torch.export sees inside it.
        # Its sizes are constants, so it prunes less per op, but far more than a
        # model kept whole; when it fails too, the fx capture stands.
        try:
            return _capture_export(model, example_inputs, root_name,
                                   f"{len(opaque)} submodules holding most parameters are untraceable")
        except UnsupportedModelError:
            pass
    gm = _graph_module(tr.root, graph, root_name)

    training = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            record = record_shapes(gm, example_inputs, passes=DEFAULT_PASSES if shapes == "auto" else ("real",))
    except Exception as e:
        graph_error = f"{type(e).__name__}: {_first_line(e)}"
        eager_error = _eager_error(model, example_inputs)
        if eager_error is not None:
            raise UnsupportedModelError(
                f"running {root_name} on the example inputs failed ({eager_error}); "
                "check that example_inputs have the shapes the model expects") from None
        # the model runs but its fx graph does not: tracing specialised a Python
        # branch the example inputs take differently (e.g. on an optional argument)
        if tracer == "fx":
            raise UnsupportedModelError(
                f"the torch.fx graph of {root_name} does not run on the example inputs ({graph_error}); "
                "use tracer='auto' to fall back to torch.export") from None
        return _capture_export(model, example_inputs, root_name, f"its fx graph does not run ({graph_error})")
    finally:
        for m, t in training.items():
            m.training = t
    return Capture(gm=gm, meta=record.meta, opaque=opaque, tags=tags, shape_pass=record.describe())


def _tag_attributes(model, tags: dict, skip) -> list:
    """Replace the int attributes of user modules by :class:`TaggedInt` (lists and tuples of ints element-wise).

    The root, torch.nn modules and ``skip(name, module)`` ones are left alone.
    Returns ``(module, attribute, original value)`` for restoring them.
    """
    saved = []
    for qualname, m in model.named_modules():
        if not qualname or _is_torch_nn(m) or skip(qualname, m):
            continue
        for k, v in list(vars(m).items()):
            if k.startswith("_"):
                continue
            if type(v) is int:
                tag = tags.setdefault((qualname, k), AttrTag(qualname, k, v))
                saved.append((m, k, v))
                object.__setattr__(m, k, TaggedInt(v, tag))
            elif type(v) in (list, tuple) and v and all(type(e) is int for e in v):
                # sizes held in a list or tuple (timm MixedConv2d's ``splits``, RelPosMlp's
                # ``bias_shape``): each element is tagged ``name[i]`` so the plan can update it
                saved.append((m, k, v))
                object.__setattr__(m, k, type(v)(
                    TaggedInt(e, tags.setdefault((qualname, f"{k}[{i}]"), AttrTag(qualname, f"{k}[{i}]", e)))
                    for i, e in enumerate(v)))
    return saved


def _fails_in(error: BaseException, functions: tuple) -> bool:
    """Did ``error`` arise inside one of ``functions`` (a frame of its traceback runs their code)?"""
    codes = {getattr(f, "__code__", None) for f in functions} - {None}
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code in codes:
            return True
        tb = tb.tb_next
    return False


def _restore(saved: list) -> None:
    """Put back the attributes :func:`_tag_attributes` replaced (once: the list is emptied)."""
    while saved:
        m, k, v = saved.pop()
        object.__setattr__(m, k, v)


def library_notrace_functions() -> tuple:
    """Functions a loaded model library declares untraceable by torch.fx (kept as single graph calls).

    timm marks helpers that branch on input sizes (``crossvit.scale_image``...)
    with ``register_notrace_function`` so that fx records one call instead of
    failing on the branch; honouring that list keeps such a model on the fx
    path (sizes followed symbolically) instead of torch.export (sizes baked in).
    Only a library that is already imported is asked; nothing is imported here.
    """
    import sys

    fx_mod = sys.modules.get("timm.layers._fx")
    get = getattr(fx_mod, "get_notrace_functions", None)
    try:
        fns = get() if callable(get) else []
    except Exception:  # noqa: BLE001 - a library's internals changed: trace without its list
        return ()
    return tuple(f for f in fns if callable(f))


def _graph_module(root, graph, name: str):
    """A GraphModule over ``graph`` that generates its Python code only when it is first called.

    The analysis never calls the module (it walks the graph and interprets it),
    and code generation plus ``compile`` was two thirds of building it (about
    10 ms on ResNet-50). torch's own lazy variant (``_LazyGraphModule``, what
    inductor uses) behaves as a GraphModule in every other way; where a torch
    release lacks it, the plain GraphModule is built.
    """
    import torch.fx as fx

    try:
        from torch.fx._lazy_graph_module import _LazyGraphModule
    except ImportError:  # pragma: no cover - older or newer torch without it
        return fx.GraphModule(root, graph, name)
    return _LazyGraphModule(root, graph, name)


def _mostly_opaque(model, opaque: dict) -> bool:
    """Do the untraceable (not user-requested) submodules hold more than half of the parameters?"""
    names = [n for n, why in opaque.items() if why != "requested"]
    if not names:
        return False
    modules = dict(model.named_modules())
    total = sum(p.numel() for p in model.parameters())
    inside = {id(p): p.numel() for n in names if n in modules for p in modules[n].parameters()}
    return total > 0 and 2 * sum(inside.values()) > total


def _eager_error(model, example_inputs) -> str | None:
    """The error of running ``model`` itself on the inputs (eval, no grad), or None when it runs."""
    import torch

    try:
        with torch.no_grad():
            model(*example_inputs)
    except Exception as e:  # noqa: BLE001 - reported to the user
        return f"{type(e).__name__}: {_first_line(e)}"
    return None


def _capture_export(model, example_inputs, root_name: str, fx_error: str) -> Capture:
    """Fallback when fx cannot trace the root forward: torch.export (non-strict), shapes from its fake values.

    The exported graph has every parameter as an input placeholder and every
    size specialised to a constant, so reshape sizes never follow pruning here
    (more channels are kept than with fx), and Python branches on shapes were
    resolved for the example inputs.
    """
    import torch

    training = {m: m.training for m in model.modules()}
    try:
        model.eval()
        ep = torch.export.export(model, tuple(example_inputs), strict=False)
    except Exception as e:
        raise UnsupportedModelError(
            f"torch.fx cannot trace the forward of {root_name} ({fx_error}) and torch.export failed too "
            f"({type(e).__name__}: {_first_line(e)}). Structured pruning needs a traceable forward: move "
            "data-dependent code into a submodule (kept whole) or pass that module in ignored_layers=[...]") from None
    finally:
        for m, t in training.items():
            m.training = t
    sig = ep.graph_signature
    placeholders = dict(sig.inputs_to_parameters)
    placeholders.update(sig.inputs_to_buffers)
    gm = ep.graph_module
    meta = {}
    for node in gm.graph.nodes:
        if "val" in node.meta:
            meta[node] = summarize(_concrete(node.meta["val"]))
    return Capture(gm=gm, meta=meta, opaque={}, tags={}, kind="export", param_placeholders=placeholders,
                   shape_pass="export")


def _concrete(v):
    """Fake tensors to shape-only stand-ins, SymInts to ints (export values are static here)."""
    import torch

    if isinstance(v, torch.Tensor):
        return torch.empty(tuple(int(s) for s in v.shape), device="meta", dtype=v.dtype)
    if isinstance(v, (list, tuple)):
        return type(v)(_concrete(x) for x in v) if not hasattr(v, "_fields") else tuple(_concrete(x) for x in v)
    if isinstance(v, torch.SymInt):
        return int(v)
    return v


@functools.lru_cache(maxsize=1)
def _skip_dirs() -> tuple:
    """Source folders whose frames are machinery, not the model's code (torch, prunekit itself)."""
    import os

    import torch

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return (os.path.dirname(os.path.abspath(torch.__file__)) + os.sep, here + os.sep)


def _caller_line(paths: dict) -> str:
    """``file.py:LINE`` of the innermost frame outside torch and prunekit (the model's code).

    ``paths`` caches :func:`short_path` per source file for one trace (it walks
    ``sys.path`` for every call, and a trace asks once per node).
    """
    import sys

    skip = _skip_dirs()
    f = sys._getframe(1)
    while f is not None and f.f_code.co_filename.startswith(skip):
        f = f.f_back
    if f is None:
        return ""
    name = f.f_code.co_filename
    short = paths.get(name)
    if short is None:
        short = paths[name] = short_path(name)
    return f"{short}:{f.f_lineno}"


def last_user_frame(stack_trace: str) -> str:
    """``file.py:LINE`` of the last frame outside torch/prunekit in a formatted stack trace, or ``""``."""
    import re

    skip = _skip_dirs()
    found = ""
    for path, line in re.findall(r'File "([^"]+)", line (\d+)', stack_trace):
        if not path.startswith(skip):
            found = f"{short_path(path)}:{line}"
    return found


def short_path(path: str | None) -> str:
    """A source path as users read it: relative to its ``sys.path`` entry (``timm/models/vit.py``)."""
    import os
    import sys

    if not path:
        return ""
    path = os.path.abspath(path)
    best = None
    for entry in sys.path:
        root = os.path.abspath(entry or ".") + os.sep
        if path.startswith(root) and (best is None or len(root) > len(best)):
            best = root
    return path[len(best):] if best else path


def _first_line(e) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:300]


def example_tuple(model, example_inputs) -> tuple:
    """Normalise ``example_inputs`` (a tensor, tuple/list, or dict of keyword inputs) to a positional tuple."""
    import inspect

    import torch

    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,)
    if isinstance(example_inputs, (tuple, list)):
        return tuple(example_inputs)
    if isinstance(example_inputs, dict):
        params = list(inspect.signature(model.forward).parameters)
        unknown = set(example_inputs) - set(params)
        if unknown:
            raise ValueError(f"example_inputs has keys the forward does not take: {sorted(unknown)}")
        return tuple(example_inputs[p] for p in params if p in example_inputs)
    raise ValueError(f"example_inputs must be a tensor, a tuple of tensors or a dict, got {type(example_inputs).__name__}")

