"""How to rebuild a model: :class:`ModelSpec`, plain data attached to a model as ``model.prunekit_spec``.

This module is a leaf: it imports neither :mod:`prunekit.models` (which attaches
a spec to every zoo model it creates) nor :mod:`prunekit.checkpoint` (which
stores a spec and rebuilds the model from it with :func:`prunekit.checkpoint.build`),
so both can depend on it without depending on each other.

Example:
    >>> spec = ModelSpec(arch={"model": "lenet5", "kwargs": {}}, input_shape=[1, 28, 28])
    >>> spec.with_transform({"kind": "prune_plan", "plan": {}}).transforms[0]["kind"]
    'prune_plan'
    >>> spec.transforms
    []
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

from prunekit.errors import CheckpointError

__all__ = ["MAX_INPUT_VALUES", "MAX_NESTING", "ModelSpec", "attach_spec", "get_spec", "nesting_depth"]

MAX_INPUT_VALUES = 1 << 28   # values in one input sample (a 16k x 16k RGB image is 2**29.6: refused)
MAX_NESTING = 64             # nesting of the lists and dicts a file may hold (recursive code walks them)


def nesting_depth(obj, limit: int = MAX_NESTING) -> int:
    """Nesting depth of a JSON-like value, counted without recursion and stopping past ``limit``.

    Example:
        >>> nesting_depth({"a": [1, [2]]})
        3
    """
    depth, level = 0, [obj] if isinstance(obj, (dict, list, tuple)) else []
    while level and depth <= limit:
        nxt = []
        for v in level:
            nxt.extend(v.values() if isinstance(v, dict) else v)
        depth += 1
        level = [v for v in nxt if isinstance(v, (dict, list, tuple))]
    return depth


@dataclass
class ModelSpec:
    """How to rebuild a model: base architecture, input shape, structural transforms.

    Attributes:
        arch: ``{"model": name, "kwargs": {...}}`` (a zoo model) or
            ``{"factory": "mod:fn", "kwargs": {...}}`` (an importable factory of the user's own).
        input_shape: shape of one sample, without the batch dimension.
        transforms: ordered list of JSON-able dicts, each with a ``"kind"`` key
            (see :data:`prunekit.checkpoint.TRANSFORMS`).
        extra_input_shapes: the shapes of the second, third, ... positional input of a model
            with several inputs (``forward(x, y)``); empty for the usual one-input model, so
            that ``input_shape`` keeps meaning "the (first) input" everywhere.
    """

    arch: dict
    input_shape: list[int]
    transforms: list[dict] = field(default_factory=list)
    extra_input_shapes: list[list[int]] = field(default_factory=list)

    @property
    def input_shapes(self) -> list[list[int]]:
        """Every positional input's per-sample shape, the first one being :attr:`input_shape`.

        Example:
            >>> ModelSpec(arch={}, input_shape=[3, 8, 8], extra_input_shapes=[[10]]).input_shapes
            [[3, 8, 8], [10]]
        """
        return [list(self.input_shape), *(list(s) for s in self.extra_input_shapes)]

    def to_dict(self) -> dict:
        """Plain-data form stored in the checkpoint (``extra_input_shapes`` only when there are some)."""
        d = {"arch": copy.deepcopy(self.arch), "input_shape": list(self.input_shape),
             "transforms": copy.deepcopy(self.transforms)}
        if self.extra_input_shapes:
            d["extra_input_shapes"] = [list(s) for s in self.extra_input_shapes]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        """Inverse of :meth:`to_dict`; raises CheckpointError on missing keys or an impossible input shape."""
        if nesting_depth(d) > MAX_NESTING:
            raise CheckpointError(f"malformed model spec: nested deeper than {MAX_NESTING} levels")
        try:
            spec = cls(arch=dict(d["arch"]), input_shape=[int(s) for s in d["input_shape"]],
                       transforms=list(d.get("transforms", [])),
                       extra_input_shapes=[[int(s) for s in shape] for shape in d.get("extra_input_shapes", [])])
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise CheckpointError(f"malformed model spec: {e}") from None
        # commands build example inputs of these shapes: a file must not make them allocate without bound
        if len(spec.extra_input_shapes) > 15:
            raise CheckpointError(f"malformed model spec: {1 + len(spec.extra_input_shapes)} inputs (at most 16)")
        for shape in spec.input_shapes:
            n = 1
            for s in shape:
                n *= s
            if not 1 <= len(shape) <= 8 or min(shape) < 1 or n > MAX_INPUT_VALUES:
                raise CheckpointError(f"malformed model spec: input_shape {shape} (1 to 8 positive sizes, "
                                      f"at most {MAX_INPUT_VALUES} values per sample)")
        return spec

    def with_transform(self, transform: dict) -> "ModelSpec":
        """A copy with one more transform appended (specs are never mutated in place)."""
        if "kind" not in transform:
            raise ValueError("a transform needs a 'kind' key")
        new = ModelSpec.from_dict(self.to_dict())
        new.transforms.append(_plain_copy(transform))
        return new

    def base(self) -> "ModelSpec":
        """The same architecture and input shape with no transforms (what a freshly built base model carries)."""
        return ModelSpec(arch=copy.deepcopy(self.arch), input_shape=list(self.input_shape),
                         extra_input_shapes=[list(s) for s in self.extra_input_shapes])


_SCALARS = (int, float, str, bool, type(None))


def _plain_copy(value):
    """``copy.deepcopy`` for JSON-like data, several times faster on a plan's long int lists."""
    kind = type(value)
    if kind is dict:
        return {k: _plain_copy(v) for k, v in value.items()}
    if kind is list:
        if all(type(v) in _SCALARS for v in value):
            return value.copy()
        return [_plain_copy(v) for v in value]
    if kind in _SCALARS:
        return value
    return copy.deepcopy(value)


def get_spec(model) -> ModelSpec | None:
    """The :class:`ModelSpec` attached to ``model``, or None for a model built outside prunekit."""
    spec = getattr(model, "prunekit_spec", None)
    return spec if isinstance(spec, ModelSpec) else None


def attach_spec(model, spec: ModelSpec):
    """Attach ``spec`` to ``model`` as ``model.prunekit_spec`` and return the model.

    The spec is a plain attribute (not a submodule, parameter or buffer), so it
    travels with ``copy.deepcopy`` and is ignored by ``state_dict``.
    """
    model.prunekit_spec = spec
    return model
