"""Training and evaluation: one seeded, resumable, distributed-ready loop with callbacks.

Example:
    >>> from prunekit import data, models, train                      # doctest: +SKIP
    >>> splits = data.load_dataset("mnist5k")                         # doctest: +SKIP
    >>> net = models.create("lenet5", in_channels=1)                  # doctest: +SKIP
    >>> cfg = train.TrainConfig(epochs=3, lr=0.05, augment=False)     # doctest: +SKIP
    >>> history = train.fit(net, splits, cfg, out_dir="runs/lenet5")  # doctest: +SKIP
    >>> train.evaluate(net, splits.test_x, splits.test_y)["top1"]     # doctest: +SKIP
    98.4

Methods fine-tune through :func:`run_finetune` with a :class:`FinetuneConfig`, and
re-initialise for "from scratch" comparisons with :func:`reinitialize`.
See ``docs/train.md`` for callbacks, resuming and ``torchrun``.
"""
from prunekit.train.callbacks import Callback, CallbackList, EarlyStopping, EpochLogger, LambdaCallback
from prunekit.train.config import TrainConfig
from prunekit.train.finetuning import FinetuneConfig, as_finetune, finetune_field, reinitialize, run_finetune
from prunekit.train.history import History
from prunekit.train.metrics import evaluate, predict, topk_correct
from prunekit.train.optim import OPTIMIZERS, SCHEDULES, build_optimizer, lr_factor
from prunekit.train.trainer import Trainer, fit

__all__ = [
    "Callback", "CallbackList", "EarlyStopping", "EpochLogger", "FinetuneConfig", "History", "LambdaCallback",
    "OPTIMIZERS", "SCHEDULES", "TrainConfig", "Trainer", "as_finetune", "build_optimizer", "evaluate", "finetune_field",
    "fit", "lr_factor", "predict", "reinitialize", "run_finetune", "topk_correct",
]
