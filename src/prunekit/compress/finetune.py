"""Centroid fine-tuning (Deep Compression, section 3.3, figure 3).

After weight sharing the paper trains the *shared values* instead of the
weights: the gradient of a centroid is the sum of the gradients of the weights
that use it, while the masks and the cluster assignments stay fixed.

:class:`CentroidFinetune` does this inside :class:`prunekit.train.Trainer`
without changing the model's structure. After ``backward()`` it replaces every
shared weight's gradient by its centroid's summed gradient (zero at pruned
positions). Any element-wise optimizer (SGD with momentum and weight decay,
Adam) then gives all members of a cluster the identical update, which is
exactly the centroid's update ``c -= lr * sum(grad)``; after the step the
callback reads the new centroids back and re-writes the weights, so they stay
shared bit for bit.

Example::

    cb = CentroidFinetune(shared)          # shared = share_weights(model, masks, cfg)
    prunekit.train.fit(model, data, TrainConfig(epochs=2, lr=1e-4), callbacks=[cb])
    # cb.shared holds the fine-tuned codebooks; the model holds the shared weights
"""
from __future__ import annotations

from typing import Mapping

import torch

from prunekit.compress.sharing import SharedTensor, apply_shared
from prunekit.train.callbacks import Callback


def centroid_grads(grad: torch.Tensor, assignments: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """Gradient of each of ``k`` centroids: the sum of the gradients of the kept weights assigned to it (pure).

    Example:
        >>> g = torch.tensor([1.0, 2.0, 3.0, 4.0])
        >>> a = torch.tensor([0, 1, 0, 1])
        >>> m = torch.tensor([True, True, True, False])
        >>> centroid_grads(g, a, m, 2).tolist()
        [4.0, 2.0]
    """
    out = torch.zeros(k, dtype=grad.dtype, device=grad.device)
    return out.index_add_(0, assignments[mask], grad[mask])


def centroids_from_weight(weight: torch.Tensor, assignments: torch.Tensor, mask: torch.Tensor,
                          codebook: torch.Tensor, n_learned: int) -> torch.Tensor:
    """Read the shared values back from a weight tensor: the mean of each cluster's members (pure).

    Clusters without members keep their value from ``codebook``; entries past
    ``n_learned`` (the zero code) are kept as they are.
    """
    a = assignments[mask]
    v = weight.detach()[mask].to(codebook.dtype)
    sums = torch.zeros(n_learned, dtype=codebook.dtype, device=v.device).index_add_(0, a, v)
    cnt = torch.bincount(a, minlength=n_learned)[:n_learned]
    new = codebook.clone()
    learned = torch.where(cnt > 0, sums / cnt.clamp(min=1), codebook[:n_learned].to(v.device))
    new[:n_learned] = learned.to(new.device)
    return new


class CentroidFinetune(Callback):
    """Train only the shared values of the given weights (see the module docstring).

    Args:
        shared: ``{weight name: SharedTensor}`` from :func:`prunekit.compress.share_weights`;
            the codebooks in it are updated in place as training goes.
    """

    def __init__(self, shared: Mapping[str, SharedTensor]) -> None:
        self.shared = dict(shared)
        self._params: dict = {}

    def on_train_begin(self, trainer) -> None:
        """Write the shared weights into the model and move assignments/masks to its device."""
        model = trainer.model
        apply_shared(model, self.shared)
        params = dict(model.named_parameters())
        self._params = {}
        for name, st in self.shared.items():
            p = params[name]
            self._params[name] = (p, st.assignments.to(p.device), st.mask.to(p.device))

    def on_after_backward(self, trainer) -> None:
        """Replace each weight's gradient by its centroid's summed gradient."""
        for name, (p, a, m) in self._params.items():
            if p.grad is None:
                continue
            st = self.shared[name]
            cg = centroid_grads(p.grad, a, m, len(st.codebook))
            if st.zero_code is not None:
                cg[st.zero_code] = 0
            p.grad.copy_(torch.where(m, cg[a], torch.zeros((), dtype=cg.dtype, device=cg.device)))

    @torch.no_grad()
    def on_step_end(self, trainer, step: int) -> None:
        """Read the updated centroids back and re-write the weights exactly shared."""
        for name, (p, a, m) in self._params.items():
            st = self.shared[name]
            st.codebook = centroids_from_weight(p, a, m, st.codebook.to(p.device), st.n_learned).cpu()
            cb = st.codebook.to(p.device)
            p.copy_(torch.where(m, cb[a], torch.zeros((), dtype=cb.dtype, device=cb.device)).to(p.dtype))

    def state_dict(self) -> dict:
        """The current codebooks (so a resumed run continues from them)."""
        return {name: st.codebook.clone() for name, st in self.shared.items()}

    def load_state_dict(self, state: dict) -> None:
        """Restore codebooks saved by :meth:`state_dict`."""
        for name, cb in state.items():
            if name in self.shared:
                self.shared[name].codebook = cb.clone()
