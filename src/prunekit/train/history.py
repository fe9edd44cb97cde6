"""The per-epoch record of a training run.

Example:
    >>> h = History([{"epoch": 0, "test_top1": 90.0}, {"epoch": 1, "test_top1": 95.0}])
    >>> h.best()["epoch"]
    1
"""
from __future__ import annotations

import os
from pathlib import Path

from prunekit.errors import PrunekitError

#: keys of every epoch record, in display order
EPOCH_KEYS = ("epoch", "lr", "train_loss", "train_top1", "test_loss", "test_top1", "test_top5", "seconds")


class History(list):
    """A list of per-epoch dicts with the keys :data:`EPOCH_KEYS` (plus any a callback adds).

    ``epoch`` is 0-based; test metrics are None in epochs that were not evaluated
    (see ``TrainConfig.eval_every``); ``test_top5`` is None below 5 classes.
    """

    def best(self, key: str = "test_top1", mode: str = "max") -> dict | None:
        """The epoch record with the highest (``mode="max"``) or lowest ``key``; None if never measured.

        Ties go to the earliest epoch.
        """
        if mode not in ("max", "min"):
            raise PrunekitError(f"History.best: mode must be 'max' or 'min', got {mode!r}")
        rows = [r for r in self if r.get(key) is not None]
        if not rows:
            return None
        sign = 1.0 if mode == "max" else -1.0
        return max(rows, key=lambda r: (sign * r[key], -r.get("epoch", 0)))

    @property
    def last(self) -> dict | None:
        """The last epoch record, or None before the first epoch."""
        return self[-1] if self else None

    def to_list(self) -> list[dict]:
        """Plain list of plain dicts (JSON-able)."""
        return [dict(r) for r in self]

    def save(self, path: str | os.PathLike) -> Path:
        """Write the history as JSON, atomically."""
        from prunekit.utils.io import write_json

        return write_json(path, self.to_list(), indent=1)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "History":
        """Read a history written by :meth:`save`."""
        from prunekit.utils.io import read_json

        p = Path(path)
        data = read_json(p, "history")
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise PrunekitError(f"{p}: a history is a JSON list of per-epoch objects")
        return cls(data)

    def format_row(self, row: dict, total_epochs: int | None = None) -> str:
        """One human-readable line for an epoch record."""
        ep = row["epoch"] + 1
        head = f"epoch {ep}/{total_epochs}" if total_epochs else f"epoch {ep}"
        parts = [head, f"lr {row['lr']:.4g}", f"loss {row['train_loss']:.4f}", f"train {row['train_top1']:.2f}%"]
        if row.get("test_top1") is not None:
            parts.append(f"test {row['test_top1']:.2f}%")
            if row.get("test_top5") is not None:
                parts.append(f"top5 {row['test_top5']:.2f}%")
            parts.append(f"test loss {row['test_loss']:.4f}")
        parts.append(f"{row['seconds']:.1f}s")
        return "  ".join(parts)
