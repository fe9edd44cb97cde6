"""Small helpers shared by the measurement modules (private to measure/; thread helpers are public in
:mod:`prunekit.measure.threads`).

They keep the user's model state unchanged: train/eval flags are restored after every measurement.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

from prunekit.errors import PrunekitError


def call_model(model, example_input):
    """Run ``model`` on ``example_input``: a tensor, a tuple/list of positional inputs, or a dict of keyword inputs."""
    if isinstance(example_input, dict):
        return model(**example_input)
    if isinstance(example_input, (tuple, list)):
        return model(*example_input)
    return model(example_input)


def first_tensor(example_input):
    """The first tensor found in ``example_input`` (tensor, sequence or dict), or None."""
    import torch

    if isinstance(example_input, torch.Tensor):
        return example_input
    if isinstance(example_input, dict):
        items = list(example_input.values())
    elif isinstance(example_input, (tuple, list)):
        items = list(example_input)
    else:
        return None
    for item in items:
        found = first_tensor(item)
        if found is not None:
            return found
    return None


def batch_size_of(example_input) -> int:
    """Leading dimension of the first input tensor (1 for a 0-d tensor or no tensor)."""
    t = first_tensor(example_input)
    if t is None or t.dim() == 0:
        return 1
    return int(t.shape[0])


def is_cuda_input(example_input) -> bool:
    """Whether the inputs live on a CUDA device, so timings must synchronize."""
    t = first_tensor(example_input)
    return t is not None and t.device.type == "cuda"


@contextlib.contextmanager
def eval_mode(model) -> Iterator[None]:
    """Put every submodule in eval mode and restore each one's own flag afterwards.

    ``model.train(was_training)`` would not do: a user may keep, say, frozen
    BatchNorm layers in eval mode inside a model that is training.
    """
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def resolve_input_shape(model, input_shape: Sequence[int] | None) -> list[int]:
    """The per-sample input shape: ``input_shape`` or the model's ``prunekit_spec.input_shape``."""
    if input_shape is None:
        from prunekit.checkpoint import get_spec

        spec = get_spec(model)
        if spec is None:
            raise PrunekitError("the model has no prunekit_spec to take the input shape from; "
                                "pass input_shape=(C, H, W) (one sample, without the batch dimension)")
        input_shape = spec.input_shape
    return _check_shape(input_shape)


def _check_shape(input_shape) -> list[int]:
    try:
        shape = [int(s) for s in input_shape]
    except (TypeError, ValueError):
        raise PrunekitError(f"input_shape must be a sequence of positive integers, got {input_shape!r}") from None
    if not shape or any(s < 1 for s in shape):
        raise PrunekitError(f"input_shape must be a non-empty sequence of positive integers, got {input_shape!r}")
    return shape


def _is_shape(value) -> bool:
    return isinstance(value, (tuple, list)) and all(isinstance(s, int) and not isinstance(s, bool) for s in value)


def resolve_inputs(model, inputs) -> list:
    """The model's positional inputs as templates: a shape (``list[int]``, random normal values) or a tensor.

    ``inputs`` is one sample's shape (``(3, 32, 32)``), a list of shapes for a model with
    several inputs (``[(3, 32, 32), (10,)]``), example tensors (one, or a tuple: their
    first dimension is the batch; the first sample is repeated to make a batch, which
    keeps integer inputs such as token ids valid), a mix of shapes and tensors, or None
    (every shape of the model's ``prunekit_spec``).

    Example:
        >>> resolve_inputs(None, [(3, 8, 8), (10,)])
        [[3, 8, 8], [10]]
    """
    import torch

    if inputs is None:
        from prunekit.checkpoint import get_spec

        spec = get_spec(model)
        if spec is None:
            raise PrunekitError("the model has no prunekit_spec to take the input shape from; "
                                "pass input_shape=(C, H, W) (one sample, without the batch dimension), a list of "
                                "shapes for several inputs, or example tensors")
        return [_check_shape(s) for s in spec.input_shapes]
    if isinstance(inputs, torch.Tensor) or _is_shape(inputs):
        inputs = [inputs]
    if not isinstance(inputs, (tuple, list)) or not inputs:
        raise PrunekitError(f"input_shape must be a shape, a list of shapes or example tensors, got {inputs!r}")
    out = []
    for item in inputs:
        if isinstance(item, torch.Tensor):
            if item.dim() == 0 or item.shape[0] < 1:
                raise PrunekitError(f"an example input tensor needs a batch dimension first, got shape "
                                    f"{list(item.shape)}")
            out.append(item[:1].detach())
        else:
            out.append(_check_shape(item))
    return out


def input_shapes_of(templates: list):
    """The per-sample shape a report shows: one ``list[int]`` for one input, a list of them for several."""
    shapes = [list(t) if isinstance(t, list) else list(t.shape[1:]) for t in templates]
    return shapes[0] if len(shapes) == 1 else shapes


def shape_text(shape) -> str:
    """``[3, 32, 32] -> "3x32x32"``; several inputs joined with ``" + "``."""
    if shape and isinstance(shape[0], (list, tuple)):
        return " + ".join(shape_text(s) for s in shape)
    return "x".join(str(s) for s in shape)


def make_inputs(model, templates: list, batch_size: int, seed: int = 0):
    """A batch of ``batch_size`` for each template of :func:`resolve_inputs`: a tensor for one input, else a tuple.

    Shapes get reproducible random normal values; an example tensor's first sample is
    repeated. Floating-point inputs take the model's dtype; all go to its device.
    """
    device, dtype = model_device_dtype(model)
    out = []
    for i, t in enumerate(templates):
        if isinstance(t, list):
            out.append(make_input(model, t, batch_size, seed + i))
        else:
            x = t.expand(batch_size, *t.shape[1:]).contiguous()
            out.append(x.to(device=device, dtype=dtype if x.is_floating_point() else x.dtype))
    return out[0] if len(out) == 1 else tuple(out)


def model_device_dtype(model):
    """(device, dtype) of the model's first floating-point parameter or buffer; CPU float32 if it has none."""
    import torch

    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            return t.device, t.dtype
    return torch.device("cpu"), torch.float32


def make_input(model, input_shape: Sequence[int], batch_size: int, seed: int = 0):
    """A reproducible random input of shape ``(batch_size, *input_shape)`` on the model's device and dtype."""
    import torch

    device, dtype = model_device_dtype(model)
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch_size, *input_shape, generator=gen).to(device=device, dtype=dtype)


def plain_shape(value):
    """A stored input shape read back: ``list[int]``, or a list of them for several inputs (ValueError if neither)."""
    if isinstance(value, (list, tuple)) and value and all(isinstance(s, (list, tuple)) for s in value):
        return [[int(s) for s in shape] for shape in value]
    return [int(s) for s in value]
