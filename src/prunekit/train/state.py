"""Checkpoint files of a training run: ``last.pt`` (resumable), ``best.pt``, ``history.json``.

Randomness is re-derived rather than stored: every epoch reseeds Python's,
NumPy's and torch's generators from ``(seed, epoch, rank)`` and builds its data
loader from ``(seed, epoch)``, so the state a resumed run needs is only the
weights, the optimizer, the step counter, the history and the callbacks' own
state, and the resumed run follows the uninterrupted one bit for bit.
"""
from __future__ import annotations

import random
import warnings
from pathlib import Path

from prunekit.errors import CheckpointError

LAST = "last.pt"
BEST = "best.pt"
HISTORY = "history.json"
CONFIG = "config.yaml"
RUN_FILES = (LAST, BEST, HISTORY, CONFIG)

# config keys that do not change the training trajectory (a resumed run may change them freely)
_COSMETIC_KEYS = {"progress", "num_threads", "eval_every", "eval_batch_size", "checkpoint_every", "device",
                  "distributed", "deterministic"}


def derive_seed(seed: int, epoch: int, rank: int = 0, stream: int = 0) -> int:
    """A 63-bit seed for one epoch on one rank, mixed by NumPy's SeedSequence (pure function).

    ``stream`` separates independent uses: 0 for the global generators, 1 for the data order.
    """
    import numpy as np

    words = np.random.SeedSequence([seed % 2**32, seed // 2**32 % 2**32, epoch, rank, stream]).generate_state(2)
    return (int(words[0]) << 31 | int(words[1]) >> 1) & (2**63 - 1)


def seed_epoch(seed: int, epoch: int, rank: int) -> None:
    """Reseed Python's, NumPy's and torch's global generators for ``epoch`` on ``rank``."""
    import numpy as np
    import torch

    s = derive_seed(seed, epoch, rank)
    random.seed(s)
    np.random.seed(s % 2**32)
    torch.manual_seed(s)


def train_state(trainer) -> dict:
    """The plain-data state stored in ``last.pt`` (loadable with ``weights_only=True``)."""
    return {
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": {"schedule": trainer.config.schedule, "global_step": trainer.global_step},
        "epoch": trainer.epochs_done,
        "global_step": trainer.global_step,
        "steps_per_epoch": trainer.steps_per_epoch,
        "world_size": trainer.world_size,
        "finished": trainer.finished,
        "stopped_early": trainer.stop_training,
        "history": trainer.history.to_list(),
        "config": trainer.config.to_dict(),
        "callbacks": [cb.state_dict() for cb in trainer.callbacks],
        "rng": {"scheme": "per-epoch reseed", "seed": trainer.config.seed},
    }


def meta(trainer, kind: str) -> dict:
    """JSON-able metadata of a checkpoint: dataset, metrics, config."""
    best = trainer.history.best()
    return {
        **trainer.extra_meta,  # first, so it cannot shadow the entries below
        "kind": kind,
        "dataset": getattr(trainer.data, "name", None),
        "epochs_done": trainer.epochs_done,
        "metrics": dict(trainer.history.last) if trainer.history else None,
        "best": dict(best) if best else None,
        "config": trainer.config.to_dict(),
        "world_size": trainer.world_size,
    }


def read_resume_state(path: Path) -> tuple[dict, dict]:
    """``(state_dict, train_state)`` of a ``last.pt``; raises CheckpointError if it cannot resume."""
    from prunekit import checkpoint

    payload = checkpoint.read_raw(path)
    ts = payload.get("train_state")
    if not isinstance(ts, dict) or "optimizer" not in ts or "global_step" not in ts:
        raise CheckpointError(f"{path}: has no training state to resume from (was it written by prunekit.train?)")
    return payload["state_dict"], ts


def check_compatible(path: Path, ts: dict, config, steps_per_epoch: int, world_size: int) -> None:
    """Warn when a resumed run differs from the stored one in a way that changes its trajectory."""
    stored = ts.get("config", {})
    now = config.to_dict()
    changed = sorted(k for k in now if k not in _COSMETIC_KEYS and k != "epochs" and stored.get(k, now[k]) != now[k])
    if stored.get("epochs", config.epochs) != config.epochs and config.schedule != "constant":
        changed.append("epochs (changes the lr schedule)")
    if ts.get("steps_per_epoch", steps_per_epoch) != steps_per_epoch or ts.get("world_size", world_size) != world_size:
        changed.append(f"steps per epoch {ts.get('steps_per_epoch')}x{ts.get('world_size')} ranks -> "
                       f"{steps_per_epoch}x{world_size}")
    if changed:
        warnings.warn(f"resuming {path} with a different setup ({', '.join(changed)}): "
                      "the run will not match an uninterrupted one", stacklevel=3)


def load_model_state(model, state_dict: dict, path: Path) -> None:
    """Load resumed weights, naming the file when they do not fit."""
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit this model: {str(e).splitlines()[0]}") from None
