"""Structured (channel) pruning methods of the seed papers, each a config + a function + a plan.

pai          SNIP / GraSP / SynFlow channel scores at initialisation, trained     :mod:`.pai`
             from those weights (Lee et al. 2019; Wang et al. 2020; Tanaka et
             al. 2020)
random       random widths under the MACs budget, best of N on a held-out split    :mod:`.random_widths`
             (Li et al., CVPR 2022)
============ ==================================================================== ==================
Every method makes :class:`~prunekit.engine.PruningPlan` objects that the engine applies;
:func:`run_structured` runs the whole pipeline and writes the run directory.

Example:
    >>> from prunekit.methods.structured import STRUCTURED_METHODS
    >>> sorted(STRUCTURED_METHODS.names())
    ['autocompress', 'dcff', 'dcp', 'fpgm', 'l1', 'lasso', 'pai', 'random', 'scp', 'slimming', 'taylor', 'thinet']
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from prunekit.registry import Registry

from prunekit.methods.structured._common import CommonConfig, StructuredFinetune, write_reconstructed
from prunekit.methods.structured.autocompress import (AutoCompressConfig, anneal_accept, autocompress,
                                                       dead_channels)
from prunekit.methods.structured.dcff import DCFFConfig, dcff
from prunekit.methods.structured.dcp import DCPConfig, channel_scores, dcp, dcp_loss, dcp_scores
from prunekit.methods.structured.iterative import IterativeConfig, iterative_prune
from prunekit.methods.structured.l1 import (L1Config, choose_ratios, l1_prune, plot_sensitivity, ratios_for_macs,
                                            sensitivity_analysis)
from prunekit.methods.structured.pai import PaIChannelConfig, pai_channel_prune
from prunekit.methods.structured.pipeline import Outcome, StructuredResult, run_structured
from prunekit.methods.structured.random_widths import RandomChannelConfig, random_channel_prune
from prunekit.methods.structured.reconstruct import (ChannelPruningConfig, ReconstructionResult, ThiNetConfig,
                                                     channel_pruning, reconstruct_prune, select_and_fit, thinet)
from prunekit.methods.structured.scp import SCPConfig, mask_probability, scp
from prunekit.methods.structured.slimming import (SlimmingConfig, SparsityCallback, add_sparsity_grad,
                                                  channels_below, global_threshold, slimming, slimming_plan)


@dataclass(frozen=True)
class StructuredMethod:
    """A registered structured method: ``prune(model, data, config, progress) -> Outcome``."""

    name: str
    prune: Callable
    config_cls: type
    paper: str


def _l1(model, data, cfg, progress):
    p, table, ratios = l1_prune(model, data, cfg, progress)
    tab = {k: ({str(r): a for r, a in v.items()} if isinstance(v, dict) else v) for k, v in table.items()}
    return Outcome(p.apply(model), [p], {"sensitivity": tab, "layer_ratios": ratios},
                   {"sensitivity.png": lambda path: plot_sensitivity(table, path)})


def _slimming(model, data, cfg, progress):
    net, p = slimming(model, data, cfg, progress)
    return Outcome(p.apply(net), [p], {"threshold": p.info.get("threshold")})


def _reconstruct(fn):
    def run(model, data, cfg, progress):
        res = fn(model, data, cfg, progress)
        return Outcome(res.apply(model), [res.plan], {"layers": [s.to_dict() for s in res.layers]})
    return run


def _dcp(model, data, cfg, progress):
    net, res = dcp(model, data, cfg, progress)
    return Outcome(res.apply(net), [res.plan], {"stages": res.plan.info["stages"], "layers": res.plan.info["layers"]})


def _autocompress(model, data, cfg, progress):
    net, p = autocompress(model, data, cfg, progress)
    return Outcome(p.apply(net), [p], {"rates": p.info["rates"], "purified": p.info["purified"],
                                         "search": p.info["search"]})


def _dcff(model, data, cfg, progress):
    small, p, temps = dcff(model, data, cfg, progress)
    return Outcome(small, [p], {"temperatures": temps, "kept": p.info.get("kept")})


def _scp(model, data, cfg, progress):
    net, p = scp(model, data, cfg, progress)
    return Outcome(p.apply(net), [p], {"threshold": p.info.get("threshold")})


def _iterative(criterion):
    def run(model, data, cfg, progress):
        net, plans = iterative_prune(model, data, criterion, cfg, progress)
        return Outcome(net, plans, {"steps": len(plans)})
    return run


def _pai(model, data, cfg, progress):
    net, p = pai_channel_prune(model, data, cfg, progress)
    return Outcome(net, [p], {"criterion": cfg.criterion, "score_given_weights": cfg.score_given_weights,
                              "note": "pruned at initialisation: 'fine-tuning' trains the fresh weights"})


def _random(model, data, cfg, progress):
    net, p, records = random_channel_prune(model, data, cfg, progress)
    return Outcome(net, [p], {"candidates": records, "best_candidate": p.info["best_candidate"]})


STRUCTURED_METHODS: Registry[StructuredMethod] = Registry("structured pruning method")
for _m in (StructuredMethod("l1", _l1, L1Config, "Li et al., Pruning Filters for Efficient ConvNets, ICLR 2017"),
           StructuredMethod("slimming", _slimming, SlimmingConfig,
                            "Liu et al., Learning Efficient Convolutional Networks through Network Slimming, ICCV 2017"),
           StructuredMethod("lasso", _reconstruct(channel_pruning), ChannelPruningConfig,
                            "He, Zhang & Sun, Channel Pruning for Accelerating Very Deep Neural Networks, ICCV 2017"),
           StructuredMethod("thinet", _reconstruct(thinet), ThiNetConfig,
                            "Luo, Wu & Lin, ThiNet: A Filter Level Pruning Method, ICCV 2017"),
           StructuredMethod("fpgm", _iterative("fpgm"), IterativeConfig,
                            "He et al., Filter Pruning via Geometric Median, CVPR 2019"),
           StructuredMethod("taylor", _iterative("taylor"), IterativeConfig,
                            "Molchanov et al., Importance Estimation for Neural Network Pruning, CVPR 2019"),
           StructuredMethod("dcp", _dcp, DCPConfig,
                            "Zhuang et al., Discrimination-aware Channel Pruning for Deep Neural Networks, NeurIPS 2018"),
           StructuredMethod("autocompress", _autocompress, AutoCompressConfig,
                            "Liu et al., AutoCompress: An Automatic DNN Structured Pruning Framework for Ultra-High "
                            "Compression Rates, AAAI 2020"),
           StructuredMethod("dcff", _dcff, DCFFConfig,
                            "Lin et al., Training Compact CNNs for Image Classification using Dynamic-coded Filter "
                            "Fusion, IEEE TPAMI 2023"),
           StructuredMethod("scp", _scp, SCPConfig,
                            "Kang & Han, Operation-Aware Soft Channel Pruning using Differentiable Masks, ICML 2020"),
           StructuredMethod("pai", _pai, PaIChannelConfig,
                            "Lee et al., SNIP, ICLR 2019; Wang et al., GraSP, ICLR 2020; Tanaka et al., SynFlow, "
                            "NeurIPS 2020 (channel level, summed over each channel)"),
           StructuredMethod("random", _random, RandomChannelConfig,
                            "Li et al., Revisiting Random Channel Pruning for Neural Network Compression, CVPR 2022")):
    STRUCTURED_METHODS.add(_m.name, _m)
del _m

__all__ = ["STRUCTURED_METHODS", "StructuredMethod", "run_structured", "StructuredResult", "CommonConfig",
           "StructuredFinetune",
           "L1Config", "SlimmingConfig", "ChannelPruningConfig", "ThiNetConfig", "IterativeConfig",
           "channel_pruning", "thinet", "reconstruct_prune", "select_and_fit", "ReconstructionResult",
           "write_reconstructed", "l1_prune", "sensitivity_analysis", "choose_ratios", "ratios_for_macs",
           "plot_sensitivity", "slimming", "slimming_plan", "SparsityCallback", "add_sparsity_grad",
           "global_threshold", "channels_below", "iterative_prune", "DCPConfig", "dcp", "dcp_loss", "dcp_scores",
           "channel_scores", "AutoCompressConfig", "autocompress", "anneal_accept", "dead_channels",
           "DCFFConfig", "dcff", "SCPConfig", "scp", "mask_probability",
           "PaIChannelConfig", "pai_channel_prune", "RandomChannelConfig", "random_channel_prune"]
