"""Input-channel selection in front of a layer: He et al.'s "channel sampler" for wide inputs.

He, Zhang & Sun (Channel Pruning, ICCV 2017, Sec. 3.3 / Fig. 3(c)) prune the input
channels of the first layer of a residual branch although the residual stream it reads
keeps its width: a *channel sampler* picks the channels that layer reads. Here that is
:class:`ChannelSelect` (``x.index_select(dim, index)`` with the index as a buffer) put in
front of a Conv2d/Linear whose input width shrinks to the kept channels:

    ``layer``  ->  ``nn.Sequential(select=ChannelSelect(index), layer=layer with fewer inputs)``

so the layer's tensors move from ``name.weight`` to ``name.layer.weight``.
:func:`select_inputs` is the mutation; the checkpoint transform ``select_inputs``
(``{"kind": "select_inputs", "layers": {name: [kept indices]}}``) replays it when a
saved model is loaded, so pruned checkpoints with selections reload with
:func:`prunekit.checkpoint.load`.

Example:
    >>> import torch, torch.nn as nn
    >>> net = nn.Sequential(nn.Conv2d(4, 2, 1))
    >>> select_inputs(net, {"0": [0, 3]})
    >>> net[0].layer.in_channels, net[0].select.index.tolist()
    (2, [0, 3])
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn

from prunekit.errors import PrunekitError

#: kind of the checkpoint transform recording input selections
TRANSFORM_KIND = "select_inputs"


class ChannelSelect(nn.Module):
    """Keep the channels ``index`` of dimension ``dim`` of the input (a channel sampler).

    Args:
        index: channel indices to keep, in the order the next layer reads them.
        dim: channel dimension: 1 for convolutions (NCHW), -1 for Linear layers.
        in_channels: width of the input (recorded for ``repr`` and checks).
    """

    def __init__(self, index, dim: int = 1, in_channels: int | None = None) -> None:
        super().__init__()
        idx = torch.as_tensor(list(index) if not isinstance(index, torch.Tensor) else index, dtype=torch.long)
        self.register_buffer("index", idx.clone())
        self.dim = int(dim)
        self.in_channels = int(in_channels) if in_channels is not None else None

    def forward(self, x):
        return x.index_select(self.dim, self.index)

    def extra_repr(self) -> str:
        src = f"{self.in_channels} -> " if self.in_channels is not None else ""
        return f"{src}{self.index.numel()} channels, dim={self.dim}"


def is_selected(module) -> bool:
    """True for the container :func:`select_inputs` puts in place of a layer."""
    return isinstance(module, nn.Sequential) and isinstance(getattr(module, "select", None), ChannelSelect) \
        and hasattr(module, "layer")


def inner_layer(module):
    """The Conv2d/Linear itself: ``module.layer`` for a selection container, else ``module``."""
    return module.layer if is_selected(module) else module


def _in_width(layer) -> int:
    if isinstance(layer, nn.Conv2d):
        if layer.groups != 1:
            raise PrunekitError(f"input selection needs a Conv2d with groups=1, got groups={layer.groups}")
        return int(layer.in_channels)
    if isinstance(layer, nn.Linear):
        return int(layer.in_features)
    raise PrunekitError(f"input selection works on Conv2d and Linear layers, not {type(layer).__name__}")


def select_inputs(model, selections: dict) -> None:
    """Make each layer ``name`` read only the input channels ``selections[name]``, in place.

    The layer's weight keeps the columns of the kept channels (``in_channels`` /
    ``in_features`` follow) and the layer is wrapped as ``Sequential(select, layer)``.

    Args:
        model: the module to change (its submodules are replaced).
        selections: qualified layer name -> increasing channel indices to keep.

    Raises:
        PrunekitError: unknown or unsupported layer, already selected, bad indices.
    """
    from prunekit.surgery.apply import replace_module, slice_model

    for name, kept in selections.items():
        if not name:
            raise PrunekitError("input selection needs a submodule name, not the model itself")
        try:
            layer = model.get_submodule(name)
        except AttributeError:
            raise PrunekitError(f"input selection: the model has no submodule {name!r}") from None
        if is_selected(layer):
            raise PrunekitError(f"input selection: layer {name!r} already selects its inputs")
        width = _in_width(layer)
        idx = [int(i) for i in kept]
        if not idx or idx != sorted(set(idx)) or idx[0] < 0 or idx[-1] >= width:
            raise PrunekitError(f"input selection of {name!r}: indices must be increasing, distinct and in "
                                f"[0, {width}), got {len(idx)} indices")
        slice_model(model, {(name + ".weight", 1): idx})
        dim = 1 if isinstance(layer, nn.Conv2d) else -1
        wrapped = nn.Sequential(OrderedDict([("select", ChannelSelect(idx, dim, width)), ("layer", layer)]))
        replace_module(model, name, wrapped)


def selection_transform(selections: dict) -> dict:
    """The checkpoint transform recording ``selections`` (layer -> kept input channels)."""
    return {"kind": TRANSFORM_KIND, "layers": {str(k): [int(i) for i in v] for k, v in selections.items()}}


def _checkpoint_transform(model, transform: dict):
    """Replay input selections on a freshly built model (checkpoint loading)."""
    from prunekit.errors import CheckpointError

    layers = transform.get("layers")
    if not isinstance(layers, dict):
        raise CheckpointError("select_inputs transform has no 'layers' mapping")
    try:
        select_inputs(model, layers)
    except PrunekitError as e:
        raise CheckpointError(f"select_inputs transform does not fit the model: {e}") from None
    return model


def _register_transform() -> None:
    from prunekit.checkpoint import TRANSFORMS

    if TRANSFORM_KIND not in TRANSFORMS:
        TRANSFORMS.add(TRANSFORM_KIND, _checkpoint_transform)


# prunekit.checkpoint imports this module lazily for a "select_inputs" transform.
_register_transform()
