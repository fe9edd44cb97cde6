"""Channel-level pruning at initialisation (``prune --method pai --set criterion=snip|grasp|synflow``).

The weight-level saliencies of SNIP (Lee et al., ICLR 2019), GraSP (Wang et al., ICLR
2020) and SynFlow (Tanaka et al., NeurIPS 2020), :mod:`prunekit.saliency`, summed over
every parameter of each channel of the engine's coupling groups (the criteria ``snip``,
``grasp``, ``synflow`` of :mod:`prunekit.criteria`): the network is re-initialised,
scored, the engine plans the MACs budget with the channel scores ranked across layers,
and the pipeline then trains the pruned network (``finetune.epochs``) from those
initial weights. ``score_given_weights=True`` scores the checkpoint's weights instead.
"""
from __future__ import annotations

from dataclasses import dataclass

from prunekit.methods.structured._common import CommonConfig, calib_batch, example_input
from prunekit.validate import check_choice, check_int


@dataclass
class PaIChannelConfig(CommonConfig):
    """Options of channel-level pruning at initialisation.

    Attributes:
        criterion: ``snip``, ``grasp`` or ``synflow`` (data-free).
        score_given_weights: score the checkpoint's weights instead of a fresh initialisation
            (the re-initialisation is :func:`prunekit.train.reinitialize`, seeded by ``seed``).
        batches: calibration batches of ``finetune.batch_size`` training images (snip, grasp).
        global_ranking: rank the channel scores across layers (the papers rank connections
            globally), else every group alike.
        normalize: the engine's score normalisation across groups when ranking globally
            (``none``: the raw summed saliencies, as the weight-level methods compare them).
    """

    criterion: str = "snip"
    score_given_weights: bool = False
    batches: int = 1
    global_ranking: bool = True
    normalize: str = "none"

    def check(self) -> None:
        super().check()
        check_choice("config key 'criterion'", self.criterion, ("snip", "grasp", "synflow"))
        check_int("config key 'batches'", self.batches)
        check_choice("config key 'normalize'", self.normalize, ("mean", "max", "sum", "none"))


def pai_channel_prune(model, data, config: PaIChannelConfig | None = None, progress: bool = True):
    """``(pruned model at its initial weights, plan)``: score at init, plan the budget with the engine."""
    from prunekit.engine import plan
    from prunekit.train import reinitialize

    cfg = config or PaIChannelConfig()
    cfg.check()
    net = model if cfg.score_given_weights else reinitialize(model, seed=cfg.seed)
    ex = example_input(data)
    batches = None
    if cfg.criterion != "synflow":
        bs = cfg.finetune.batch_size
        xs, ys = calib_batch(data, bs * cfg.batches, cfg.seed + 1)
        batches = [(xs[i:i + bs], ys[i:i + bs]) for i in range(0, len(xs), bs)]
    kw = {"macs": cfg.macs} if cfg.macs is not None else {"ratio": cfg.ratio}
    p = plan(net, ex, criterion=cfg.criterion, global_ranking=cfg.global_ranking, normalize=cfg.normalize,
             tolerance=cfg.macs_tolerance, data=batches, **kw)
    p.info.update({"method": "pai", "pai_criterion": cfg.criterion, "score_given_weights": cfg.score_given_weights})
    return p.apply(net), p
