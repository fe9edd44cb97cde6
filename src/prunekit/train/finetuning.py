"""Fine-tuning, one way for every method family: :class:`FinetuneConfig`, :func:`run_finetune`, :func:`reinitialize`.

Every config that fine-tunes a model (the weight-level methods, the structured
methods, search, Deep Compression, binarization, the recipe ``finetune`` step)
holds its fine-tuning as one nested :class:`FinetuneConfig` field, written in YAML
as ``finetune: {epochs: 3, lr: 0.01}``; :func:`run_finetune` runs it, and the
command line gets its flags (``--finetune-epochs``, ``--finetune-lr``, ...) from
the fields, in one place (:mod:`prunekit.cli.finetune_flags`). A family with
defaults of its own (Deep Compression fine-tunes centroids at 1e-4, the Lottery
Ticket trains with Adam at 1.2e-3) declares a subclass that only changes
defaults, so a recipe that sets ``finetune: {epochs: 3}`` keeps the family's
defaults for every other key.

"Train from scratch" is :func:`reinitialize` wherever it happens (the structured
methods' ``from_scratch``, the search's ``init: scratch``, the Lottery Ticket's
random re-initialisation control, ``binarize --from-scratch``), so a
from-scratch result of one family compares with another's.

Example:
    >>> cfg = FinetuneConfig.from_dict({"epochs": 3, "lr": 0.01, "label_smoothing": 0.1})
    >>> (cfg.epochs, cfg.lr, cfg.label_smoothing, cfg.seed)
    (3, 0.01, 0.1, None)
    >>> trainer = run_finetune(model, data, cfg, seed=7)      # doctest: +SKIP
    >>> trainer.config.seed                                   # doctest: +SKIP
    7
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

from prunekit.errors import ConfigError
from prunekit.train.config import TrainConfig, _flag


@dataclass
class FinetuneConfig(TrainConfig):
    """The fine-tuning of a method: every :class:`TrainConfig` key, the seed left to the method by default.

    Why a subclass of :class:`TrainConfig`, not a wrapper or a copy: a wrapper would
    nest the YAML one level deeper (``finetune: {train: {epochs: 3}}``) and a copy
    would have to be kept in step with TrainConfig by hand. Sharing the fields means
    :class:`~prunekit.train.Trainer` takes a FinetuneConfig as it is, and an option
    added to TrainConfig (with ``metadata["help"]`` to make it a flag) is at once a
    fine-tuning option of every family: a recipe key, a Python argument and a
    ``--finetune-*`` flag of every command that fine-tunes.

    The one field that differs is ``seed``: None (the default) means the ``seed`` of
    the config holding this fine-tuning, so one seed reproduces a whole method run
    (0 for configs without a seed). The defaults of the other fields are
    TrainConfig's; families declare subclasses with their own defaults (see
    :mod:`prunekit.train.finetuning`).

    Example:
        >>> FinetuneConfig(epochs=2).resolve(seed=5).seed
        5
        >>> FinetuneConfig.from_dict({"label_smoothing": 1.0})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        prunekit.errors.ConfigError: FinetuneConfig: train config key 'label_smoothing' must be in [0, 1), got 1.0
    """

    seed: Optional[int] = field(default=None, metadata=_flag("seed of data order and augmentation "
                                                             "(default: the method's seed)"))

    def resolve(self, *, seed: int | None = None, progress: bool | None = None) -> "FinetuneConfig":
        """A copy ready for :class:`~prunekit.train.Trainer`: ``seed`` filled in when unset, ``progress`` forced.

        Args:
            seed: the holder's seed, used when this config's ``seed`` is None (0 when both are None).
            progress: show (True) or hide (False) progress bars; None keeps ``self.progress``.
        """
        changes = {}
        if self.seed is None:
            changes["seed"] = int(seed or 0)
        if progress is not None and bool(progress) != self.progress:
            changes["progress"] = bool(progress)
        return self.replace(**changes) if changes else self


def as_finetune(value, cls: type = FinetuneConfig, where: str = "finetune") -> FinetuneConfig:
    """``value`` (None, a dict of keys, or any TrainConfig) as an instance of the FinetuneConfig subclass ``cls``.

    Keys missing from a dict take ``cls``'s defaults (the family's). A plain
    :class:`TrainConfig` or another family's FinetuneConfig contributes every field.

    Raises:
        ConfigError: an unknown key or a bad value, named as ``where.key``.
    """
    from prunekit.config import from_dict

    if value is None:
        return cls()
    if type(value) is cls:
        return value
    if isinstance(value, TrainConfig):
        value = value.to_dict()
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping of fine-tuning keys (epochs, lr, ...), got {value!r}")
    return from_dict(cls, value, where=where)


def finetune_field(cls: type = FinetuneConfig):
    """``dataclasses.field`` of a config's fine-tuning: a fresh ``cls()`` per instance (no shared default)."""
    return field(default_factory=cls)


def run_finetune(model, data, config: TrainConfig | dict | None = None, *, callbacks: Iterable = (),
                 progress: bool | None = None, seed: int | None = None, **trainer_kwargs):
    """Fine-tune ``model`` (in place) on ``data`` as ``config`` says; returns the fitted Trainer.

    The one place every family runs a fine-tuning, so an option of
    :class:`FinetuneConfig` acts the same everywhere (``label_smoothing`` goes into
    the cross-entropy of :class:`~prunekit.train.Trainer`).

    Args:
        config: a :class:`FinetuneConfig` (or TrainConfig, or a dict of keys; None: defaults).
        callbacks: :class:`~prunekit.train.Callback` objects (e.g. a mask-keeping
            ``prunekit.sparse.MaskCallback`` first, so pruned weights stay zero).
        progress: force progress bars on or off (None: the config's ``progress``).
        seed: the holder's seed, used when ``config.seed`` is None.
        trainer_kwargs: further :class:`~prunekit.train.Trainer` arguments (``out_dir``, ``resume``, ``params``...).

    Returns:
        The :class:`~prunekit.train.Trainer` after ``fit()`` (``.history``, ``.steps_per_epoch``, ``.config``).
    """
    from prunekit.train.trainer import Trainer

    cfg = config if isinstance(config, FinetuneConfig) else as_finetune(config)
    trainer = Trainer(model, data, cfg.resolve(seed=seed, progress=progress), callbacks=list(callbacks),
                      **trainer_kwargs)
    trainer.fit()
    return trainer


def reinitialize(model, seed: int = 0):
    """The one "train from scratch" rule: a copy of ``model`` with fresh weights, drawn as at construction.

    Used by every from-scratch comparison (the structured methods' ``from_scratch``,
    the Rethinking baseline of Liu et al., ICLR 2019; the search's ``init: scratch``;
    the Lottery Ticket's random re-initialisation control, Frankle & Carbin, ICLR
    2019; ``binarize --from-scratch``), so their results are comparable:

    * a model built by prunekit (it has a ``prunekit_spec``) is rebuilt from its spec:
      the architecture's own initialisation (He-normal convolutions in the zoo), with
      every structural transform replayed, so a pruned model gets the kept channels of
      a fresh dense initialisation, exactly the weights a Lottery-Ticket-style rewind
      to a new ``theta_0`` would give;
    * any other model gets ``reset_parameters()`` on every module that has one
      (PyTorch's default initialisation; BatchNorm statistics reset too).

    Draws come from a torch generator seeded with ``seed`` inside
    ``torch.random.fork_rng``: the same seed gives the same weights, and the caller's
    global random state is left as it was. ``model`` itself is not changed.

    Example:
        >>> import torch
        >>> net = torch.nn.Linear(3, 2)
        >>> a, b = reinitialize(net, 1), reinitialize(net, 1)
        >>> bool(torch.equal(a.weight, b.weight)) and not torch.equal(a.weight, net.weight)
        True
    """
    import copy

    import torch

    from prunekit.checkpoint import get_spec, rebuild

    new = copy.deepcopy(model)
    spec = get_spec(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        if spec is not None:
            # the spec comes from a model in memory: its factory (if any) was trusted when it was built
            new.load_state_dict(rebuild(model).state_dict())
        else:
            for m in new.modules():
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
    return new
