"""Extension points of :class:`prunekit.train.Trainer`.

Pruning methods plug into the one training loop through callbacks instead of
forking it. Within one optimizer step the hooks run in this order::

    on_train_begin(trainer)
    for each epoch:
        on_epoch_begin(trainer, epoch)
        for each batch:
            outputs = model(inputs)
            loss = criterion(outputs, targets) + sum(cb.extra_loss(trainer, outputs, targets))
            loss.backward()                  # gradients are all-reduced here under torchrun
            on_after_backward(trainer)       # edit .grad: masks, Network Slimming's sign(gamma)
            optimizer.step()
            on_step_end(trainer, step)       # edit weights: re-apply masks, ADMM updates
        evaluate
        on_epoch_end(trainer, epoch, metrics)
    on_train_end(trainer)

Every hook runs on every process of a distributed run (they must stay identical).
A callback stops training by setting ``trainer.stop_training = True``; the current
epoch is finished, evaluated and checkpointed first.

Example (Network Slimming, Liu et al. ICCV 2017: L1 sub-gradient on BN scales)::

    class Slimming(Callback):
        def __init__(self, lam): self.lam = lam
        def on_after_backward(self, trainer):
            for m in trainer.model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.weight.grad.add_(self.lam * torch.sign(m.weight.detach()))
"""
from __future__ import annotations

from typing import Callable, Iterable


class Callback:
    """Base class: override the hooks you need; all default to doing nothing.

    ``trainer`` exposes ``model`` (the unwrapped module), ``optimizer``, ``config``,
    ``global_step`` (optimizer steps taken so far), ``epoch`` (0-based),
    ``steps_per_epoch``, ``history``, ``rank``/``world_size``/``is_main`` and
    ``stop_training``.
    """

    def on_train_begin(self, trainer) -> None:
        """Before the first epoch (after a resume has restored state). May replace ``trainer.optimizer``."""

    def on_epoch_begin(self, trainer, epoch: int) -> None:
        """Before epoch ``epoch`` (0-based)."""

    def extra_loss(self, trainer, outputs, targets):
        """A scalar tensor added to the loss of this batch (e.g. a sparsity penalty), or None."""
        return None

    def on_after_backward(self, trainer) -> None:
        """After ``backward()`` and before ``optimizer.step()``: edit gradients here."""

    def on_step_end(self, trainer, step: int) -> None:
        """After ``optimizer.step()``; ``step`` is the 1-based global step just taken."""

    def on_epoch_end(self, trainer, epoch: int, metrics: dict) -> None:
        """After epoch ``epoch`` was evaluated; ``metrics`` is its history record (mutable)."""

    def on_train_end(self, trainer) -> None:
        """After the last epoch (or an early stop), before ``fit()`` returns."""

    def state_dict(self) -> dict:
        """Plain-data state stored in ``last.pt`` so a resumed run continues identically."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""


class CallbackList:
    """Calls a hook on each callback in order; ``extra_loss`` returns the summed tensors or None."""

    def __init__(self, callbacks: Iterable[Callback] = ()) -> None:
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                from prunekit.errors import PrunekitError

                raise PrunekitError(f"callbacks must subclass prunekit.train.Callback, got {type(cb).__name__}")
        # only call overridden hooks in the inner loop: keeps the per-step cost at zero
        # for the common no-callback case.
        self._step_hooks = {name: [getattr(cb, name) for cb in self.callbacks if _overrides(cb, name)]
                            for name in ("extra_loss", "on_after_backward", "on_step_end")}

    def __iter__(self):
        return iter(self.callbacks)

    def __len__(self) -> int:
        return len(self.callbacks)

    def call(self, hook: str, *args) -> None:
        """Call ``hook(*args)`` on every callback."""
        for cb in self.callbacks:
            getattr(cb, hook)(*args)

    def extra_loss(self, trainer, outputs, targets):
        total = None
        for fn in self._step_hooks["extra_loss"]:
            extra = fn(trainer, outputs, targets)
            if extra is not None:
                total = extra if total is None else total + extra
        return total

    def after_backward(self, trainer) -> None:
        for fn in self._step_hooks["on_after_backward"]:
            fn(trainer)

    def step_end(self, trainer, step: int) -> None:
        for fn in self._step_hooks["on_step_end"]:
            fn(trainer, step)


def _overrides(cb: Callback, name: str) -> bool:
    # a subclass method, or a function set on the instance (LambdaCallback)
    return getattr(type(cb), name) is not getattr(Callback, name) or name in vars(cb)


class LambdaCallback(Callback):
    """A callback from plain functions, e.g. ``LambdaCallback(on_step_end=lambda t, s: ...)``."""

    _HOOKS = ("on_train_begin", "on_epoch_begin", "extra_loss", "on_after_backward", "on_step_end",
              "on_epoch_end", "on_train_end")

    def __init__(self, **hooks: Callable) -> None:
        for name, fn in hooks.items():
            if name not in self._HOOKS:
                from prunekit.errors import PrunekitError

                raise PrunekitError(f"LambdaCallback: unknown hook {name!r}; hooks: {', '.join(self._HOOKS)}")
            setattr(self, name, fn)


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` evaluated epochs.

    Epochs without a value for ``monitor`` (not evaluated, see ``eval_every``) are skipped.
    """

    def __init__(self, monitor: str = "test_top1", patience: int = 5, mode: str = "max",
                 min_delta: float = 0.0) -> None:
        if mode not in ("max", "min"):
            from prunekit.errors import PrunekitError

            raise PrunekitError(f"EarlyStopping: mode must be 'max' or 'min', got {mode!r}")
        self.monitor, self.patience, self.mode, self.min_delta = monitor, patience, mode, min_delta
        self.best: float | None = None
        self.bad_epochs = 0

    def on_epoch_end(self, trainer, epoch: int, metrics: dict) -> None:
        value = metrics.get(self.monitor)
        if value is None:
            return
        better = (self.best is None or
                  (value > self.best + self.min_delta if self.mode == "max" else value < self.best - self.min_delta))
        if better:
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs >= self.patience:
                trainer.stop_training = True

    def state_dict(self) -> dict:
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.bad_epochs = state.get("best"), int(state.get("bad_epochs", 0))


class EpochLogger(Callback):
    """Print one line per epoch (on rank 0 only), e.g. for scripts and the CLI.

    Args:
        stream: a text stream; None means ``sys.stdout`` at call time.
    """

    def __init__(self, stream=None) -> None:
        self.stream = stream

    def on_epoch_end(self, trainer, epoch: int, metrics: dict) -> None:
        if not trainer.is_main:
            return
        import sys

        stream = self.stream or sys.stdout
        print(trainer.history.format_row(metrics, trainer.config.epochs), file=stream, flush=True)
