"""The model zoo: the seeds' architectures, built by name.

Example:
    >>> from prunekit import models
    >>> net = models.create("resnet20", num_classes=10, in_channels=1)
    >>> "lenet5" in models.list_models()
    True
"""
from __future__ import annotations

import importlib

from prunekit.models.registry import MODELS, ModelInfo, register_model
from prunekit.spec import ModelSpec, attach_spec
from prunekit.validate import check_int

# Modules that define models; importing them fills the registry.
_MODEL_MODULES = (
    "prunekit.models.lenet",
    "prunekit.models.vgg",
    "prunekit.models.resnet",
    "prunekit.models.preresnet",
    "prunekit.models.mobilenet",
    "prunekit.models.shufflenet",
    "prunekit.models.squeezenet",
)
_loaded = False


def _load_all() -> None:
    global _loaded
    if not _loaded:
        for mod in _MODEL_MODULES:
            importlib.import_module(mod)
        _loaded = True


def list_models() -> list[str]:
    """Names of all registered architectures, sorted."""
    _load_all()
    return MODELS.names()


def model_info(name: str) -> ModelInfo:
    """Metadata (input size, paper, tags) of a registered architecture."""
    _load_all()
    return MODELS.get(name)


def create(name: str, num_classes: int = 10, in_channels: int = 3, input_size=None, **kwargs):
    """Build the registered architecture ``name``.

    The returned module carries ``model.prunekit_spec`` (a
    :class:`prunekit.spec.ModelSpec`) so it can be saved and rebuilt by name.

    Args:
        name: registry name, see :func:`list_models`.
        num_classes: size of the classifier output.
        in_channels: channels of the input image (1 for MNIST, 3 for CIFAR/ImageNet).
        input_size: (height, width) the model will be fed; defaults to the
            architecture's own (see :func:`model_info`). Only recorded in the
            spec, except for models whose classifier size depends on it.
        **kwargs: architecture-specific options (e.g. ``cfg`` for VGG, ``width_mult``).
    """
    info = model_info(name)
    # ConfigError is a ValueError too; bools are refused (``num_classes: true`` is a typo, not 1)
    num_classes = check_int("num_classes", num_classes)
    in_channels = check_int("in_channels", in_channels)
    size = tuple(input_size) if input_size is not None else info.input_size
    if "input_size" in info.fn.__code__.co_varnames[: info.fn.__code__.co_argcount + info.fn.__code__.co_kwonlyargcount]:
        kwargs["input_size"] = size
    model = info.fn(num_classes=num_classes, in_channels=in_channels, **kwargs)
    all_kwargs = {"num_classes": num_classes, "in_channels": in_channels, **kwargs}
    if "input_size" in all_kwargs:
        all_kwargs["input_size"] = list(all_kwargs["input_size"])
    return attach_spec(model, ModelSpec(arch={"model": name, "kwargs": all_kwargs}, input_shape=[in_channels, *size]))


def from_factory(factory, kwargs: dict | None = None, *, input_shape, weights=None):
    """A model of your own built by ``factory``, its spec attached: :func:`prunekit.models.user.from_factory`."""
    from prunekit.models.user import from_factory as build

    return build(factory, kwargs, input_shape=input_shape, weights=weights)


def load_exported(path):
    """``(module, example_inputs)`` of a ``torch.export`` ``.pt2``: :func:`prunekit.models.user.load_exported`."""
    from prunekit.models.user import load_exported as load

    return load(path)


__all__ = ["MODELS", "ModelInfo", "create", "from_factory", "list_models", "load_exported", "model_info",
           "register_model"]
