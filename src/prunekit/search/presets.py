"""Named settings of :func:`prunekit.search.search`: ``fast`` (the default) and ``thorough``.

A preset fills in every :class:`~prunekit.search.SearchConfig` field the user left
unset that decides how long a search runs: super-network training, candidate
evaluation, the evolution (MetaPruning), the sandwich rule and greedy slimming
(AutoSlim), and the fine-tuning of the found network. Fields given explicitly
always win over the preset; nested dicts (``supernet``, ``evolution``, ``finetune``)
are merged key by key.

- ``fast``: sized so the whole default command (super-network training, search,
  final prune and fine-tuning) on VGG-11 or ResNet-20 and mnist5k stays under
  5 minutes on an idle 2-core CPU (``bench/search_time.py``; the reasoning behind
  each number is in docs/search.md, "Presets").
- ``thorough``: the settings prunekit used before the presets existed (the
  papers' evolution: population 50, 20 iterations; 5 super-network and 5
  fine-tuning epochs over the whole split, BN recalibration on 4 batches of 128,
  the whole sub-validation split). Kept to measure what the fast preset costs in
  accuracy; it can take tens of minutes per search on a 2-core CPU.

Example:
    >>> PRESETS["fast"]["evolution"]["iterations"], PRESETS["thorough"]["evolution"]["iterations"]
    (4, 20)
    >>> resolve("fast", {"calib_batches": 3})["calib_batches"]
    3
"""
from __future__ import annotations

import copy

PRESET_NAMES = ("fast", "thorough")

#: preset name -> SearchConfig field values (nested dicts are merged under the user's)
PRESETS: dict = {
    "fast": {
        "ratios": [0.2, 0.4, 0.6, 0.8, 1.0],
        "supernet": {"epochs": 1, "batch_size": 64, "lr": 0.02, "augment": False, "eval_every": 0},
        "supernet_samples": 1024,
        # 3 epochs, not 1: on ResNet-20 (mnist5k, 30% MACs) one epoch ended at 87.7%, three at 94.6% (full
        # model 96.1%) for 12 s more on an idle 2-core machine (2026-12-03, docs/bench/search.md)
        "finetune": {"epochs": 3, "batch_size": 128, "lr": 0.02, "augment": False, "eval_every": 0},
        "evolution": {"population": 12, "top_k": 4, "mutation_num": 6, "crossover_num": 6, "iterations": 4},
        "num_random": 1,
        "greedy_moves": 0,
        "calib_batches": 2,
        "calib_batch_size": 64,
        "eval_samples": 256,
    },
    "thorough": {
        "ratios": [round(0.1 * k, 1) for k in range(1, 11)],
        "supernet": {"epochs": 5, "batch_size": 128, "lr": 0.02, "augment": False, "eval_every": 0},
        "supernet_samples": 0,
        "finetune": {"epochs": 5, "batch_size": 128, "lr": 0.02, "augment": False, "eval_every": 0},
        "evolution": {"population": 50, "top_k": 10, "mutation_num": 25, "crossover_num": 25, "iterations": 20},
        "num_random": 2,
        "greedy_moves": 1,
        "calib_batches": 4,
        "calib_batch_size": 128,
        "eval_samples": 0,
    },
}

#: the preset fields held as dicts and merged key by key with the user's
NESTED = ("supernet", "finetune", "evolution")


def resolve(name: str, given: dict) -> dict:
    """The field values of preset ``name`` with ``given`` (the user's explicit values) laid over them.

    ``given`` maps field names to values; a value of None means "not given" (the preset
    fills it), and nested dicts are merged. ``supernet_samples`` / ``eval_samples`` of 0
    mean "all of the split".
    """
    out = copy.deepcopy(PRESETS[name])
    for key, value in given.items():
        if value is None:
            continue
        if key in NESTED and isinstance(value, dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out
