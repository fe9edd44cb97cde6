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
    try:
        shape = [int(s) for s in input_shape]
    except (TypeError, ValueError):
        raise PrunekitError(f"input_shape must be a sequence of positive integers, got {input_shape!r}") from None
    if not shape or any(s < 1 for s in shape):
        raise PrunekitError(f"input_shape must be a non-empty sequence of positive integers, got {input_shape!r}")
    return shape


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
