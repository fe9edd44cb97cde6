"""The training loop: one plain, fast loop that pruning methods extend through callbacks.

Example:
    >>> from prunekit import data, models, train
    >>> splits = data.load_dataset("digits")                                   # doctest: +SKIP
    >>> net = models.create("lenet300_100", in_channels=1, input_size=(8, 8))  # doctest: +SKIP
    >>> history = train.fit(net, splits, train.TrainConfig(epochs=5, lr=0.05)) # doctest: +SKIP
    >>> history.best()["test_top1"] > 90                                       # doctest: +SKIP
    True
"""
from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from pathlib import Path
from typing import Callable, Iterable

from prunekit.errors import CheckpointError, ConfigError, PrunekitError
from prunekit.train import distributed as D
from prunekit.train import state as S
from prunekit.train.callbacks import Callback, CallbackList
from prunekit.train.config import TrainConfig
from prunekit.train.history import History
from prunekit.train.metrics import eval_sums, model_device, sums_to_metrics
from prunekit.train.optim import build_optimizer, lr_factor, set_lr

_DATA_FIELDS = ("train_x", "train_y", "test_x", "test_y", "num_classes")


class Trainer:
    """Train a classifier on an in-memory :class:`prunekit.data.DatasetSplits`.

    Args:
        model: the module to train (moved to the configured device in place, and back to the
            device it came on when :meth:`fit` returns, so a CPU model trained on a GPU can be
            pruned, measured and saved on the CPU afterwards, as in PyTorch Lightning's teardown).
        data: the dataset (``train_x/train_y`` are trained on, ``test_x/test_y``
            evaluated after each epoch; use ``data.holdout()`` to tune on a validation split).
        config: a :class:`TrainConfig`, a dict of its keys, or None for the defaults.
        callbacks: :class:`Callback` instances, called in the given order.
        out_dir: folder for ``last.pt``, ``best.pt``, ``history.json`` and ``config.yaml``;
            None writes nothing. The model needs a ``prunekit_spec`` (models from
            :func:`prunekit.models.create` have one) to be checkpointed.
        resume: continue from ``out_dir/last.pt`` when it exists; the result equals an
            uninterrupted run with the same config.
        overwrite: allow a fresh run into an ``out_dir`` that already holds checkpoints.
        params: parameters or param-group dicts for the optimizer instead of
            ``model.parameters()`` (e.g. shared centroids in Deep Compression fine-tuning).
        optimizer_factory: ``fn(model, config) -> torch.optim.Optimizer`` replacing the
            optimizer named in the config entirely.
        loss_fn: ``fn(outputs, targets) -> scalar`` replacing cross-entropy with
            ``config.label_smoothing`` (e.g. knowledge distillation).
        meta: extra JSON-able entries for the checkpoints' ``meta`` (e.g. the command line).

    Attributes seen by callbacks: ``model``, ``optimizer``, ``config``, ``data``,
    ``global_step``, ``epoch`` (0-based), ``steps_per_epoch``, ``history``,
    ``stop_training``, ``rank``, ``world_size``, ``is_main``, ``device``.
    """

    def __init__(self, model, data, config: TrainConfig | dict | None = None, callbacks: Iterable[Callback] = (),
                 out_dir: str | os.PathLike | None = None, resume: bool = False, *, overwrite: bool = False,
                 params=None, optimizer_factory: Callable | None = None, loss_fn: Callable | None = None,
                 meta: dict | None = None) -> None:
        import torch

        self.config = _as_config(config)
        _check_data(data)
        self.data = data
        self.model = model
        self.callbacks = CallbackList(callbacks)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.resume = bool(resume)
        if self.out_dir is not None:
            _check_spec(model)
            check_run_dir(self.out_dir, self.resume, overwrite)
        self.overwrite = bool(overwrite)
        self.extra_meta = dict(meta or {})
        self.device = _resolve_device(self.config)
        self._home_device = model_device(model)
        self.model.to(self.device)
        if params is not None and optimizer_factory is not None:
            raise PrunekitError("Trainer: pass either params= or optimizer_factory=, not both")
        if optimizer_factory is not None:
            self.optimizer = optimizer_factory(self.model, self.config)
        else:
            self.optimizer = build_optimizer(self.model.parameters() if params is None else params, self.config)
        self.loss_fn = loss_fn or torch.nn.CrossEntropyLoss(label_smoothing=self.config.label_smoothing)
        self.history = History()
        self.global_step = 0
        self.epoch = 0
        self.epochs_done = 0
        self.stop_training = False
        self.finished = False
        self._dist = D.DistContext()
        self._net = self.model  # what the loop calls: the DDP wrapper in distributed runs
        self._loader = None
        self._fitted = False
        self.steps_per_epoch = self._count_steps(D.env_world_size() if D.wants_distributed(
            self.config.distributed) else 1, 0)

    # ---- properties callbacks read ------------------------------------------------------------

    @property
    def rank(self) -> int:
        return self._dist.rank

    @property
    def world_size(self) -> int:
        return self._dist.world_size

    @property
    def is_main(self) -> bool:
        """True on the process that writes files and shows progress (rank 0)."""
        return self._dist.is_main

    # ---- the run -------------------------------------------------------------------------------

    def fit(self) -> History:
        """Train for ``config.epochs`` epochs (or until a callback stops it); returns the history."""
        if self._fitted:
            raise PrunekitError("Trainer.fit() was already called; build a new Trainer (with resume=True to "
                                "continue from out_dir/last.pt)")
        self._fitted = True
        try:
            return self._fit()
        finally:
            if self._home_device != self.device:
                self.model.to(self._home_device)

    def _fit(self) -> History:
        with self._run_context():
            start_epoch = self._start()
            for epoch in range(start_epoch, self.config.epochs):
                if self.finished:
                    break
                self.epoch = epoch
                t0 = time.perf_counter()
                S.seed_epoch(self.config.seed, epoch, self.rank)
                self.callbacks.call("on_epoch_begin", self, epoch)
                lr = _base_lr(self.optimizer) * lr_factor(self.config, self.global_step, self.steps_per_epoch)
                train_metrics = self._train_epoch(epoch)
                if not math.isfinite(train_metrics["train_loss"]):
                    # a diverged model is not a result: stop before it is written as last.pt / best.pt
                    raise PrunekitError(f"training diverged: the training loss became {train_metrics['train_loss']} "
                                        f"in epoch {epoch + 1}; lower the learning rate or momentum (or set "
                                        "grad_clip)")
                D.broadcast_buffers(self.model, self._dist)
                record = {"epoch": epoch, "lr": lr, **train_metrics, **self._maybe_evaluate(epoch)}
                record["seconds"] = time.perf_counter() - t0
                self.history.append(record)
                self.epochs_done = epoch + 1
                self.callbacks.call("on_epoch_end", self, epoch, record)
                self.stop_training = D.any_rank(self.stop_training, self._dist, self.device)
                if self.stop_training and record["test_top1"] is None:
                    record.update(self._maybe_evaluate(epoch))  # the final epoch is always evaluated
                self.finished = self.stop_training or self.epochs_done >= self.config.epochs
                self._write_checkpoints(record)
            if self.config.epochs == 0 and not self.history:
                self.finished = True
            self.callbacks.call("on_train_end", self)
            D.barrier(self._dist)
        return self.history

    @contextlib.contextmanager
    def _run_context(self):
        """Threads, determinism and the process group for the duration of :meth:`fit`."""
        import torch

        prev_threads = torch.get_num_threads()
        prev_det = torch.are_deterministic_algorithms_enabled()
        try:
            if self.config.num_threads is not None:
                torch.set_num_threads(self.config.num_threads)
            if self.config.deterministic:
                if self.device.type == "cuda":
                    # cuBLAS needs this before its first call to be deterministic
                    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
                torch.use_deterministic_algorithms(True)
            self._dist = D.setup(self.config.distributed, self.device.type)
            if self._dist.enabled:
                self._net = D.wrap_ddp(self.model, self._dist, self.device)
            yield
        finally:
            self._net = self.model
            self._dist.close()
            torch.use_deterministic_algorithms(prev_det)
            torch.set_num_threads(prev_threads)

    def _start(self) -> int:
        """Restore a resumed run (or start fresh); calls ``on_train_begin``; returns the first epoch."""
        self._loader = self._make_loader()
        # equal on every rank by construction; the MIN guards against a rank hanging in DDP
        # if a caller hands the ranks different data
        self.steps_per_epoch = D.all_reduce_min_int(len(self._loader), self._dist, self.device)
        resumed = None
        last = self.out_dir / S.LAST if self.out_dir is not None else None
        if self.resume and last is not None and last.is_file():
            state_dict, ts = S.read_resume_state(last)
            S.check_compatible(last, ts, self.config, self.steps_per_epoch, self.world_size)
            S.load_model_state(self.model, state_dict, last)
            self.history = History(ts["history"])
            self.global_step = int(ts["global_step"])
            self.epochs_done = self.epoch = int(ts["epoch"])
            # an early stop is final; a run that used up its epochs continues if epochs grew
            self.finished = bool(ts.get("stopped_early", False)) or self.epochs_done >= self.config.epochs
            resumed = ts
        elif self.resume and self.is_main:
            warnings.warn(f"resume=True but {last} does not exist: starting a fresh run", stacklevel=3)
        if resumed is None and self.overwrite:
            self._clear_stale_files()
        self._write_config()
        self.callbacks.call("on_train_begin", self)
        if resumed is not None:
            try:
                self.optimizer.load_state_dict(resumed["optimizer"])
            except (ValueError, KeyError) as e:
                raise CheckpointError(f"{last}: optimizer state does not fit this optimizer: {e}") from None
            states = resumed.get("callbacks", [])
            if len(states) == len(self.callbacks):
                for cb, st in zip(self.callbacks, states):
                    cb.load_state_dict(st)
            elif any(states):
                warnings.warn(f"{last} holds state for {len(states)} callbacks but {len(self.callbacks)} "
                              "were given: callback state not restored", stacklevel=3)
        return self.epochs_done

    def _train_epoch(self, epoch: int) -> dict:
        import torch

        cfg, net, opt, cbs = self.config, self._net, self.optimizer, self.callbacks
        steps = self.steps_per_epoch
        net.train()
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)  # loss*n, correct, n
        bar = _progress_bar(steps, f"epoch {epoch + 1}/{cfg.epochs}", cfg.progress and self.is_main)
        refresh = max(1, steps // 20)
        try:
            self._loader.set_epoch(epoch)
            for i, (xb, yb) in enumerate(self._loader):
                if i >= steps:  # ranks with a longer shard stop with the others
                    break
                xb = xb.to(self.device, non_blocking=True)
                yb = yb.to(self.device, non_blocking=True)
                set_lr(opt, lr_factor(cfg, self.global_step, steps))
                opt.zero_grad(set_to_none=True)
                out = net(xb)
                loss = self.loss_fn(out, yb)
                extra = cbs.extra_loss(self, out, yb)
                (loss if extra is None else loss + extra).backward()
                cbs.after_backward(self)
                if cfg.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
                opt.step()
                self.global_step += 1
                cbs.step_end(self, self.global_step)
                with torch.no_grad():
                    n = yb.shape[0]
                    sums[0] += loss.detach() * n
                    sums[1] += out.argmax(dim=1).eq(yb).sum()
                    sums[2] += n
                if bar is not None:
                    bar.update(1)
                    if i % refresh == 0:
                        bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
                if self.stop_training and not self._dist.enabled:
                    break  # single process: stop at once; distributed: at the epoch end, all together
        finally:
            if bar is not None:
                bar.close()
        D.all_reduce_sum(sums, self._dist)
        loss_sum, correct, n = sums.tolist()
        if n == 0:
            raise PrunekitError("training set yielded no batches (is it empty?)")
        return {"train_loss": loss_sum / n, "train_top1": 100.0 * correct / n}

    def _maybe_evaluate(self, epoch: int) -> dict:
        every = self.config.eval_every
        last = epoch + 1 >= self.config.epochs or self.stop_training
        if not (last or (every > 0 and (epoch + 1) % every == 0)) or len(self.data.test_y) == 0:
            return {"test_loss": None, "test_top1": None, "test_top5": None}
        metrics = self.evaluate()
        return {"test_loss": metrics["loss"], "test_top1": metrics["top1"], "test_top5": metrics["top5"]}

    def evaluate(self, x=None, y=None) -> dict:
        """Metrics of the model on ``(x, y)`` (default: the test split), sharded over the ranks.

        Same result format as :func:`prunekit.train.evaluate`.
        """
        import torch

        x = self.data.test_x if x is None else x
        y = self.data.test_y if y is None else y
        r, w = self.rank, self.world_size
        xs, ys = (x, y) if w == 1 else (x[r::w], y[r::w])
        if len(ys):
            sums, k = eval_sums(self.model, xs, ys, self.config.eval_batch_size, self.device)
        else:
            sums, k = torch.zeros(4, dtype=torch.float64, device=self.device), 0
        D.all_reduce_sum(sums, self._dist)
        return sums_to_metrics(sums, int(getattr(self.data, "num_classes", k) or k))

    # ---- data ----------------------------------------------------------------------------------

    def _make_loader(self):
        """The training loader of this rank; its order depends only on (seed, epoch)."""
        from prunekit.data import TensorLoader

        augment = None
        if self.config.augment:
            from prunekit.data import default_augment

            augment = default_augment(self.data)
        return TensorLoader(self.data.train_x, self.data.train_y, self.config.batch_size, shuffle=True,
                            augment=augment, seed=self.config.seed, drop_last=False,
                            rank=self.rank, world_size=self.world_size)

    def _count_steps(self, world_size: int, rank: int) -> int:
        from prunekit.data import TensorLoader

        return len(TensorLoader(self.data.train_x, self.data.train_y, self.config.batch_size, shuffle=False,
                                rank=rank, world_size=world_size))

    # ---- files ---------------------------------------------------------------------------------

    def _clear_stale_files(self) -> None:
        # A fresh run into an existing folder (overwrite=True) must not leave the old
        # run's best.pt behind to be mistaken for this run's.
        if self.out_dir is None or not self.is_main:
            return
        for name in S.RUN_FILES:
            p = self.out_dir / name
            if p.is_file():
                p.unlink()

    def _write_config(self) -> None:
        if self.out_dir is None or not self.is_main:
            return
        from prunekit.utils.io import atomic_write

        with atomic_write(self.out_dir / S.CONFIG, "w") as f:
            f.write(self.config.to_yaml())

    def _write_checkpoints(self, record: dict) -> None:
        if self.out_dir is None or not self.is_main:
            return
        from prunekit import checkpoint

        every = self.config.checkpoint_every
        best = self.history.best()
        if best is not None and best is record:
            checkpoint.save(self.out_dir / S.BEST, self.model, meta=S.meta(self, "best"))
        if self.finished or (every > 0 and self.epochs_done % every == 0):
            checkpoint.save(self.out_dir / S.LAST, self.model, meta=S.meta(self, "last"),
                            train_state=S.train_state(self))
        self.history.save(self.out_dir / S.HISTORY)

    @property
    def last_path(self) -> Path | None:
        """``out_dir/last.pt`` (None without an out_dir)."""
        return self.out_dir / S.LAST if self.out_dir is not None else None

    @property
    def best_path(self) -> Path | None:
        """``out_dir/best.pt`` (None without an out_dir)."""
        return self.out_dir / S.BEST if self.out_dir is not None else None


def fit(model, data, config: TrainConfig | dict | None = None, callbacks: Iterable[Callback] = (),
        out_dir: str | os.PathLike | None = None, resume: bool = False, **kwargs) -> History:
    """Train ``model`` on ``data``: ``Trainer(model, data, config, callbacks, out_dir, resume, **kwargs).fit()``.

    Example:
        >>> history = fit(net, load_dataset("digits"), {"epochs": 3})   # doctest: +SKIP
    """
    return Trainer(model, data, config, callbacks, out_dir, resume, **kwargs).fit()


# ---- helpers -----------------------------------------------------------------------------------


def check_run_dir(out_dir: str | os.PathLike, resume: bool = False, overwrite: bool = False) -> Path:
    """Refuse a fresh run into a folder holding a previous run's files (unless resuming or overwriting).

    The files are ``last.pt``, ``best.pt``, ``history.json`` and ``config.yaml``; returns ``Path(out_dir)``.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise PrunekitError(f"{out} exists and is not a directory")
    existing = [p for p in (out / name for name in S.RUN_FILES) if p.exists()]
    if existing and not (resume or overwrite):
        raise PrunekitError(f"{existing[0]} already exists; continue that run (resume=True, CLI --resume) "
                            "or replace it (overwrite=True, CLI --overwrite)")
    return out


def _check_spec(model) -> None:
    from prunekit.checkpoint import get_spec

    if get_spec(model) is None:
        raise CheckpointError(
            "Trainer(out_dir=...) saves checkpoints, but the model has no prunekit_spec; build it with "
            "prunekit.models.create, or a model of your own with prunekit.models.from_factory('module:function', "
            "{...}, input_shape=(C, H, W)) (docs/your-model.md)")


def _as_config(config) -> TrainConfig:
    if config is None:
        return TrainConfig()
    if isinstance(config, TrainConfig):
        # a FinetuneConfig whose seed was left to its holder, run on its own: seed 0
        return config if config.seed is not None else config.replace(seed=0)
    if isinstance(config, dict):
        return TrainConfig.from_dict(config)
    raise ConfigError(f"config must be a TrainConfig or a dict, got {type(config).__name__}")


def _check_data(data) -> None:
    missing = [f for f in _DATA_FIELDS if not hasattr(data, f)]
    if missing:
        raise PrunekitError(f"data must be a prunekit.data.DatasetSplits (missing {', '.join(missing)}); "
                            "load one with prunekit.data.load_dataset(name)")
    if len(data.train_y) == 0:
        raise PrunekitError(f"dataset {getattr(data, 'name', '?')!r} has an empty training split")


def _resolve_device(cfg: TrainConfig):
    import torch

    distributed = D.wants_distributed(cfg.distributed)
    local_rank = int(os.environ.get("LOCAL_RANK", "0")) if distributed else None
    if cfg.device is None:
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", local_rank if local_rank is not None else torch.cuda.current_device())
    try:
        dev = torch.device(cfg.device)
    except RuntimeError:
        raise ConfigError(f"train config key 'device': {cfg.device!r} is not a torch device") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"train config key 'device' is {cfg.device!r} but CUDA is not available")
        if dev.index is None:
            dev = torch.device("cuda", local_rank if local_rank is not None else torch.cuda.current_device())
    return dev


def _base_lr(optimizer) -> float:
    group = optimizer.param_groups[0]
    return group.get("initial_lr", group["lr"])


def _progress_bar(total: int, desc: str, enabled: bool):
    from prunekit.utils.progress import progress_bar

    bar = progress_bar(total=total, desc=desc, unit="step", enabled=enabled)
    return None if bar.disable else bar  # None: skip the loss.item() sync the postfix would cost
