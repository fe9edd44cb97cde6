"""Slice or zero parameter/buffer tensors in place and fix the modules' size attributes."""
from __future__ import annotations

import re
from collections import defaultdict

from prunekit.errors import PrunekitError


def _owners(model) -> dict:
    """Qualified tensor name -> list of (module, attribute name, is_parameter), tied tensors included."""
    by_id: dict[int, list] = defaultdict(list)
    names: dict[str, int] = {}
    for mname, mod in model.named_modules(remove_duplicate=False):
        for pname, p in list(mod._parameters.items()):
            if p is not None:
                by_id[id(p)].append((mod, pname, True))
                names[f"{mname}.{pname}" if mname else pname] = id(p)
        for bname, b in list(mod._buffers.items()):
            if b is not None:
                by_id[id(b)].append((mod, bname, False))
                names[f"{mname}.{bname}" if mname else bname] = id(b)
    return {n: by_id[i] for n, i in names.items()}


def _get(owners, name):
    try:
        return owners[name]
    except KeyError:
        raise PrunekitError(f"the plan refers to tensor {name!r}, which this model does not have; "
                            "a plan only applies to the architecture it was made for") from None


def slice_model(model, kept: dict) -> None:
    """Keep only ``kept[(tensor_name, dim)]`` indices of each tensor, in place.

    Args:
        model: the module to change.
        kept: ``(qualified tensor name, dim) -> sequence of int`` indices to keep.
    """
    import torch
    import torch.nn as nn

    owners = _owners(model)
    per_tensor: dict[str, list] = defaultdict(list)
    for (name, dim), idx in kept.items():
        per_tensor[name].append((dim, idx))
    changed_modules = set()
    for name, slices in per_tensor.items():
        holders = _get(owners, name)
        mod0, attr0, is_param = holders[0]
        t = getattr(mod0, attr0)
        new = t.detach()
        for dim, idx in sorted(slices):
            # indices are checked on the CPU: a model on the meta device (checkpoint.check_spec) has no values
            index = torch.as_tensor(list(idx) if not hasattr(idx, "dtype") else idx, dtype=torch.long,
                                    device="cpu")
            if index.numel() and (int(index.max()) >= new.shape[dim] or int(index.min()) < 0):
                raise PrunekitError(f"plan index out of range for {name} dim {dim} (size {new.shape[dim]})")
            new = new.index_select(dim, index.to(new.device))
        # index_select made a new, contiguous tensor (every entry of ``kept`` shrinks a dim): no
        # copy needed; only a tensor left unsliced would still share the model's storage
        new = new.contiguous() if slices else new.clone()
        if is_param:
            replacement = nn.Parameter(new, requires_grad=t.requires_grad)
        else:
            replacement = new
        for mod, attr, param in holders:
            if param:
                mod._parameters[attr] = replacement
            else:
                mod._buffers[attr] = replacement
            changed_modules.add(mod)
    for mod in changed_modules:
        _fix_attributes(mod)


def mask_model(model, removed: dict) -> None:
    """Zero ``removed[(tensor_name, dim)]`` indices of each parameter, in place (buffers untouched)."""
    import torch

    owners = _owners(model)
    with torch.no_grad():
        for (name, dim), idx in removed.items():
            if len(idx) == 0:
                continue
            mod, attr, is_param = _get(owners, name)[0]
            if not is_param:
                continue
            t = getattr(mod, attr)
            index = torch.as_tensor(list(idx), dtype=torch.long, device=t.device)
            t.index_fill_(dim, index, 0.0)


def set_attributes(model, attrs: list[dict]) -> None:
    """Set module attributes recorded by a plan: ``{"module": qualname, "attr": name, "after": value}``."""
    modules = dict(model.named_modules())
    for a in attrs:
        mod = modules.get(a["module"])
        if mod is None:
            raise PrunekitError(f"the plan sets {a['attr']!r} on module {a['module']!r}, which this model does not have")
        value = a["after"]
        if a["attr"] == "normalized_shape":
            value = (int(value),) + tuple(getattr(mod, "normalized_shape", ())[1:])
        item = _ITEM.fullmatch(a["attr"])
        if item:  # one element of a list or tuple attribute (MixedConv2d's ``splits[1]``)
            seq = getattr(mod, item.group(1), None)
            i = int(item.group(2))
            if not isinstance(seq, (list, tuple)) or i >= len(seq):
                raise PrunekitError(f"the plan sets {a['attr']!r} on module {a['module']!r}, which has no such "
                                    "list or tuple element")
            if isinstance(seq, list):
                seq[i] = value
            else:
                setattr(mod, item.group(1), seq[:i] + (value,) + seq[i + 1:])
            continue
        setattr(mod, a["attr"], value)


#: ``name[i]``: an element of a module's list attribute
_ITEM = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\[(\d+)\]")


def replace_module(model, name: str, new):
    """Put ``new`` in place of the submodule ``name`` (a qualified name such as ``"features.3"``); return the old one.

    Every module swap in prunekit goes through here (binarization, bit packing, sparse export, input
    selection), so that surgery/ stays the only code that mutates a model's module tree.

    Args:
        model: the root module; it is changed in place.
        name: qualified name of an existing submodule; ``""`` (the root itself) cannot be replaced in place.
        new: the module to put there.

    Raises:
        PrunekitError: ``name`` is empty or the model has no such submodule.

    Example:
        >>> import torch.nn as nn
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
        >>> type(replace_module(net, "1", nn.Identity())).__name__, type(net[1]).__name__
        ('ReLU', 'Identity')
    """
    if not name:
        raise PrunekitError("replace_module: the model itself cannot be replaced in place; give a submodule name")
    parent_name, _, child = name.rpartition(".")
    try:
        parent = model.get_submodule(parent_name) if parent_name else model
        old = parent.get_submodule(child)
    except AttributeError:
        raise PrunekitError(f"replace_module: the model has no submodule {name!r}") from None
    # setattr (not _modules[...]) so that nn.Module's own bookkeeping runs, as for any assignment
    setattr(parent, child, new)
    return old


def _fix_attributes(mod) -> None:
    """Make a torch.nn layer's size attributes agree with its (sliced) tensors."""
    import torch.nn as nn

    if isinstance(mod, nn.modules.conv._ConvNd):
        w = mod.weight
        if mod.transposed:
            if mod.groups == 1:
                mod.in_channels, mod.out_channels = int(w.shape[0]), int(w.shape[1])
            else:  # depthwise transposed conv
                mod.in_channels = mod.out_channels = mod.groups = int(w.shape[0])
        else:
            old_in_per_group = mod.in_channels // mod.groups
            out_per_group = mod.out_channels // mod.groups
            if old_in_per_group == 1 and mod.groups > 1:  # depthwise family: whole groups removed
                mod.groups = int(w.shape[0]) // out_per_group
                mod.in_channels = mod.groups
            else:
                mod.in_channels = mod.groups * int(w.shape[1])
            mod.out_channels = int(w.shape[0])
    elif isinstance(mod, nn.Linear):
        mod.out_features, mod.in_features = int(mod.weight.shape[0]), int(mod.weight.shape[1])
    elif isinstance(mod, nn.modules.batchnorm._NormBase):
        t = mod.weight if mod.weight is not None else mod.running_mean
        if t is not None:
            mod.num_features = int(t.shape[0])
    elif isinstance(mod, nn.GroupNorm):
        if mod.weight is not None:
            new_c = int(mod.weight.shape[0])
            if mod.num_groups == mod.num_channels:
                mod.num_groups = new_c
            mod.num_channels = new_c
    elif isinstance(mod, nn.LayerNorm):
        if mod.weight is not None:
            mod.normalized_shape = (int(mod.weight.shape[0]),) + tuple(mod.normalized_shape[1:])
    elif hasattr(nn, "RMSNorm") and isinstance(mod, nn.RMSNorm):
        if mod.weight is not None:
            mod.normalized_shape = (int(mod.weight.shape[0]),) + tuple(mod.normalized_shape[1:])
    elif isinstance(mod, nn.PReLU):
        mod.num_parameters = int(mod.weight.shape[0])
    elif isinstance(mod, nn.Embedding):
        mod.embedding_dim = int(mod.weight.shape[1])
    elif isinstance(mod, nn.MultiheadAttention):
        e = int(mod.in_proj_weight.shape[1])
        mod.num_heads = int(mod.in_proj_weight.shape[0]) // 3 // mod.head_dim
        mod.embed_dim = mod.kdim = mod.vdim = e
    elif type(getattr(mod, "nx", None)) is int and type(getattr(mod, "nf", None)) is int \
            and getattr(getattr(mod, "weight", None), "ndim", 0) == 2:
        # HF's Conv1D (GPT-2): a linear layer whose weight is stored [in, out] (recognised by its
        # attributes, so prunekit needs no transformers import; see graph.ops_matmul.is_transposed_linear)
        mod.nx, mod.nf = int(mod.weight.shape[0]), int(mod.weight.shape[1])

