"""Physical removal and masking of channels: the only code that mutates modules.

:func:`slice_model` keeps, for each ``(parameter, dim)``, the given indices and
updates the module attributes that describe the sizes (``in_channels``,
``out_channels``, ``groups``, ``num_features``, ``normalized_shape``,
``embed_dim``/``num_heads`` ...), so the result is the user's own module
classes with smaller tensors. :func:`mask_model` zeroes the same slices
instead, for soft pruning and for checking a plan. :func:`replace_module` swaps one
submodule for another (binarization, bit packing and sparse export use it). :mod:`prunekit.surgery.select`
(imported on use) puts a channel sampler in front of a layer so it reads only some
of its input channels (He et al. 2017's wide-input sampling), with a checkpoint transform.

Example:
    >>> import torch, torch.nn as nn
    >>> net = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    >>> slice_model(net, {("0.weight", 0): [0, 2], ("0.bias", 0): [0, 2], ("1.weight", 1): [0, 2]})
    >>> net[0].out_features, net[1].in_features
    (2, 2)
"""
from __future__ import annotations

from prunekit.surgery.apply import mask_model, replace_module, set_attributes, slice_model

__all__ = ["mask_model", "replace_module", "set_attributes", "slice_model"]
