"""Residual branches for Channel Pruning's reconstruction target (He, Zhang & Sun, ICCV 2017, Sec. 3.3).

He et al. reconstruct the last layer of a residual branch towards ``Y1 - Y1' + Y2``
rather than its own original output ``Y2``: ``Y1`` is the shortcut in the original
network and ``Y1'`` the shortcut in the network pruned so far, so the re-fitted branch
also absorbs the error the shortcut has accumulated and the *block output* is what is
reconstructed.

:class:`ResidualGraph` finds these layers generically on the model's torch.fx graph
(the engine's capture, :func:`prunekit.graph.capture.capture`): a layer ``C`` is the
last layer of a branch when its only use, optionally through one eval-mode BatchNorm
and identity-like modules (``Identity``, dropout), is one operand of an element-wise
add (``a + b``, ``a += b``, ``torch.add``, ``.add``/``.add_``) whose other operand ``Y1``
has the same shape. A BatchNorm ``z -> s * (z - mean) + beta`` between ``C`` and the add
turns the shortcut difference into ``C``'s output space by dividing by its per-channel
scale ``s = gamma / sqrt(var + eps)`` (:func:`residual_offset`). Node values are read
by running the graph with :class:`torch.fx.Interpreter` on the original and on the
working model (same structure, so the same graph).

Models the engine captures with ``torch.export`` (fx cannot trace their root forward)
are handled on the exported graph: layers are the aten conv/linear ops whose weight is
the layer's parameter, and the graph runs with the model's own tensors as inputs.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass


@dataclass(frozen=True)
class ResidualSite:
    """Where a layer's output joins a shortcut.

    Attributes:
        layer: qualified name of the layer ``C`` (last layer of the branch).
        add: fx node name of the add.
        shortcut: fx node name of the add's other operand (``Y1``).
        norm: qualified name of the BatchNorm between ``C`` and the add, or None.
        input: fx node name of ``C``'s input (read in the same pass as the shortcut).
    """

    layer: str
    add: str
    shortcut: str
    norm: str | None = None
    input: str | None = None


class _Stop(Exception):
    pass


def _aten_name(target) -> str:
    """``"conv2d"`` for ``aten.conv2d.default`` (export graphs); ``""`` for anything else."""
    import torch

    if isinstance(target, torch._ops.OpOverload):
        return target._schema.name.split("::")[-1]
    return ""


def _is_add(node) -> bool:
    import torch

    if node.op == "call_function" and (node.target in (operator.add, operator.iadd, torch.add)
                                       or _aten_name(node.target) in ("add", "add_")):
        return len(node.args) == 2 and not node.kwargs
    if node.op == "call_method" and node.target in ("add", "add_"):
        return len(node.args) == 2 and not node.kwargs
    return False


def _pass_through(mod) -> bool:
    import torch.nn as nn

    return isinstance(mod, (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout))


def _batch_norm(mod) -> bool:
    import torch.nn as nn

    return isinstance(mod, nn.modules.batchnorm._BatchNorm) and mod.track_running_stats \
        and mod.running_var is not None


def bn_scale(bn):
    """Per-channel slope ``gamma / sqrt(running_var + eps)`` of an eval-mode BatchNorm."""
    import torch

    inv = torch.rsqrt(bn.running_var.detach().double() + bn.eps)
    return (inv * bn.weight.detach().double() if bn.weight is not None else inv).float()


def residual_offset(y1, y1_pruned, scale=None, eps: float = 1e-8):
    """``(Y1 - Y1') / scale``: what the branch's last layer must add to its own output (pure math).

    Args:
        y1, y1_pruned: ``(N, n)`` shortcut values of the original and of the pruned network.
        scale: ``(n,)`` per-channel BatchNorm slope between the layer and the add (None: 1).
            Channels with ``|scale| <= eps`` cannot be corrected through the layer and get 0.
    """
    import torch

    d = (y1 - y1_pruned).float()
    if scale is None:
        return d
    s = scale.float().reshape(1, -1)
    ok = s.abs() > eps
    return torch.where(ok, d / torch.where(ok, s, torch.ones_like(s)), torch.zeros_like(d))


class ResidualGraph:
    """The graph of a model (the engine's capture): residual sites, execution order of layers, node values.

    Works on both kinds of capture: torch.fx graphs (layers are ``call_module`` nodes)
    and torch.export graphs (aten ops whose weight is a parameter placeholder).

    Args:
        model: the dense model (not modified).
        x: example input (batch of 1).

    Attributes:
        kind: ``"fx"`` or ``"export"``.
        available: False for an export graph with inputs other than the model's
            parameters, buffers and one image tensor (no node values then).
    """

    _LAYER_OPS = ("conv2d", "convolution", "linear")
    _BN_OPS = ("batch_norm", "_native_batch_norm_legit_no_training")

    def __init__(self, model, x) -> None:
        from prunekit.graph import ops
        from prunekit.graph.capture import capture

        cap = capture(model, (x,), ops.is_handled_module)
        self.kind = cap.kind
        self.graph = cap.gm.graph
        self.meta = cap.meta
        self._gm = cap.gm
        self._fqn = dict(cap.param_placeholders)        # export: placeholder target -> tensor name
        self._modules = dict(model.named_modules())
        inputs = [n for n in self.graph.nodes if n.op == "placeholder" and n.target not in self._fqn]
        self.available = self.kind == "fx" or len(inputs) == 1
        self._calls: dict = {}
        for n in self.graph.nodes:
            name = self._module_of(n)
            if name is not None:
                self._calls.setdefault(name, []).append(n)

    def _module_of(self, n):
        """Qualified name of the module a node computes (fx: the called module; export: its weight's owner)."""
        import torch.fx as fx

        if n.op == "call_module":
            return n.target
        if n.op != "call_function" or self.kind != "export":
            return None
        op = _aten_name(n.target)
        if op not in self._LAYER_OPS + self._BN_OPS:
            return None
        for a in n.args[1:5] if op in self._BN_OPS else n.args[1:2]:
            fqn = self._fqn.get(a.target) if isinstance(a, fx.Node) and a.op == "placeholder" else None
            if fqn:
                return fqn.rpartition(".")[0]
        return None

    def order(self) -> dict:
        """Qualified module name -> position of its first call in the graph."""
        pos = {n: i for i, n in enumerate(self.graph.nodes)}
        return {name: pos[nodes[0]] for name, nodes in self._calls.items()}

    def _shape(self, node):
        m = self.meta.get(node)
        return m[1] if isinstance(m, tuple) and m and m[0] == "tensor" else None

    def _next(self, cur, layer, out_shape, norm):
        """``(node, norm)`` one step along an identity-like module or the (single) BatchNorm, else None."""
        import torch

        users = list(cur.users)
        if len(users) != 1 or not users[0].args or users[0].args[0] is not cur:
            return None
        u = users[0]
        if u.op == "call_module" and (len(u.args) != 1 or u.kwargs):
            return None
        owner = self._module_of(u)
        mod = self._modules.get(owner) if owner is not None else None
        if u.op == "call_module" and _pass_through(mod):
            return u, norm
        if self.kind == "export" and u.op == "call_function" and _aten_name(u.target) in ("dropout", "clone"):
            return u, norm
        per_channel = isinstance(self._modules.get(layer), torch.nn.Conv2d) or len(out_shape) == 2
        if norm is not None or not _batch_norm(mod) or not per_channel:
            return None
        if u.op == "call_module" or _aten_name(u.target) == "batch_norm":
            return u, owner
        if _aten_name(u.target) == "_native_batch_norm_legit_no_training":   # a tuple: item 0 is the output
            items = list(u.users)
            if len(items) == 1 and items[0].target is operator.getitem and items[0].args[1] == 0:
                return items[0], owner
        return None

    def site(self, layer: str) -> ResidualSite | None:
        """The :class:`ResidualSite` of ``layer``, or None when its output does not go straight into an add."""
        import torch.fx as fx

        calls = self._calls.get(layer, [])
        if len(calls) != 1:
            return None
        cur, norm = calls[0], None
        if cur.op == "call_function" and _aten_name(cur.target) not in self._LAYER_OPS:
            return None
        out_shape = self._shape(cur)
        if out_shape is None or not cur.args or not isinstance(cur.args[0], fx.Node):
            return None
        if cur.op == "call_module" and (len(cur.args) != 1 or cur.kwargs):
            return None
        inp = cur.args[0].name
        for _ in range(16):
            u = list(cur.users)[0] if len(cur.users) == 1 else None
            if u is not None and _is_add(u):
                a, b = u.args
                other = b if a is cur else a
                if not isinstance(other, fx.Node) or other is cur or (a is not cur and b is not cur):
                    return None
                if not (self._shape(other) == self._shape(u) == out_shape):
                    return None
                return ResidualSite(layer, u.name, other.name, norm, inp)
            step = self._next(cur, layer, out_shape, norm)
            if step is None:
                return None
            cur, norm = step
        return None

    def _inputs(self, module, images):
        """Positional inputs of the graph: the images (fx), or parameters, buffers and images (export)."""
        if self.kind == "fx":
            return [images]
        tensors = dict(module.named_parameters(remove_duplicate=False))
        tensors.update(dict(module.named_buffers(remove_duplicate=False)))
        return [tensors[self._fqn[n.target]] if n.target in self._fqn else images
                for n in self.graph.nodes if n.op == "placeholder"]

    def values(self, module, names, images, batch: int = 128) -> list:
        """The values of graph nodes ``names`` when ``module`` (the model or a same-structure copy) runs on ``images``.

        One pass per batch, stopped as soon as every node is computed.
        """
        import torch
        import torch.fx as fx

        if not self.available:
            raise RuntimeError("this graph cannot be run on images (export graph with extra inputs)")
        want = list(names)
        store: dict = {n: [] for n in want}
        gm = self._gm

        class Reader(fx.Interpreter):
            def fetch_attr(self, target):
                try:
                    return super().fetch_attr(target)
                except RuntimeError:   # a constant fx lifted onto the GraphModule, missing on this module
                    obj = gm
                    for atom in target.split("."):
                        obj = getattr(obj, atom)
                    return obj

            def run_node(self, n):
                out = super().run_node(n)
                if n.name in store:
                    store[n.name].append(out.detach())
                    self.found += 1
                    if self.found == len(store):
                        raise _Stop
                return out

        flags = {m: m.training for m in module.modules()}
        module.eval()
        try:
            with torch.no_grad():
                for i in range(0, len(images), batch):
                    reader = Reader(module if self.kind == "fx" else self._gm, graph=self.graph)
                    reader.found = 0
                    try:
                        reader.run(*self._inputs(module, images[i:i + batch]))
                    except _Stop:
                        pass
        finally:
            for m, t in flags.items():
                m.training = t
        chunks = -(-len(images) // batch)
        for n in want:
            if len(store[n]) != chunks:
                raise RuntimeError(f"graph node {n!r} was not computed")
        return [torch.cat(store[n]) for n in want]

    def offset(self, site: ResidualSite, y1, y1_pruned, model):
        """``(Y1 - Y1') / scale`` of ``site`` from sampled shortcut values ``(N, n)`` of both networks."""
        scale = bn_scale(model.get_submodule(site.norm)) if site.norm else None
        return residual_offset(y1, y1_pruned, scale)
