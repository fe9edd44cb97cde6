"""The super-network of a search: trained (PruningNet / slimmable), saved with what it was trained for, reused.

A trained super-network serves every budget of the same model, method, grid, seed
and split (both papers train it once); ``supernet.json`` beside ``supernet.pt``
records those settings, and a search that would reuse it with others is refused.
Called by :func:`prunekit.search.search`.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from prunekit.errors import PrunekitError


#: the SearchConfig fields a trained super-network depends on (checked when one is reused)
SUPERNET_KEYS = ("method", "ratios", "round_to", "min_channels", "ignored_layers", "val_fraction", "seed")
_METHOD_KEYS = {"metapruning": ("hidden", "rank"), "autoslim": ("num_random",)}


def _supernet_identity(cfg, space) -> dict:
    ident = {k: getattr(cfg, k) for k in SUPERNET_KEYS + _METHOD_KEYS[cfg.method]}
    ident["groups"] = [list(c) for c in space.candidates]
    return json.loads(json.dumps(ident))


def _reuse_supernet(source, cfg, space) -> dict:
    """The state dict of an earlier search's super-network, after checking it was trained for this search."""
    import torch

    src = Path(source)
    meta = src.with_name("supernet.json")
    if not src.is_file():
        raise PrunekitError(f"supernet: {src} is not a file (give the supernet.pt of an earlier search)")
    if not meta.is_file():
        raise PrunekitError(f"supernet: {meta} is missing, so {src} cannot be checked against this search")
    _check_identity(meta, cfg, space, f"supernet: {src} was trained", "train a new one or use matching settings")
    try:
        state = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises assorted types on files that are not weights
        raise PrunekitError(f"supernet: {src} is not a readable weights file ({type(e).__name__}); give the "
                            "supernet.pt of an earlier search") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise PrunekitError(f"supernet: {src} does not hold a super-network's weights (a state dict); give the "
                            "supernet.pt of an earlier search")
    return state


def _check_identity(meta: Path, cfg, space, who: str, advice: str) -> None:
    try:
        saved = json.loads(meta.read_text())
    except (ValueError, OSError) as e:
        raise PrunekitError(f"{meta}: not a readable supernet record ({type(e).__name__}: {e})") from None
    if not isinstance(saved, dict):
        raise PrunekitError(f"{meta}: not a supernet record (a JSON object is expected)")
    for k, v in _supernet_identity(cfg, space).items():
        if saved.get(k) != v:
            what = "the search grid (groups and candidate widths)" if k == "groups" else repr(k)
            raise PrunekitError(f"{who} with a different {what} ({saved.get(k)!r}, this search has {v!r}); {advice}")


def supernet_data(sub, val_x, val_y, cfg):
    """A :class:`~prunekit.data.DatasetSplits` for super-network training (``cfg``: a SearchConfig).

    The split the super-network trains on: ``supernet_samples`` images of ``sub``'s training part (a fixed
    stratified subset; 0: all), and the search's evaluation subset as its end-of-training check."""
    from prunekit.search.evaluate import fixed_subset

    x, y = fixed_subset(sub.train_x, sub.train_y, cfg.supernet_samples, cfg.seed)
    return dataclasses.replace(sub, train_x=x, train_y=y, test_x=val_x, test_y=val_y)


def train_supernet(model, space, sub, cfg, path: Path, resume: bool, progress: bool, source=None):
    """The trained super-network of ``model`` for the SearchConfig ``cfg``, saved at ``path`` with its record.

    Trained on ``sub`` (see :func:`supernet_data`), reloaded on ``resume`` when ``path`` exists, or
    loaded from ``source`` (an earlier search's ``supernet.pt``, checked against ``cfg``).
    """
    import copy

    import torch

    from prunekit.train import Trainer
    from prunekit.utils.io import atomic_save_torch, atomic_write

    from prunekit.search.phases import TrainProgress

    tcfg = cfg.train_config("supernet")
    # one bar over all epochs (its ETA is the whole training's) instead of the trainer's per-epoch bars
    bar = TrainProgress("super-network", enabled=progress and tcfg.progress)
    tcfg = tcfg.replace(progress=False)
    if cfg.method == "metapruning":
        from prunekit.search.pruningnet import PruningNet

        net = PruningNet(model, space, hidden=cfg.hidden, seed=cfg.seed, rank=cfg.rank)
        callbacks = (bar,)
    else:
        from prunekit.search.slimmable import SandwichRule

        net = copy.deepcopy(model)
        callbacks = (SandwichRule(space, cfg.num_random, seed=cfg.seed), bar)
    if source is not None:
        try:
            net.load_state_dict(_reuse_supernet(source, cfg, space))
        except RuntimeError as e:  # weights of another network
            raise PrunekitError(f"supernet: {source} does not fit this search's super-network: "
                                f"{str(e).splitlines()[0]}") from None
        if Path(source).resolve() != path.resolve():
            atomic_save_torch(net.state_dict(), path)
    elif resume and path.exists():
        meta = path.with_name("supernet.json")
        if meta.is_file():  # written beside every supernet.pt since it exists; older runs fall to the shape check
            _check_identity(meta, cfg, space, f"cannot resume: {path} was trained",
                            "resume with the settings it was started with, or start over (--overwrite)")
        try:
            net.load_state_dict(torch.load(path, weights_only=True))
        except RuntimeError as e:  # e.g. a PruningNet saved with another hidden / rank
            raise PrunekitError(f"cannot resume: {path} does not match this configuration's super-network "
                                f"(were hidden/rank changed?): {str(e).splitlines()[0]}") from None
    else:
        if tcfg.epochs > 0:
            Trainer(net, sub, tcfg, callbacks=callbacks).fit()
        atomic_save_torch(net.state_dict(), path)
    with atomic_write(path.with_name("supernet.json"), "w") as f:
        json.dump(_supernet_identity(cfg, space), f, indent=1)
    return net.eval()
