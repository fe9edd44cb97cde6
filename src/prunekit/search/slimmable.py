"""AutoSlim (Yu & Huang, 2019, "AutoSlim: Towards One-Shot Architecture Search for Channel Numbers").

1. Slimmable training: one set of full weights; every step trains the largest
   network, the smallest one and ``num_random`` random widths (the *sandwich
   rule*), the narrower ones distilled from the largest one's predictions
   (*in-place distillation*). Widths are per coupling group (a width multiplier
   per group of the search grid), realised by masking the trailing channels.
2. Greedy slimming: from the full width, repeatedly shrink the one group whose
   one-step reduction loses the least sub-validation accuracy, until the budget
   (MACs, params, latency) is met.

The slimmable training is a :class:`prunekit.train.Callback`, so it runs in the
foundation's training loop (the loop's own forward is the largest network).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from prunekit.search.evolution import random_encoding
from prunekit.train import Callback


def masked_forward(model, space, encoding, x, tensors: dict | None = None):
    """Forward of the sub-network ``encoding`` through the full weights (differentiable).

    Parameters of removed channels are multiplied by 0; BatchNorm buffers are
    cloned so the sub-network's batch statistics do not overwrite the model's.
    """
    import torch

    tensors = dict(model.named_parameters()) if tensors is None else tensors
    masks = space.masks(encoding, tensors)
    args = {n: tensors[n] * m for n, m in masks.items()}
    for n, b in model.named_buffers():
        args[n] = b.clone()
    return torch.func.functional_call(model, args, (x,))


class SandwichRule(Callback):
    """Adds the smallest and ``num_random`` random sub-networks' losses to each step (AutoSlim / US-Nets).

    Args:
        space: the :class:`~prunekit.search.space.SearchSpace`.
        num_random: random widths per step (the paper uses 2).
        distill: train narrower networks on the largest one's soft predictions (in-place distillation).
        seed: seeds the width sampling.
    """

    def __init__(self, space, num_random: int = 2, distill: bool = True, seed: int = 0) -> None:
        self.space, self.num_random, self.distill = space, int(num_random), bool(distill)
        self.rng = np.random.default_rng(seed)
        self._x = None
        self._hook = None

    def on_train_begin(self, trainer) -> None:
        def grab(_module, args):
            self._x = args[0]

        self._hook = trainer.model.register_forward_pre_hook(grab)

    def on_train_end(self, trainer) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def extra_loss(self, trainer, outputs, targets):
        import torch.nn.functional as F

        if self._x is None:
            return None
        x, self._x = self._x, None
        model = trainer.model
        encs = [self.space.smallest] + [random_encoding(self.space.candidates, self.rng)
                                        for _ in range(self.num_random)]
        soft = F.softmax(outputs.detach(), dim=1)
        tensors = dict(model.named_parameters())
        total = None
        hook, self._hook = self._hook, None
        hook.remove()  # the sub-network forwards must not be captured as inputs
        try:
            for enc in encs:
                out = masked_forward(model, self.space, enc, x, tensors)
                if self.distill:
                    loss = -(soft * F.log_softmax(out, dim=1)).sum(dim=1).mean()
                else:
                    loss = F.cross_entropy(out, targets)
                total = loss if total is None else total + loss
        finally:
            self.on_train_begin(trainer)
        return total

    def state_dict(self) -> dict:
        """The width sampler's state (saved with training checkpoints)."""
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""
        if "rng" in state:
            self.rng.bit_generator.state = state["rng"]


def greedy_slim(space, score_many: Callable, ok: Callable, log=None, progress: bool = True, moves: int = 1) -> dict:
    """AutoSlim's greedy slimming from the full width down to the first encoding that passes ``ok``.

    Args:
        score_many: ``list[encoding] -> list[dict]`` with ``score`` (higher is better).
        ok: the budget test.
        log: a :class:`~prunekit.search.log.SearchLog`; finished steps are replayed.
        moves: groups shrunk per step (the best ``moves`` one-step reductions together, in
            their ranking's order, stopping as soon as the budget is met so a step does not
            overshoot it); 1 is AutoSlim's rule, larger values trade fidelity for fewer evaluations.

    Returns the record of the chosen encoding (``score`` None when it was not evaluated as such:
    the full network, or a step combining several moves).
    """
    from prunekit.search.log import SearchLog

    log = log if log is not None else SearchLog()
    enc = space.full
    current = None
    by_step: dict = {}
    for r in log.records:
        by_step.setdefault(r["iteration"], []).append(r)
    step = 0
    from prunekit.utils.progress import progress_bar

    bar = progress_bar(desc="greedy slimming", enabled=progress, leave=True, unit="step")
    if not bar.disable:  # an estimated total gives the bar an ETA; only worth its budget checks when drawn
        from prunekit.search.phases import greedy_steps_estimate

        bar.total = greedy_steps_estimate(space, ok, moves)
        bar.refresh()
    while not ok(enc):
        if step in by_step:  # resume: replay the logged step
            recs = by_step[step]
        else:
            options = []
            for i, c in enumerate(space.candidates):
                pos = c.index(enc[i])
                if pos > 0:
                    options.append(enc[:i] + (c[pos - 1],) + enc[i + 1:])
            if not options:
                break
            recs = [{"iteration": step, "encoding": list(m), **res} for m, res in zip(options, score_many(options))]
            log.add_iteration(step, recs, [list(enc)])
        ranked = sorted(recs, key=lambda r: (-r["score"], r["encoding"]))
        current = ranked[0]
        new = list(current["encoding"])
        applied = 1
        for r in ranked[1:moves]:  # also apply the next-best moves (each changes one group)
            if ok(tuple(new)):
                break  # within budget already: further moves would only overshoot it
            i = next(j for j, (a, b) in enumerate(zip(r["encoding"], enc)) if a != b)
            new[i] = r["encoding"][i]
            applied += 1
        if applied > 1:
            current = {"iteration": step, "encoding": new, "score": None, "combined_moves": applied}
        enc = tuple(new)
        step += 1
        if bar.total is not None and bar.n + 1 > bar.total:
            bar.total = bar.n + 2  # the estimate was short: keep the bar below 100% until the end
        bar.update(1)
    bar.close()
    if not ok(enc):
        from prunekit.errors import PrunekitError

        raise PrunekitError("greedy slimming reached the narrowest grid point without meeting the budget; "
                            "add smaller width ratios")
    if current is None:  # the full network already meets the budget
        current = {"iteration": -1, "encoding": list(enc), "score": None}
    return current
