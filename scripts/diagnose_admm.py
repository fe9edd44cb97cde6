"""Why does ADMM lose LeNet-5 at 71.2x (98.6% sparsity) on mnist5k? A diagnostic run per schedule.

Zhang et al., *A Systematic DNN Weight Pruning Framework using ADMM*, ECCV 2018, prune LeNet-5 71.2x
without loss. ``docs/results/weight_pruning.md`` checks that claim with the same 6-epoch budget as the
other methods (3 ADMM epochs + 3 masked retraining). This script trains the same dense LeNet-5 as that page
(``reproduce_weight_pruning.train_cfg``, seed 0, 15 epochs) and prunes it at 1 - 1/71.2 with the per-layer
rates of the global ranking, recording per run: the relative primal residual ``||W - Z|| / ||W||`` after
every ADMM epoch, the accuracy after the ADMM phase, right after the hard prune, and after retraining;
for the page's schedule, a 10x stronger rho, a longer schedule (10 + 6 epochs) and no ADMM phase at all
(one-shot magnitude + 6 epochs). Runs append to ``docs/results/admm_diagnostic.json`` under ``--tag``
(the code state they were measured with); ``reproduce_weight_pruning.py`` renders them on its page.

Run: ``.venv/bin/python scripts/diagnose_admm.py --tag "NAME"`` (about 5 min on one idle core).
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parents[1]
JSON = ROOT / "docs" / "results" / "admm_diagnostic.json"

#: label -> (ADMM epochs, retraining epochs, rho0, rho factor per epoch, rho max)
SCHEDULES = {
    "page (3 + 3 epochs, rho 0.05 x2/epoch, max 1)": (3, 3, 0.05, 2.0, 1.0),
    "3 + 3 epochs, rho 0.5 x2/epoch, max 8": (3, 3, 0.5, 2.0, 8.0),
    "10 + 6 epochs, rho 0.05 x1.5/epoch, max 1": (10, 6, 0.05, 1.5, 1.0),
    "10 + 6 epochs, rho 0.05 x2/epoch, max 16": (10, 6, 0.05, 2.0, 16.0),
    "no ADMM phase: hard prune + 6 epochs": (0, 6, 0.05, 2.0, 1.0),
}


def _unrescaled_epoch_end(self, trainer, epoch: int, metrics: dict) -> None:
    """ADMMCallback.on_epoch_end as it was before the fix: U kept when rho changes (for --check-12x only)."""
    if (epoch + 1) % self.update_every == 0:
        self.Z = self._project({n: p.detach() + self.U[n] for n, p in self._p.items()})
        for n, p in self._p.items():
            self.U[n] = self.U[n] + p.detach() - self.Z[n]
        self.iteration += 1
    metrics["rho"] = self.rho
    metrics["admm_residual"] = self.residual()
    self.log.append({"epoch": epoch, "iteration": self.iteration, "rho": metrics["rho"],
                     "residual": metrics["admm_residual"]})


def check_12x(dense, splits, W, seeds=(1, 2)) -> dict:
    """The page's ADMM schedule at 12x on one dense network, with and without the rescale, for ``seeds``."""
    from prunekit.methods import admm as A

    fixed = A.ADMMCallback.on_epoch_end
    s = 1 - 1 / 12
    per = W.global_layer_sparsity(dense, s)
    out = {}
    try:
        for seed in seeds:
            for tag, fn in (("rescaled", fixed), ("not rescaled", _unrescaled_epoch_end)):
                A.ADMMCallback.on_epoch_end = fn
                r = A.admm_prune(copy.deepcopy(dense), splits, A.ADMMConfig(
                    sparsity=s, layer_sparsity=per, rho=0.05, rho_factor=2.0,
                    admm=W.train_cfg(3, 0.01, schedule="constant", seed=seed),
                    finetune=W.train_cfg(3, 0.01, seed=seed)), progress=False)
                out[f"{tag}|{seed}"] = {"final": r.final["test_top1"],
                                        "residual": [round(x["residual"], 3) for x in r.extra["admm_log"]]}
                print(tag, seed, out[f"{tag}|{seed}"], flush=True)
    finally:
        A.ADMMCallback.on_epoch_end = fixed
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tag", required=True, help="the code state, e.g. 'scaled dual rescaled when rho changes'")
    ap.add_argument("--schedules", nargs="*", default=list(SCHEDULES), help="labels of SCHEDULES to run")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--check-12x", action="store_true",
                    help="also run the page's schedule at 12x with and without the rescale (seeds 1, 2)")
    args = ap.parse_args(argv)
    import torch

    import reproduce_weight_pruning as W
    from prunekit import data as D
    from prunekit import models, train
    from prunekit.methods.admm import ADMMConfig, admm_prune

    torch.set_num_threads(args.threads)
    splits = D.load_dataset("mnist5k")
    torch.manual_seed(0)
    dense = models.create("lenet5", in_channels=1)
    train.fit(dense, splits, W.train_cfg(15, 0.05))
    store = json.loads(JSON.read_text()) if JSON.exists() else {}
    entry = store.setdefault(args.tag, {})
    entry["dense_top1"] = train.evaluate(dense, splits.test_x, splits.test_y)["top1"]
    s = 1 - 1 / 71.2
    per = W.global_layer_sparsity(dense, s)
    for label in args.schedules:
        a, f, rho, factor, rho_max = SCHEDULES[label]
        t = time.time()
        r = admm_prune(copy.deepcopy(dense), splits,
                       ADMMConfig(sparsity=s, layer_sparsity=per, rho=rho, rho_factor=factor, rho_max=rho_max,
                                  admm=W.train_cfg(a, 0.01, schedule="constant"), finetune=W.train_cfg(f, 0.01)),
                       progress=False)
        entry[label] = {"residual": [round(x["residual"], 4) for x in r.extra["admm_log"]],
                        "after_admm": ([x["test_top1"] for x in r.records if x["stage"] == "admm"] or [None])[-1],
                        "after_hard_prune": [x["test_top1"] for x in r.records if x["stage"] == "pruned"][0],
                        "final": r.final["test_top1"], "sparsity": r.final["sparsity"],
                        "seconds": round(time.time() - t)}
        print(label, entry[label], flush=True)
        JSON.write_text(json.dumps(store, indent=1))
    if args.check_12x:
        store["_check_12x"] = {"dense_top1": entry["dense_top1"], "runs": check_12x(dense, splits, W)}
        JSON.write_text(json.dumps(store, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
