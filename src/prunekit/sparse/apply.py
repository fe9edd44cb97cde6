"""Writing masks into a model, and keeping pruned weights at zero while training.

Zeroing the gradient of a pruned weight is not enough to keep it at zero:
SGD momentum still holds velocity from before pruning, and Adam's moment
estimates move a weight even when its gradient is zero. So there are two
operations, both in-place and cheap:

* :func:`zero_masked_grads` after ``backward()`` (no gradient reaches a pruned weight);
* :func:`apply_masks` after ``optimizer.step()`` (whatever the optimizer did, the weight is 0 again).

:class:`MaskCallback` does both inside :class:`prunekit.train.Trainer`;
:class:`MaskGuard` does both for a hand-written training loop (a tensor
gradient hook and an optimizer step hook).

Example (own loop):
    >>> import torch
    >>> from prunekit.sparse import magnitude_masks
    >>> net = torch.nn.Linear(8, 4)
    >>> opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    >>> masks = magnitude_masks(net, 0.75)
    >>> with MaskGuard(net, masks, opt):
    ...     for _ in range(3):
    ...         opt.zero_grad(); net(torch.randn(2, 8)).sum().backward(); opt.step()
    >>> int((net.weight != 0).sum())
    8
"""
from __future__ import annotations

import functools
from typing import Mapping

from prunekit.errors import PrunekitError
from prunekit.sparse.masks import check_masks


def _pairs(model, masks: Mapping) -> list:
    """``[(name, parameter, mask on the parameter's device)]``; validates the masks."""
    params = dict(model.named_parameters())
    check_masks(params, masks)
    return [(n, params[n], m.to(params[n].device)) for n, m in masks.items()]


def apply_masks(model, masks: Mapping):
    """Zero the pruned weights of ``model`` in place (under ``no_grad``); returns ``model``.

    Raises:
        PrunekitError: a mask names no parameter, has the wrong shape or is not boolean.
    """
    import torch

    with torch.no_grad():
        for _, p, m in _pairs(model, masks):
            p.masked_fill_(~m, 0.0)
    return model


def zero_masked_grads(model, masks: Mapping) -> None:
    """Zero the gradients of pruned weights in place (parameters without a gradient are skipped)."""
    for _, p, m in _pairs(model, masks):
        if p.grad is not None:
            p.grad.masked_fill_(~m, 0.0)


class MaskedParams:
    """Pre-resolved (parameter, float mask) lists so the per-step work is one fused multiply.

    Multiplying by a float 0/1 mask with ``torch._foreach_mul_`` is one kernel
    launch for all layers; this is what keeps the masking overhead of a
    LeNet-300-100 step small (see ``bench/sparse_overhead.py``). Used by
    :class:`MaskGuard` and :class:`~prunekit.sparse.callbacks.MaskCallback`.
    """

    def __init__(self, model, masks: Mapping) -> None:
        self.names = []
        self.params = []
        self.factors = []
        for n, p, m in _pairs(model, masks):
            self.names.append(n)
            self.params.append(p)
            self.factors.append(m.to(p.dtype))

    def zero_weights(self) -> None:
        import torch

        if self.params:
            with torch.no_grad():
                torch._foreach_mul_(self.params, self.factors)

    def zero_grads(self) -> None:
        import torch

        pairs = [(p.grad, f) for p, f in zip(self.params, self.factors) if p.grad is not None]
        if pairs:
            grads, factors = zip(*pairs)
            with torch.no_grad():
                torch._foreach_mul_(list(grads), list(factors))


def _mask_grad(param, factor) -> None:
    """Post-accumulate-grad hook: mask ``param.grad`` in place (such hooks must return None)."""
    param.grad.mul_(factor)


class MaskGuard:
    """Keep pruned weights at zero in your own training loop (no Trainer needed).

    On entry (or :meth:`attach`) the masks are applied, a post-accumulate-grad
    hook is put on every masked parameter (its gradient is multiplied by the
    mask in place at the end of ``backward()``) and, if an optimizer is given, a step post-hook re-applies
    the masks after every ``optimizer.step()`` so momentum and weight decay
    cannot revive a pruned weight. On exit the hooks are removed.

    Args:
        model: the module whose parameters the masks name.
        masks: ``{name: BoolTensor}``; True keeps the weight.
        optimizer: optional ``torch.optim.Optimizer`` to hook; without one, call
            :meth:`reapply` after each step yourself.
    """

    def __init__(self, model, masks: Mapping, optimizer=None) -> None:
        self.model = model
        self.masks = dict(masks)
        self.optimizer = optimizer
        self._handles: list = []
        self._masked = None

    def attach(self) -> "MaskGuard":
        """Apply the masks and install the hooks (idempotent)."""
        if self._handles:
            return self
        self._masked = MaskedParams(self.model, self.masks)
        self._masked.zero_weights()
        for p, f in zip(self._masked.params, self._masked.factors):
            # Runs once the gradient is accumulated into p.grad, so it can be masked in place
            # (no extra allocation). The default argument binds this layer's mask.
            self._handles.append(p.register_post_accumulate_grad_hook(functools.partial(_mask_grad, factor=f)))
        if self.optimizer is not None:
            if not hasattr(self.optimizer, "register_step_post_hook"):
                raise PrunekitError("optimizer has no register_step_post_hook; pass optimizer=None and "
                                    "call guard.reapply() after each step")
            self._handles.append(self.optimizer.register_step_post_hook(lambda *_: self.reapply()))
        return self

    def reapply(self) -> None:
        """Zero the pruned weights again (call after ``optimizer.step()`` when no optimizer was given)."""
        if self._masked is None:
            raise PrunekitError("MaskGuard is not attached; use it as a context manager or call attach()")
        self._masked.zero_weights()

    def detach(self) -> None:
        """Remove the hooks; the weights keep their (masked) values."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self) -> "MaskGuard":
        return self.attach()

    def __exit__(self, *exc) -> None:
        self.detach()
