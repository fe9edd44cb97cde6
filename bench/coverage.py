"""Coverage of third-party model libraries: timm architectures and HF transformers models, pruned at 50%.

For every architecture that builds (random init) within a time and memory
limit, prunekit plans and applies a 50% channel pruning with the task head
ignored, and records per model:

* ``status``: ``pruned`` (some channels removed), ``frozen`` (nothing prunable:
  one ``UnsupportedModelError`` naming the op, module and line) or ``error``
  (any other exception, with its type and message; none is expected);
* ``really_pruned``: MACs after / before <= 0.6, output shape kept, output finite;
* ``apply_vs_masks``: relative difference between ``plan.apply`` (channels
  removed) and ``plan.apply_masks`` (channels zeroed) on the same input;
* ``norm_coupled``: the plan prunes channels a LayerNorm-style op normalises
  over, where removing and masking differ by design (apply_vs_masks is then
  not expected to be ~0);
* MACs before/after (``prunekit.measure.count_macs``), frozen regions, seconds;
* ``plan_s``: ``prunekit.plan`` + ``plan.apply`` alone (issue 14 asks for <= 10 s on every
  architecture); with ``--memory``, ``analysis_vs_forward``: peak CPU memory of
  ``prunekit.graph.analyze`` over the model's own forward at the example input (both
  ``prunekit.measure.memory.peak_cpu_memory(..., python=True)``; the issue asks for <= 2),
  and ``shape_pass`` (meta tensors, or the real forward and why);

and the same list with Torch-Pruning 1.6.1 (``MagnitudePruner``, L1, 50%,
same ignored head), side by side, in the same run. Each model runs in its own
forked process with a timeout and an address-space limit.

timm imports torchvision at import time (``FrozenBatchNorm2d`` and the data
transforms) although building models never uses it; there is no CPU build of
torchvision on the registry, so when it is absent a stub module stands in for
it (:func:`install_torchvision_stub`). prunekit itself never imports torchvision.

Usage::

    python bench/coverage.py --sample 30            # one model per module family, ~30 families
    python bench/coverage.py --families --resume    # one architecture per name stem (289), resumable
    python bench/coverage.py --all --resume         # every timm architecture (hours; see below)
    python bench/coverage.py --models resnet18,vit_tiny_patch16_224 --no-tp
    python bench/coverage.py --hf                   # the HF transformers models only
    python bench/coverage.py --render               # rebuild the pages from the --json store alone

The full sweep on a 2-core machine, two shard processes sharing one store
(each finished model is merged into it at once; rerun the same commands after
an interruption and they continue)::

    rm -f docs/coverage.json                        # a fresh store (without this, finished rows are kept)
    python bench/coverage.py --all --resume --shard 1/2 --no-render &
    python bench/coverage.py --all --resume --shard 2/2 --no-render; wait
    python bench/coverage.py --render

Writes ``docs/coverage.md`` (table), ``docs/coverage.json`` (the store) and
``docs/bench/coverage.md`` (totals) unless told otherwise. The bookkeeping
(store, shards, families, progress) is in ``coverage_sweep.py``, the
categories and pages in ``coverage_report.py``.
"""
from __future__ import annotations

import argparse
import copy
import json
import multiprocessing as mp
import sys
import time
import traceback
import warnings
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))  # appended: bench/coverage.py must not shadow `coverage`

import coverage_report as report  # noqa: E402
import coverage_sweep as sweep  # noqa: E402
from coverage_models import (  # noqa: E402,F401 - re-exported: the tests and users build models through here
    HF_MODELS, build_hf, import_timm, install_torchvision_stub, remove_torchvision_stub, timm_family)

RATIO = 0.5
MAX_PARAMS_M = 300  # default --max-params: larger models are recorded as too large, not built
MEASURE_MEMORY = False  # set by --memory before the per-model processes fork
SMALL_SIDES = (64, 96, 128)  # tried in order for models that accept other input sizes

def timm_sample(timm, n: int) -> list[str]:
    """Up to ``n`` architectures, one per family, the smallest-looking name of each family first.

    Deterministic: families in alphabetical order, spread evenly over the list.
    """
    fams: dict = {}
    for name in timm.list_models():
        fams.setdefault(timm_family(timm, name), []).append(name)
    keys = sorted(fams)
    if n >= len(keys):
        chosen = keys
    else:
        step = len(keys) / n
        chosen = [keys[int(k * step)] for k in range(n)]
    return [min(fams[f], key=sweep.small_rank) for f in chosen]


def timm_params_m(name: str) -> float | None:
    """Millions of parameters of a timm architecture, from a build on the meta device (no memory, ~1 s).

    None when the architecture cannot be built on the meta device (some compute
    tables at init); the real build then runs under the time and memory limits.
    """
    import torch

    timm = import_timm()
    try:
        with warnings.catch_warnings(), torch.device("meta"):
            warnings.simplefilter("ignore")
            model = timm.create_model(name, pretrained=False, num_classes=10)
    except Exception:  # noqa: BLE001 - only an estimate
        return None
    return sum(p.numel() for p in model.parameters()) / 1e6


def build_timm(name: str):
    """``(model, example_input, head names)`` at random init, on the smallest input the model accepts."""
    import torch

    timm = import_timm()
    torch.manual_seed(0)
    last = None
    for side in SMALL_SIDES + (None,):
        try:
            kwargs = {} if side is None else {"img_size": side}
            try:
                model = timm.create_model(name, pretrained=False, num_classes=10, **kwargs)
            except TypeError:  # no img_size argument: CNNs usually take any size anyway
                model = timm.create_model(name, pretrained=False, num_classes=10)
            shape = tuple(model.pretrained_cfg.get("input_size", (3, 224, 224)))
            if side is not None:
                shape = (shape[0], side, side)
            model.eval()
            x = torch.randn(1, *shape)
            with torch.no_grad():
                model(x)
            heads = model.pretrained_cfg.get("classifier", "head")
            heads = [heads] if isinstance(heads, str) else list(heads)
            return model, x, heads
        except Exception as e:  # noqa: BLE001 - the next size (finally the default) is tried
            last = e
    raise RuntimeError(f"does not build: {type(last).__name__}: {str(last)[:200]}")


# ----------------------------------------------------------------------------- one model


def _as_tuple(x):
    return x if isinstance(x, tuple) else (x,)


def _rel(a, b) -> float:
    return float((a - b).abs().max() / (b.abs().max() + 1e-12))


def run_prunekit(model, x, heads) -> dict:
    """Plan + apply 50% with prunekit; the row's prunekit fields."""
    import torch

    import prunekit
    from prunekit import measure
    from prunekit.errors import PrunekitError, UnsupportedModelError

    names = dict(model.named_modules())
    ignored = [h for h in heads if h in names]
    row: dict = {}
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            plan = prunekit.plan(model, x, ratio=RATIO, ignored_layers=ignored or None)
            small = plan.apply(model)
            plan_s = time.perf_counter() - t0
            masked = plan.apply_masks(model)
    except UnsupportedModelError as e:
        msg = str(e)
        row.update(status="frozen" if msg.startswith("nothing in") else "error", reason=msg[:300],
                   error_type="UnsupportedModelError", seconds=round(time.perf_counter() - t0, 2))
        return row
    except Exception as e:  # noqa: BLE001 - recorded: the harness must finish
        row.update(status="error", reason=f"{type(e).__name__}: {str(e)[:300]}", error_type=type(e).__name__,
                   internal=not isinstance(e, PrunekitError),
                   trace=traceback.format_exc(limit=-3)[-600:], seconds=round(time.perf_counter() - t0, 2))
        return row
    seconds = time.perf_counter() - t0
    try:
        with torch.no_grad():
            ref, out, out_m = model(*_as_tuple(x)), small(*_as_tuple(x)), masked(*_as_tuple(x))
        before = measure.count_macs(model, x).total
        after = measure.count_macs(small, x).total
    except Exception as e:  # noqa: BLE001 - a pruned model that does not run is a row, not a crash
        row.update(status="error", reason=f"running or measuring the models failed: {type(e).__name__}: {str(e)[:300]}",
                   seconds=round(seconds, 2))
        return row
    ratio = after / before if before else 1.0
    shape_kept = tuple(out.shape) == tuple(ref.shape)
    finite = bool(torch.isfinite(out).all())
    row.update(status="pruned" if plan.num_removed else "unpruned", macs_before=before, macs_after=after,
               macs_ratio=round(ratio, 4), shape_kept=shape_kept, finite=finite,
               apply_vs_masks=_rel(out, out_m) if shape_kept else None,
               norm_coupled=any(g.notes for g in plan.groups if g.removed),
               really_pruned=bool(ratio <= 0.6 and shape_kept and finite),
               frozen=[f"{f['op']} in {f['module'] or '<root>'} ({f['line']}): {f['reason']}"[:200]
                       for f in plan.frozen[:5]],
               n_frozen=len(plan.frozen), seconds=round(seconds, 2), plan_s=round(plan_s, 3))
    if MEASURE_MEMORY:
        row.update(analysis_memory(model, x))
    if not row["really_pruned"]:
        why = [] if shape_kept and finite else ["output shape changed" if not shape_kept else "non-finite output"]
        if ratio > 0.6:
            why.append(f"MACs ratio {ratio:.2f} > 0.6" + (f"; first frozen: {row['frozen'][0]}" if row["frozen"]
                                                           else ""))
        row["reason"] = "; ".join(why)
    return row


def analysis_memory(model, x) -> dict:
    """Peak CPU memory of ``prunekit.graph.analyze`` and of the model's forward (no grad), in MB, and their ratio.

    Both are ``peak_cpu_memory(..., python=True)`` (torch's allocator plus Python/NumPy) after one
    unmeasured call each, so imports and one-off caches are not counted.
    """
    import torch

    from prunekit.graph import analyze
    from prunekit.measure.memory import peak_cpu_memory

    def forward():
        with torch.no_grad():
            return model(*_as_tuple(x))

    def analysis():
        return analyze(model, x)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            shape_pass = analysis().shape_pass
            forward()
            fwd, an = peak_cpu_memory(forward, python=True), peak_cpu_memory(analysis, python=True)
    except Exception as e:  # noqa: BLE001 - a measurement failure is a note, not a crash
        return {"memory_error": f"{type(e).__name__}: {str(e)[:200]}"}
    if fwd is None or an is None:
        return {"memory_error": "no Kineto profiler in this torch build"}
    return {"forward_peak_mb": round(fwd / 2**20, 2), "analysis_peak_mb": round(an / 2**20, 2),
            "analysis_vs_forward": round(an / fwd, 3) if fwd else None, "shape_pass": shape_pass[:200]}


def run_torch_pruning(model, x, heads) -> dict:
    """The same 50% L1 channel pruning with Torch-Pruning 1.6.1 (benchmark-only dependency)."""
    import torch

    from prunekit import measure

    try:
        import torch_pruning as tp
    except ModuleNotFoundError:
        return {"status": "not installed"}
    names = dict(model.named_modules())
    model = copy.deepcopy(model)
    names = dict(model.named_modules())
    ignored = [names[h] for h in heads if h in names]
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            before = measure.count_macs(model, x).total
            with torch.no_grad():
                ref = model(*_as_tuple(x))
            pruner = tp.pruner.MagnitudePruner(model, example_inputs=x, importance=tp.importance.MagnitudeImportance(p=1),
                                               pruning_ratio=RATIO, ignored_layers=ignored)
            pruner.step()
            seconds = time.perf_counter() - t0
            with torch.no_grad():
                out = model(*_as_tuple(x))
            after = measure.count_macs(model, x).total
    except Exception as e:  # noqa: BLE001 - recorded
        return {"status": "error", "reason": f"{type(e).__name__}: {str(e)[:200]}",
                "seconds": round(time.perf_counter() - t0, 2)}
    ratio = after / before if before else 1.0
    shape_kept = tuple(out.shape) == tuple(ref.shape)
    finite = bool(torch.isfinite(out).all())
    return {"status": "pruned" if ratio < 1 else "unpruned", "macs_ratio": round(ratio, 4),
            "shape_kept": shape_kept, "finite": finite,
            "really_pruned": bool(ratio <= 0.6 and shape_kept and finite), "seconds": round(seconds, 2)}


def evaluate(name: str, tool: str = "prunekit", max_params_m: float | None = None, send=None) -> dict:
    """Build ``name`` (a timm architecture or one of :data:`HF_MODELS`) and prune it with ``tool``.

    ``tool`` is ``"prunekit"`` or ``"torch_pruning"``; each runs in its own
    process (see :func:`evaluate_isolated`) so that one tool's timeout does not
    hide the other's result. A timm architecture with more than
    ``max_params_m`` million parameters (counted on the meta device) is not
    built (``build: too_large``). ``send``, when given, receives the row once
    the model is built, so a timeout while pruning is told apart from one while
    building.
    """
    import torch

    torch.set_num_threads(1)
    row = {"model": name, "library": "transformers" if name in HF_MODELS else "timm"}
    if row["library"] == "timm":
        row["family"] = timm_family(import_timm(), name)
        if max_params_m:
            row["params_m"] = timm_params_m(name)
            if row["params_m"] is not None and row["params_m"] > max_params_m:
                row.update(build="too_large", reason=f"{row['params_m']:.0f} M parameters > --max-params "
                                                     f"{max_params_m:g} M (counted on the meta device, not built)")
                return row
    t0 = time.perf_counter()
    try:
        model, x, heads = build_hf(name) if name in HF_MODELS else build_timm(name)
    except Exception as e:  # noqa: BLE001
        row.update(build="failed", reason=f"{type(e).__name__}: {str(e)[:200]}")
        return row
    row.update(build="ok", input=[list(t.shape) for t in _as_tuple(x)], build_s=round(time.perf_counter() - t0, 2))
    if send is not None:
        send({"stage": "built", **row})
    row[tool] = (run_prunekit if tool == "prunekit" else run_torch_pruning)(model, x, heads)
    return row


def _child(name, tool, mem_gb, max_params_m, conn):
    if mem_gb:
        import resource

        limit = int(mem_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        conn.send(evaluate(name, tool, max_params_m, send=conn.send))
    except BaseException as e:  # noqa: BLE001 - MemoryError included
        conn.send({"model": name, "build": "failed", "reason": f"{type(e).__name__}: {str(e)[:200]}"})
    conn.close()


def _run_forked(name: str, tool: str, timeout: float, mem_gb: float | None,
                max_params_m: float | None = None) -> tuple[dict | None, dict | None, str]:
    """``(built row or None, final row or None, why none)`` of :func:`evaluate` in a forked, limited process."""
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_child, args=(name, tool, mem_gb, max_params_m, child))
    p.start()
    child.close()
    built = final = None
    deadline = time.monotonic() + timeout
    while final is None and parent.poll(max(0.0, deadline - time.monotonic())):
        try:
            msg = parent.recv()
        except EOFError:
            break
        if msg.pop("stage", None) == "built":
            built = msg
        else:
            final = msg
    p.join(5)
    if p.is_alive():
        p.kill()
        p.join()
    why = "" if final else (f"timeout after {timeout:.0f} s" if p.exitcode in (None, -9)
                            else f"process died (exit {p.exitcode})")
    return built, final, why


def evaluate_isolated(name: str, with_tp: bool | list, timeout: float, mem_gb: float | None,
                      max_params_m: float | None = None) -> dict:
    """:func:`evaluate` for each tool (``with_tp``: both or prunekit only; or a list of tools), each in a forked
    process killed after ``timeout`` s; a tool that did not finish on a built model gets status ``timeout``/``died``.
    """
    tools = with_tp if isinstance(with_tp, list) else ["prunekit"] + (["torch_pruning"] if with_tp else [])
    row: dict = {"model": name}
    for tool in tools:
        built, final, why = _run_forked(name, tool, timeout, mem_gb, max_params_m)
        if final is not None:
            row.update(final)
        elif built is not None:  # built, then the tool ran out of time or memory
            row.update(built)
            row[tool] = {"status": "timeout" if why.startswith("timeout") else "died", "reason": why}
        else:
            row.update(build="skipped", reason=f"did not build: {why}")
        if row.get("build") != "ok":
            break
    return row


def select(args, timm) -> list[str]:
    """The models a command line asks for, in order, after ``--shard``."""
    if args.models:
        names = args.models.split(",")
    elif args.hf:
        names = list(HF_MODELS)
    else:
        if args.all:
            names = timm.list_models()
        elif args.families:
            names = sweep.one_per_family(timm.list_models())
        else:
            names = timm_sample(timm, args.sample)
        if not args.no_hf:
            names += list(HF_MODELS)
    return sweep.shard(names, args.shard)


def render(store: dict, out: str, summary: str) -> dict:
    """Write the table page ``out`` and the totals page ``summary`` from the store alone; returns the totals."""
    rows = sorted(store["rows"].values(), key=lambda r: (r.get("library", "timm") != "timm", r["model"]))
    totals = report.summarize(rows)
    command = store["meta"].get("command", "python bench/coverage.py")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(report.markdown(rows, totals, command))
    if summary:
        Path(summary).parent.mkdir(parents=True, exist_ok=True)
        Path(summary).write_text(report.summary_page(totals, command, out, store["meta"].get("finished")))
    return totals


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sel = ap.add_mutually_exclusive_group()
    sel.add_argument("--sample", type=int, default=30, help="one architecture per module family, this many families")
    sel.add_argument("--families", action="store_true", help="one architecture per name stem, every stem")
    sel.add_argument("--all", action="store_true", help="every timm architecture")
    sel.add_argument("--models", help="comma-separated architecture names (timm names or hf_*)")
    sel.add_argument("--render", action="store_true", help="only rebuild the pages from the --json store")
    ap.add_argument("--hf", action="store_true", help="only the HF transformers models")
    ap.add_argument("--no-hf", action="store_true", help="skip the HF transformers models")
    ap.add_argument("--no-tp", action="store_true", help="skip Torch-Pruning")
    ap.add_argument("--memory", action="store_true",
                    help="also measure the analysis's peak memory against the model's forward (slower)")
    ap.add_argument("--shard", help="i/n: run every n-th selected model from the i-th (1-based)")
    ap.add_argument("--resume", action="store_true",
                    help="keep the --json store's rows and run only the models (or tools) it lacks")
    ap.add_argument("--redo", action="append", default=[], metavar="CATEGORY",
                    help="with --resume: run again the stored rows whose category starts with this (e.g. "
                         "'prunekit:' after an engine fix; repeatable)")
    ap.add_argument("--no-render", action="store_true", help="do not write the pages at the end (shard runs)")
    ap.add_argument("--timeout", type=float, default=180, help="seconds per model and tool (build + pruning)")
    ap.add_argument("--mem-gb", type=float, default=8, help="address-space limit per model process (0: none)")
    ap.add_argument("--max-params", type=float, default=MAX_PARAMS_M,
                    help="millions of parameters above which a timm model is not built (0: no limit)")
    ap.add_argument("--out", default="docs/coverage.md")
    ap.add_argument("--json", default="docs/coverage.json", help="the per-model results store")
    ap.add_argument("--summary", default="docs/bench/coverage.md",
                    help="totals page collected into BENCHMARKS.md by scripts/build_reports.py ('' to skip)")
    args = ap.parse_args(argv)
    global MEASURE_MEMORY
    MEASURE_MEMORY = bool(args.memory)
    if args.render:
        print(json.dumps(render(sweep.load_store(args.json), args.out, args.summary), indent=1))
        return 0
    try:
        sweep.parse_shard(args.shard) if args.shard else None
    except ValueError as e:
        ap.error(str(e))
    timm = import_timm()
    if timm is None and not (args.models or args.hf):
        print("timm is not installed: pip install --no-deps timm huggingface_hub safetensors", file=sys.stderr)
        return 2
    names = select(args, timm)
    command = "python bench/coverage.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if not args.resume:
        sweep.save_store(args.json, {"meta": {}, "rows": {}})
    stored = sweep.load_store(args.json)["rows"]
    redo = tuple(args.redo)
    todo = [(n, sweep.tools_needed(None if redo and n in stored and report.category(stored[n]).startswith(redo)
                                   else stored.get(n), not args.no_tp)) for n in names]
    todo = [(n, t) for n, t in todo if t]
    print(f"{len(names)} selected, {len(names) - len(todo)} already in {args.json}, {len(todo)} to run", flush=True)
    progress = sweep.Progress(len(todo))
    for name, tools in todo:
        row = evaluate_isolated(name, tools, args.timeout, args.mem_gb or None, args.max_params or None)
        store = sweep.merge_row(args.json, row, {"command": command.strip(), "ratio": RATIO,
                                                 "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())})
        row = store["rows"][name]
        p = row.get("prunekit", {})
        detail = f"MACs {p['macs_ratio']}" if "macs_ratio" in p else (p.get("reason") or row.get("reason") or "")
        print(progress.step(name, report.category(row), detail[:160]), flush=True)
    if not args.no_render:
        print(json.dumps(render(sweep.load_store(args.json), args.out, args.summary), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
