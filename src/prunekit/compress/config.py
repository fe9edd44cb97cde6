"""The configuration of a Deep Compression run, as one dataclass that round-trips to dict/JSON/YAML."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import ClassVar, Literal, Optional, Union

from prunekit.errors import ConfigError
from prunekit.train import FinetuneConfig, as_finetune, finetune_field
from prunekit.validate import check_fraction, check_int, check_number


@dataclass
class CompressRetrain(FinetuneConfig):
    """The masked retraining after each pruning round: :class:`~prunekit.train.FinetuneConfig` with Deep
    Compression's defaults (off: ``epochs=0``; SGD at 0.01, batch 128, no augmentation)."""

    epochs: int = 0
    batch_size: int = 128
    lr: float = 0.01
    augment: bool = False
    checkpoint_every: int = 0


@dataclass
class CompressFinetune(CompressRetrain):
    """Centroid fine-tuning after weight sharing: as :class:`CompressRetrain` at the smaller rate 1e-4
    (only the shared values move; Han et al., ICLR 2016, section 3.3)."""

    lr: float = 1e-4


@dataclass
class CompressConfig:
    """Options of :func:`prunekit.compress.compress_model` (Han et al., ICLR 2016).

    Weight sharing:
        bits_conv / bits_fc: bits per cluster index; ``2**bits`` shared values per
            layer (paper: 8 for conv, 5 for fully connected).
        bits: per-layer overrides, ``{fnmatch pattern of the weight name: bits}``,
            e.g. ``{"features.0.weight": 6}``; the first matching pattern wins.
        init: k-means initialisation, ``"linear"`` (the paper's best), ``"density"`` or ``"random"``.
        max_iter: Lloyd iterations at most.
        codebook_dtype: how shared values are stored, ``"float32"`` or ``"float16"``.
        exclude: fnmatch patterns of conv/linear weights to keep unquantized.

    Storage:
        index_bits_conv / index_bits_fc: bits per relative position of a sparse layer
            (paper: 8 conv, 5 fc); ``index_bits`` overrides per layer like ``bits``.
        layout: ``"auto"`` (relative-index sparse storage when it is smaller than
            storing every index), ``"sparse"`` or ``"dense"``.
        coder: entropy coder of the index streams: ``"huffman"`` (the paper) or
            ``"rans"`` (within a fraction of a percent of the entropy).
        lane_len: symbols per independently decodable lane of a coded stream.

    Pipeline (only used when pruning or fine-tuning is asked for; needs data):
        prune_sparsity: magnitude-prune this fraction of each layer's weights
            (``prunekit.sparse.magnitude_masks``; a ``{layer: fraction}`` dict for
            per-layer rates as in the paper), or
        quality: Deep Compression's threshold ``quality * std`` per layer
            (``prunekit.sparse.std_threshold_masks``); at most one of the two.
        prune_scope: ``"layer"`` or ``"global"`` for ``prune_sparsity``.
        prune_rounds: iterative pruning (Han et al., NeurIPS 2015): reach ``prune_sparsity``
            in this many rounds, each pruning the same fraction of the survivors and
            followed by retraining (with ``quality``, each round re-applies the threshold
            to the survivors' std).
        retrain: masked retraining after each pruning round (:class:`CompressRetrain`, a
            :class:`prunekit.train.FinetuneConfig`: ``{epochs, lr, batch_size, optimizer, ...}``;
            ``epochs: 0``, the default, skips it).
        finetune: centroid fine-tuning after sharing (:class:`CompressFinetune`; off by default).
        seed: k-means random init and (unless ``retrain.seed`` / ``finetune.seed`` are set) training.

    Example:
        >>> from prunekit.config import from_dict, to_dict
        >>> cfg = from_dict(CompressConfig, {"bits_fc": 4, "coder": "rans", "finetune": {"epochs": 2}})
        >>> to_dict(cfg)["bits_fc"], cfg.finetune.epochs, cfg.finetune.lr
        (4, 2, 0.0001)
    """

    #: keys of the flat spelling before each training phase was one nested FinetuneConfig
    RENAMED_KEYS: ClassVar[dict] = {
        "retrain_epochs": "retrain.epochs (retrain: {epochs: N})", "retrain_lr": "retrain.lr (retrain: {lr: X})",
        "finetune_epochs": "finetune.epochs (finetune: {epochs: N})",
        "finetune_lr": "finetune.lr (finetune: {lr: X})",
        "batch_size": "retrain.batch_size and finetune.batch_size",
        "train": "keys of retrain and finetune (e.g. retrain: {optimizer: adam}, finetune: {optimizer: adam})"}

    bits_conv: int = 8
    bits_fc: int = 5
    bits: dict = field(default_factory=dict)
    index_bits_conv: int = 8
    index_bits_fc: int = 5
    index_bits: dict = field(default_factory=dict)
    init: Literal["linear", "density", "random"] = "linear"
    max_iter: int = 100
    codebook_dtype: Literal["float32", "float16"] = "float32"
    exclude: list = field(default_factory=list)
    layout: Literal["auto", "sparse", "dense"] = "auto"
    coder: Literal["huffman", "rans"] = "huffman"
    lane_len: int = 4096
    prune_sparsity: Optional[Union[float, dict]] = None
    quality: Optional[Union[float, dict]] = None
    prune_scope: Literal["layer", "global"] = "layer"
    prune_rounds: int = 1
    retrain: CompressRetrain = finetune_field(CompressRetrain)
    finetune: CompressFinetune = finetune_field(CompressFinetune)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("bits_conv", "bits_fc"):
            _check_bits(name, getattr(self, name), 1, 12)
        for name in ("index_bits_conv", "index_bits_fc"):
            _check_bits(name, getattr(self, name), 1, 12)
        for table, hi in (("bits", 12), ("index_bits", 12)):
            value = getattr(self, table)
            if not isinstance(value, dict):
                raise ConfigError(f"{table}: expected a mapping of layer patterns to bits, got {value!r}")
            for pattern, b in value.items():
                _check_bits(f"{table}[{pattern!r}]", b, 1, hi)
        if not isinstance(self.exclude, (list, tuple)) or not all(isinstance(p, str) for p in self.exclude):
            raise ConfigError(f"exclude: expected a list of layer-name patterns, got {self.exclude!r}")
        if self.init not in ("linear", "density", "random"):
            raise ConfigError(f"init: must be 'linear', 'density' or 'random', got {self.init!r}")
        if self.codebook_dtype not in ("float32", "float16"):
            raise ConfigError(f"codebook_dtype: must be 'float32' or 'float16', got {self.codebook_dtype!r}")
        if self.layout not in ("auto", "sparse", "dense"):
            raise ConfigError(f"layout: must be 'auto', 'sparse' or 'dense', got {self.layout!r}")
        if self.coder not in ("huffman", "rans"):
            raise ConfigError(f"coder: must be 'huffman' or 'rans', got {self.coder!r}")
        if self.prune_scope not in ("layer", "global"):
            raise ConfigError(f"prune_scope: must be 'layer' or 'global', got {self.prune_scope!r}")
        if self.max_iter < 1:
            raise ConfigError(f"max_iter: must be >= 1, got {self.max_iter}")
        if self.lane_len < 1:
            raise ConfigError(f"lane_len: must be >= 1, got {self.lane_len}")
        if self.prune_sparsity is not None and self.quality is not None:
            raise ConfigError("give at most one of prune_sparsity and quality")
        for key, check in (("prune_sparsity", check_fraction), ("quality", partial(check_number, minimum=0.0))):
            value = getattr(self, key)
            items = value.items() if isinstance(value, dict) else ([(None, value)] if value is not None else [])
            for layer, v in items:
                check(f"{key}[{layer!r}]" if layer is not None else key, v)
        check_int("prune_rounds", self.prune_rounds)
        self.retrain = as_finetune(self.retrain, CompressRetrain, "retrain")
        self.finetune = as_finetune(self.finetune, CompressFinetune, "finetune")

    def weight_bits(self, name: str, kind: str) -> int:
        """Bits per cluster index of the weight ``name`` (``kind`` is ``"conv"`` or ``"fc"``)."""
        return _lookup(self.bits, name, self.bits_conv if kind == "conv" else self.bits_fc)

    def position_bits(self, name: str, kind: str) -> int:
        """Bits per relative position of the weight ``name``."""
        return _lookup(self.index_bits, name, self.index_bits_conv if kind == "conv" else self.index_bits_fc)

    def is_excluded(self, name: str) -> bool:
        """Whether ``name`` matches one of the ``exclude`` patterns."""
        from fnmatch import fnmatchcase

        return any(fnmatchcase(name, p) for p in self.exclude)


def _check_bits(name: str, value, lo: int, hi: int) -> None:
    check_int(name, value, minimum=lo, maximum=hi)


def _lookup(table: dict, name: str, default: int) -> int:
    from fnmatch import fnmatchcase

    for pattern, b in table.items():
        if fnmatchcase(name, pattern):
            return int(b)
    return default
