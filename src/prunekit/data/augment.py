"""Batched data augmentation on (N, C, H, W) tensors, reproducible through a torch.Generator.

Each transform is a callable ``t(x, generator=None) -> Tensor`` that draws all of
its random numbers for the whole batch at once from ``generator`` (the global
torch RNG when None), so the same generator state always gives the same output
and no Python loop runs per sample. Transforms never modify their input.

Transforms serialise to plain dicts (``to_config()``) and are rebuilt by
:func:`build_augment`, so training configs can name them.

Example:
    >>> import torch
    >>> aug = Compose([RandomCrop(padding=4), RandomHorizontalFlip(0.5)])
    >>> g = torch.Generator().manual_seed(0)
    >>> aug(torch.zeros(8, 3, 32, 32), g).shape
    torch.Size([8, 3, 32, 32])
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from prunekit.errors import ConfigError, PrunekitError
from prunekit.registry import Registry
from prunekit.validate import check_fraction, check_int, check_int_sequence

AUGMENTS: Registry[type] = Registry("augmentation")


def _check_batch(x: torch.Tensor, who: str) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise PrunekitError(f"{who} expects an (N, C, H, W) tensor, got {shape}")


class Augment:
    """Base class of batched augmentations; subclasses set ``kind`` and implement ``__call__``."""

    kind = ""

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    def params(self) -> dict:
        """Constructor arguments as JSON-able values."""
        return {}

    def to_config(self) -> dict:
        """``{"kind": ..., **params}``; :func:`build_augment` turns it back into the transform."""
        return {"kind": self.kind, **self.params()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.to_config() == other.to_config()


def _pair(value, name: str) -> tuple[int, int]:
    h, w = check_int_sequence(name, value, length=2, minimum=None, allow_scalar=True, error=PrunekitError)
    return h, w


@AUGMENTS.register("random_crop")
class RandomCrop(Augment):
    """Pad each image with ``fill`` on all sides, then crop a ``size`` window at a random offset.

    Offsets are drawn per sample: first all row offsets, then all column offsets,
    each uniform in ``[0, H + 2*padding - h]`` (``torch.randint``). ``size=None``
    keeps the input size, i.e. a random translation by up to ``padding`` pixels,
    the CIFAR recipe of He et al., "Deep Residual Learning" (2016).

    Data here is already normalized, so the default ``fill=0`` pads with the
    dataset mean rather than black; for training augmentation that is harmless.

    Example:
        >>> import torch
        >>> x = torch.arange(16.).view(1, 1, 4, 4)
        >>> RandomCrop(size=2)(x, torch.Generator().manual_seed(0)).shape
        torch.Size([1, 1, 2, 2])
    """

    kind = "random_crop"

    def __init__(self, size=None, padding=0, fill: float = 0.0) -> None:
        self.size = None if size is None else _pair(size, "RandomCrop size")
        self.padding = check_int("RandomCrop padding", padding, minimum=0, error=PrunekitError)
        if self.size is not None and min(self.size) < 1:
            raise PrunekitError(f"RandomCrop size must be positive, got {size!r}")
        self.fill = float(fill)

    def params(self) -> dict:
        return {"size": list(self.size) if self.size else None, "padding": self.padding, "fill": self.fill}

    def __call__(self, x, generator=None):
        _check_batch(x, "RandomCrop")
        n, c, h_in, w_in = x.shape
        h, w = self.size or (h_in, w_in)
        p = self.padding
        hp, wp = h_in + 2 * p, w_in + 2 * p
        if h > hp or w > wp:
            raise PrunekitError(f"RandomCrop size {(h, w)} exceeds the padded image {(hp, wp)}")
        padded = F.pad(x, (p, p, p, p), value=self.fill) if p else x
        oy = torch.randint(0, hp - h + 1, (n,), generator=generator).to(x.device)
        ox = torch.randint(0, wp - w + 1, (n,), generator=generator).to(x.device)
        rows = oy[:, None] + torch.arange(h, device=x.device)  # (n, h) source rows per sample
        cols = ox[:, None] + torch.arange(w, device=x.device)  # (n, w) source columns
        out = padded.gather(2, rows[:, None, :, None].expand(n, c, h, wp))
        return out.gather(3, cols[:, None, None, :].expand(n, c, h, w))


@AUGMENTS.register("random_hflip")
class RandomHorizontalFlip(Augment):
    """Mirror each image left-right with probability ``p`` (one ``torch.rand`` draw per sample).

    Not for digits or text, whose meaning changes when mirrored.
    """

    kind = "random_hflip"

    def __init__(self, p: float = 0.5) -> None:
        self.p = check_fraction("RandomHorizontalFlip p", p, allow_one=True, error=PrunekitError)

    def params(self) -> dict:
        return {"p": self.p}

    def __call__(self, x, generator=None):
        _check_batch(x, "RandomHorizontalFlip")
        flip = (torch.rand(x.shape[0], generator=generator) < self.p).to(x.device)
        return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)


@AUGMENTS.register("normalize")
class Normalize(Augment):
    """``(x - mean) / std`` per channel; deterministic (the generator is ignored)."""

    kind = "normalize"

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        if len(self.mean) != len(self.std) or not self.mean:
            raise PrunekitError(f"Normalize needs as many means as stds, got {self.mean} and {self.std}")
        if any(s <= 0 for s in self.std):
            raise PrunekitError(f"Normalize std must be positive, got {self.std}")

    def params(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std)}

    def __call__(self, x, generator=None):
        _check_batch(x, "Normalize")
        if x.shape[1] != len(self.mean):
            raise PrunekitError(f"Normalize has {len(self.mean)} channels, input has {x.shape[1]}")
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std


@AUGMENTS.register("compose")
class Compose(Augment):
    """Apply transforms in order, all drawing from the same generator; ``Compose([])`` is identity."""

    kind = "compose"

    def __init__(self, transforms: Sequence[Augment] = ()) -> None:
        self.transforms = tuple(transforms)
        for t in self.transforms:
            if not callable(t):
                raise PrunekitError(f"Compose items must be callables, got {t!r}")

    def params(self) -> dict:
        return {"transforms": [t.to_config() for t in self.transforms]}

    def __repr__(self) -> str:
        return f"Compose([{', '.join(map(repr, self.transforms))}])"

    def __call__(self, x, generator=None):
        for t in self.transforms:
            x = t(x, generator)
        return x


def build_augment(spec, splits=None) -> Augment | None:
    """Turn a config value into an augmentation.

    ``spec`` may be None / ``"none"`` (no augmentation), ``"default"`` (needs
    ``splits``; see :func:`default_augment`), an :class:`Augment`, a dict
    ``{"kind": ..., **params}`` as written by ``to_config()``, or a list of those
    (composed in order).

    Raises:
        ConfigError: unknown kind or parameter, naming it.

    Example:
        >>> build_augment([{"kind": "random_crop", "padding": 2}, {"kind": "random_hflip", "p": 0.5}])
        Compose([RandomCrop(size=None, padding=2, fill=0.0), RandomHorizontalFlip(p=0.5)])
    """
    import inspect

    if spec is None or spec == "none":
        return None
    if isinstance(spec, Augment):
        return spec
    if spec == "default":
        if splits is None:
            raise ConfigError("augment 'default' needs the dataset (pass splits=)")
        return default_augment(splits)
    if isinstance(spec, (list, tuple)):
        return Compose([build_augment(s, splits) or Compose() for s in spec])
    if not isinstance(spec, dict):
        raise ConfigError(f"augment must be none, 'default', a dict or a list, got {spec!r}")
    params = dict(spec)
    kind = params.pop("kind", None)
    if kind not in AUGMENTS:
        raise ConfigError(f"augment kind {kind!r} unknown; known: {', '.join(AUGMENTS.names())}")
    cls = AUGMENTS.get(kind)
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ConfigError(f"augment {kind!r}: unknown key(s) {', '.join(unknown)}; accepted: {', '.join(accepted)}")
    if kind == "compose":
        params["transforms"] = [build_augment(t, splits) or Compose() for t in params.get("transforms", [])]
    try:
        return cls(**params)
    except (PrunekitError, TypeError) as e:
        raise ConfigError(f"augment {kind!r}: {e}") from None


def default_augment(splits) -> Compose:
    """A sensible training augmentation for a :class:`~prunekit.data.DatasetSplits`.

    * digits (mnist5k, digits, mnist-idx): random translation by about 1/14 of the
      image side (2 px at 28x28, 1 px at 8x8), no flip (a mirrored digit is another symbol);
    * natural images (CIFAR, imagefolder): padding 4 at 32x32 (1/8 of the side)
      plus horizontal flip, the usual CIFAR recipe;
    * synthetic: the same translation as natural images, no flip (its class
      patterns are not mirror-symmetric).
    """
    domain = getattr(splits, "domain", "natural")
    h = splits.image_size[0]
    if domain == "digits":
        return Compose([RandomCrop(padding=max(1, round(h / 14)))])
    crop = RandomCrop(padding=max(1, round(h / 8)))
    if domain == "synthetic":
        return Compose([crop])
    return Compose([crop, RandomHorizontalFlip(0.5)])
