"""Shared harness of the reproduction scripts: one base network, seeds, a resumable results file, one table.

A reproduction script lists *rows*: a label and a function ``prune(model, splits, seed) -> model`` (or
``(model, extra_dict)``) that compresses a copy of the committed base network. :func:`run_rows` runs each
row for every seed, fine-tunes it with the same :class:`~prunekit.train.FinetuneConfig`, measures
top-1 on the test split, MACs (``prunekit.measure.count_macs``, one counter for every row), parameters
and non-zero parameters, and appends every finished (row, seed) to a JSON file at once, so an
interrupted run resumes where it stopped. :func:`markdown_table` renders mean +- std over seeds and
marks rows whose MACs miss the stated budget.

Example (see scripts/train_base.py for the base networks)::

    from repro_lib import Row, run_rows, markdown_table
    rows = [Row("l1", my_l1_prune, budget=0.5)]
    results = run_rows("fashion_mnist_lenet5", rows, seeds=(0, 1, 2), finetune={"epochs": 2},
                       results_path=Path("docs/results/my.json"))
    print(markdown_table(results, rows))
"""
from __future__ import annotations

import copy
import json
import math
import os
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
BASE_DIR = ROOT / "docs" / "results" / "base"


class RowSkipped(Exception):
    """Raised by a row's ``prune`` when the row cannot run here (e.g. a method not available, no BatchNorm).

    :func:`run_rows` records the reason under ``results["skipped"][label]`` (not as a run, so a later
    call retries it) and :func:`markdown_table` prints it in the row.
    """


@dataclass
class Row:
    """One row of a table: ``prune(model, splits, seed)`` returns the compressed model (fine-tuned after).

    budget: the MACs fraction the row aims at (None: no MACs budget); tolerance: how far above it a
    row may land before it is marked. finetune: False for rows that train themselves (e.g. from scratch).
    paper: the paper's own figure for this method, labelled as theirs in the table.
    """

    label: str
    prune: Callable
    budget: float | None = None
    tolerance: float = 0.02
    finetune: bool = True
    paper: str = ""
    options: dict = field(default_factory=dict)


def load_base(name: str, base_dir: Path | None = None, load_data: bool = True):
    """(model, splits, info) of committed base network ``name`` (see scripts/train_base.py); splits None
    unless ``load_data``."""
    from prunekit import checkpoint, data

    base_dir = Path(base_dir or BASE_DIR)
    info = json.loads((base_dir / f"{name}.json").read_text())
    model = checkpoint.load(base_dir / f"{name}.pt").model
    return model, (data.load_dataset(info["data"]) if load_data else None), info


def _atomic_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def machine() -> str:
    """The machine a run's figures come from: CPU architecture, cores, torch, and the GPU when one trains."""
    import torch

    gpu = f", GPU {torch.cuda.get_device_name(0)} (training and test-set evaluation)" if torch.cuda.is_available() else ""
    return f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}{gpu}"


def measure(model, splits) -> dict:
    """top-1 (test split), MACs per sample, parameters and non-zero parameters of ``model``.

    The test set is evaluated on a copy on the GPU when one is there (the model itself stays where it is).
    """
    import torch

    from prunekit import measure as M
    from prunekit import train

    x = torch.as_tensor(splits.test_x[:1])
    net = copy.deepcopy(model).cuda() if torch.cuda.is_available() else model
    return {"top1": train.evaluate(net, splits.test_x, splits.test_y)["top1"],
            "macs": int(M.count_macs(model, x).per_sample), "params": int(M.count_params(model)),
            "nonzero": int(M.count_nonzero_params(model)), "test_images": int(len(splits.test_y))}


def run_rows(base: str, rows, seeds=(0, 1, 2), finetune: dict | None = None, results_path: Path | None = None,
             threads: int | None = None, base_dir: Path | None = None, keep_going: bool = False,
             splits=None) -> dict:
    """Run every row for every seed (skipping those already in ``results_path``); returns the results dict.

    A row whose ``prune`` raises :class:`RowSkipped` is recorded under ``results["skipped"]``; with
    ``keep_going`` any other exception is recorded under ``results["failed"]`` and the next row runs
    (neither is stored as a run, so a later call retries them). ``base_dir``: where the base network's
    ``NAME.pt``/``NAME.json`` are (default docs/results/base). ``splits``: a ``DatasetSplits`` to use
    instead of loading the base's dataset (e.g. a smoke test's slice).
    """
    import torch

    from prunekit import train

    if threads:
        torch.set_num_threads(threads)
    model0, loaded, info = load_base(base, base_dir, load_data=splits is None)
    splits = splits if splits is not None else loaded
    done = json.loads(results_path.read_text()) if results_path and results_path.exists() else {}
    done.setdefault("runs", {})
    for what in ("skipped", "failed"):  # this call's rows are retried, so their old reasons go
        done[what] = {k: v for k, v in done.get(what, {}).items()
                      if k.rsplit("|", 1)[0] not in {r.label for r in rows} and k not in {r.label for r in rows}}
    done.update({"base": base, "base_info": info, "finetune": finetune or {}, "seeds": list(seeds),
                 "machine": machine()})
    done["dense"] = measure(model0, splits)
    for row in rows:
        for seed in seeds:
            key = f"{row.label}|{seed}"
            if key in done["runs"]:
                continue
            torch.manual_seed(seed)
            t0 = time.time()
            try:
                out = row.prune(copy.deepcopy(model0), splits, seed)
            except RowSkipped as e:
                done["skipped"][row.label] = str(e)
                if results_path:
                    _atomic_json(results_path, done)
                print(f"{row.label}: skipped ({e})", flush=True)
                break
            except Exception as e:  # noqa: BLE001 - with keep_going a failing row is reported, not fatal
                if not keep_going:
                    raise
                done["failed"][key] = f"{type(e).__name__}: {e}"
                print(f"{row.label} seed {seed}: failed ({type(e).__name__}: {e})", flush=True)
                continue
            net, extra = out if isinstance(out, tuple) else (out, {})
            before = measure(net, splits)["top1"]
            if row.finetune and finetune:
                train.run_finetune(net, splits, {**finetune, "seed": seed}, progress=False)
            net = net.cpu()  # fine-tuning may have moved it to a GPU; one counter, on the CPU
            rec = {**measure(net, splits), "top1_before_finetune": before, "seconds": round(time.time() - t0, 1),
                   **extra}
            done["runs"][key] = rec
            if results_path:
                _atomic_json(results_path, done)
            print(f"{row.label} seed {seed}: top-1 {rec['top1']:.2f}% MACs {rec['macs'] / done['dense']['macs']:.3f}",
                  flush=True)
    return done


def summary(results: dict, row: Row) -> dict | None:
    """mean/std of top-1 and the MACs fraction of ``row`` over its seeds (None when it has no runs)."""
    runs = [v for k, v in results["runs"].items() if k.rsplit("|", 1)[0] == row.label and v.get("top1") is not None]
    if not runs:
        return None
    acc = [r["top1"] for r in runs]
    macs = [r["macs"] / results["dense"]["macs"] for r in runs]
    return {"n": len(runs), "top1_mean": statistics.mean(acc), "top1_std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
            "macs_mean": statistics.mean(macs), "macs_max": max(macs),
            "params_mean": statistics.mean(r["params"] for r in runs),
            "nonzero_mean": statistics.mean(r["nonzero"] for r in runs),
            "met": row.budget is None or max(macs) <= row.budget + row.tolerance}


def markdown_table(results: dict, rows, extra: dict | None = None) -> str:
    """A Markdown table: top-1 mean +- std (n seeds), MACs fraction, params, the budget check, the paper's figure.

    ``extra``: more columns before the paper's, ``{column title: {row label: cell text}}`` (a missing
    cell is left empty). A row with no runs says why: skipped (its reason), failed, or not run (yet).
    """
    extra, d = extra or {}, results["dense"]
    titles = list(extra)
    more = "".join(f" {t} |" for t in titles)
    lines = ["| method | top-1 (mean +- std) | seeds | MACs / dense | params | non-zero params | budget |" + more +
             " the paper's own figure (theirs) |", "|---|---:|---:|---:|---:|---:|---|" + "---|" * len(titles) + "---|",
             f"| dense base | {d['top1']:.2f}% | - | 1.000 | {d['params']:,} | {d['nonzero']:,} | - |" +
             " - |" * len(titles) + " - |"]
    for row in rows:
        s = summary(results, row)
        cells = "".join(f" {extra[t].get(row.label, '')} |" for t in titles)
        if s is None:
            why = results.get("skipped", {}).get(row.label)
            fails = [v for k, v in results.get("failed", {}).items() if k.rsplit("|", 1)[0] == row.label]
            status = f"skipped: {why}" if why else (f"failed: {fails[0]}" if fails else "not run yet")
            lines.append(f"| {row.label} | {status} | 0 | | | | |{cells} {row.paper} |")
            continue
        budget = "-" if row.budget is None else (
            f"{row.budget:.2f} met" if s["met"] else f"**{row.budget:.2f} missed** (max {s['macs_max']:.3f})")
        acc = f"{s['top1_mean']:.2f} +- {s['top1_std']:.2f}%" if s["n"] > 1 else f"{s['top1_mean']:.2f}% (one seed)"
        lines.append(f"| {row.label} | {acc} | {s['n']} | "
                     f"{s['macs_mean']:.3f} | {s['params_mean']:,.0f} | {s['nonzero_mean']:,.0f} | {budget} |"
                     f"{cells} {row.paper} |")
    return "\n".join(lines)


def isfinite_all(results: dict) -> bool:
    """True when every recorded top-1 is a finite number (a diverged run is not a result)."""
    return all(math.isfinite(r["top1"]) for r in results["runs"].values())
