"""Candidate evaluation: realise the sub-network, recalibrate BatchNorm, score it on the sub-validation split.

BatchNorm statistics of a weight-shared super-network belong to no single
sub-network, so before each evaluation the running statistics are reset and
re-estimated on a few training batches in train mode (MetaPruning Sec. 3.4;
AutoSlim Sec. 3). Evaluation is on the *sub-validation* split carved from the
training data, never on the test set.

Evaluation runs serially, on a local process pool (``workers > 1``; each worker
uses one thread), or on a Ray cluster (``ray_address``; ``pip install
prunekit[ray]``). Workers receive the physically pruned sub-network, so they
need neither the engine's analysis nor the super-network.
"""
from __future__ import annotations

from dataclasses import dataclass

from prunekit.errors import PrunekitError
from prunekit.validate import check_int


def recalibrate_bn(model, batches) -> int:
    """Reset every BatchNorm's running statistics and re-estimate them on ``batches``; returns batches used.

    Uses a cumulative average (``momentum=None``) so the estimate is the plain
    mean over the batches; momenta are restored afterwards.
    """
    import torch

    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    saved = [(m, m.momentum) for m in bns]
    flags = {m: m.training for m in model.modules()}
    n = 0
    try:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
        model.train()
        with torch.no_grad():
            for xb in batches:
                model(xb)
                n += 1
    finally:
        for m, mom in saved:
            m.momentum = mom
        for m, t in flags.items():
            m.training = t
    return n


def score_model(model, calib_x, val_x, val_y, calib_batches: int = 4, batch_size: int = 128) -> dict:
    """Recalibrate BN on the first ``calib_batches`` batches of ``calib_x``, then top-1 (%) on ``val_x``."""
    import torch

    from prunekit.train import evaluate

    batches = [calib_x[i:i + batch_size] for i in range(0, min(len(calib_x), calib_batches * batch_size), batch_size)]
    recalibrate_bn(model, batches)
    model.eval()
    with torch.no_grad():
        res = evaluate(model, val_x, val_y, batch_size=512)
    return {"accuracy": float(res["top1"]), "loss": float(res["loss"])}


@dataclass
class EvalData:
    """Tensors a candidate evaluation needs: BN calibration inputs and the sub-validation split."""

    calib_x: object
    val_x: object
    val_y: object
    calib_batches: int = 4
    batch_size: int = 128


def _score(model, data: EvalData) -> dict:
    return score_model(model, data.calib_x, data.val_x, data.val_y, data.calib_batches, data.batch_size)


# A process-pool worker's copy of the evaluation data, set once by its initializer
# so it is not pickled with every task (this is per worker process, never shared).
_WORKER_DATA: dict = {}


def _worker_init(data: EvalData) -> None:
    import torch

    torch.set_num_threads(1)
    _WORKER_DATA["data"] = data


def _worker_score(model) -> dict:
    return _score(model, _WORKER_DATA["data"])


class ParallelScorer:
    """Scores lists of models serially, on a local process pool, or on Ray.

    Use as a context manager so the pool is shut down::

        with ParallelScorer(data, workers=2) as scorer:
            results = scorer.map(models)
    """

    def __init__(self, data: EvalData, workers: int = 1, ray_address: str | None = None) -> None:
        check_int("workers", workers, error=PrunekitError)
        self.data, self.workers, self.ray_address = data, workers, ray_address
        self._pool = None
        self._ray = None
        self._ray_owned = False

    def __enter__(self):
        if self.ray_address is not None:
            try:
                import ray
            except ImportError:
                raise PrunekitError("--ray needs the optional dependency ray: pip install 'prunekit[ray]'") from None
            self._ray_owned = not ray.is_initialized()
            if self._ray_owned:
                ray.init(address=None if self.ray_address == "local" else self.ray_address,
                         include_dashboard=False, log_to_driver=False)
            self._ray = ray
            self._ray_data = ray.put(self.data)
            self._ray_fn = ray.remote(num_cpus=1)(_ray_score)
        elif self.workers > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_worker_init, initargs=(self.data,))
        return self

    def __exit__(self, *exc) -> None:
        if self._ray is not None and self._ray_owned:
            self._ray.shutdown()  # only a Ray runtime this scorer started
        self._ray = None
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def map(self, models) -> list[dict]:
        """Scores of ``models`` (in order)."""
        models = list(models)
        if self._ray is not None:
            return self._ray.get([self._ray_fn.remote(m, self._ray_data) for m in models])
        if self._pool is not None:
            return list(self._pool.map(_worker_score, models))
        return [_score(m, self.data) for m in models]


def _ray_score(model, data: EvalData) -> dict:
    import torch

    torch.set_num_threads(1)
    return _score(model, data)


def fixed_subset(x, y, n: int, seed: int = 0):
    """``(x, y)`` cut to a stratified, seeded subset of ``n`` samples (all of them when ``n`` is 0 or not smaller).

    The search draws it once, so every candidate is scored on the same images
    (the ranking compares networks, not samples).

    Example:
        >>> import torch
        >>> xs, ys = fixed_subset(torch.arange(20.0), torch.arange(20) % 2, 4, seed=0)
        >>> len(ys), sorted(ys.tolist())
        (4, [0, 0, 1, 1])
    """
    if not n or n >= len(y):
        return x, y
    from prunekit.data import split_train_val

    part = split_train_val(x, y, int(n), seed)
    return part.val_x, part.val_y


class CandidateCache:
    """Scores of candidates by encoding: a candidate seen before is answered without evaluating it again.

    Wraps a ``list[encoding] -> list[dict]`` scoring function; duplicates within one
    call are evaluated once too. ``evaluated`` counts the encodings actually passed
    to the function, ``hits`` the answers served from the cache.

    Example:
        >>> calls = []
        >>> cache = CandidateCache(lambda encs: calls.append(list(encs)) or [{"score": sum(e)} for e in encs])
        >>> cache([(1, 2), (3, 4)])
        [{'score': 3}, {'score': 7}]
        >>> cache([(3, 4), (1, 2), (1, 2)])
        [{'score': 7}, {'score': 3}, {'score': 3}]
        >>> len(calls), cache.evaluated, cache.hits
        (1, 2, 3)
    """

    def __init__(self, score_many) -> None:
        self._score_many = score_many
        self._results: dict = {}
        self.evaluated = 0
        self.hits = 0

    def __len__(self) -> int:
        return len(self._results)

    def __call__(self, encodings) -> list[dict]:
        encs = [tuple(int(k) for k in e) for e in encodings]
        todo = [e for e in dict.fromkeys(encs) if e not in self._results]
        if todo:
            for e, res in zip(todo, self._score_many(todo)):
                self._results[e] = res
        self.evaluated += len(todo)
        self.hits += len(encs) - len(todo)
        return [dict(self._results[e]) for e in encs]
