"""The model registry behind :func:`prunekit.models.create` (timm-style).

Each entry is a constructor ``fn(num_classes=..., in_channels=..., **kwargs) -> nn.Module``
plus metadata: the input size the architecture is meant for, and the smallest
input it still runs on.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from prunekit.registry import Registry


@dataclass(frozen=True)
class ModelInfo:
    """Metadata of a registered architecture.

    Attributes:
        name: registry name, e.g. ``"resnet56"``.
        fn: the constructor.
        input_size: (height, width) the architecture is designed for, e.g. (32, 32).
        min_input_size: smallest (height, width) it runs on (e.g. 28x28 grayscale MNIST).
        paper: the paper the architecture comes from.
        tags: free-form labels ("cifar", "imagenet", "mnist", "mobile").
    """

    name: str
    fn: Callable
    input_size: tuple[int, int]
    min_input_size: tuple[int, int]
    paper: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)


MODELS: Registry[ModelInfo] = Registry("model")


def register_model(name: str, *, input_size=(32, 32), min_input_size=None, paper: str = "", tags=()):
    """Decorator registering a model constructor under ``name`` (duplicates raise).

    Example:
        >>> @register_model("tiny_mlp_example", input_size=(28, 28))   # doctest: +SKIP
        ... def tiny(num_classes=10, in_channels=1): ...
    """

    def decorator(fn: Callable) -> Callable:
        MODELS.add(
            name,
            ModelInfo(
                name=name,
                fn=fn,
                input_size=tuple(input_size),
                min_input_size=tuple(min_input_size or input_size),
                paper=paper,
                tags=tuple(tags),
            ),
        )
        return fn

    return decorator
