"""The coverage sweep's rows -> categories, totals and the published pages (docs/coverage.md, docs/bench/coverage.md).

Pure functions of row dictionaries (no torch), so ``bench/coverage.py --render``
rebuilds both pages from the results store alone, and the tests check them on
fake rows (tests/graph/test_coverage_sweep.py).
"""
from __future__ import annotations

import re
import time
from pathlib import Path

LIMITS = "not built within limits"
REALLY = "really pruned"


def _exception_type(reason: str) -> str | None:
    m = re.match(r"(?:running or measuring the models failed: )?([A-Za-z_][\w.]*(?:Error|Exception|Interrupt))\b",
                 reason or "")
    return m.group(1).rpartition(".")[2] if m else None


def category(row: dict) -> str:
    """One cause per row: ``really pruned``, why it did not build, or why prunekit did not really prune it.

    Build outcomes: ``not built within limits: too large`` (parameter count over
    ``--max-params``), ``...: time`` (the timeout hit before the model built),
    ``...: memory`` (MemoryError or the process died under the memory limit),
    ``build error``. prunekit outcomes on a built model: ``really pruned``,
    ``prunekit: timeout``, ``prunekit: memory``, ``prunekit: raw <Type>`` (an
    internal exception: a bug), ``prunekit: refused (<Type>)`` (another PrunekitError, a
    message for the user), ``prunekit: unsupported`` (one
    UnsupportedModelError naming op, module and line), ``prunekit: frozen everything``,
    ``prunekit: output shape changed``, ``prunekit: non-finite output``,
    ``prunekit: pruned model fails`` (running or measuring it raised),
    ``prunekit: MACs ratio > 0.6, frozen: <op of the first frozen region>`` or
    ``..., no frozen region`` (channels kept by constant sizes, e.g. under torch.export).
    """
    build = row.get("build")
    reason = row.get("reason") or ""
    if build == "too_large":
        return f"{LIMITS}: too large"
    if build in ("skipped", "failed") and ("timeout" in reason):
        return f"{LIMITS}: time"
    if build in ("skipped", "failed") and ("MemoryError" in reason or "process died" in reason
                                           or "out of memory" in reason):
        return f"{LIMITS}: memory"
    if build != "ok":
        return "build error"
    p = row.get("prunekit") or {}
    if p.get("really_pruned"):
        return REALLY
    status, why = p.get("status"), p.get("reason") or ""
    if status == "timeout":
        return "prunekit: timeout"
    if status == "frozen":
        return "prunekit: frozen everything"
    if status == "error":
        kind = p.get("error_type") or _exception_type(why)
        if kind == "MemoryError":
            return "prunekit: memory"
        if why.startswith("running or measuring"):
            return "prunekit: pruned model fails"
        if kind in (None, "UnsupportedModelError"):
            return "prunekit: unsupported"
        if p.get("internal") is False:  # a PrunekitError subclass: a message for the user, not a bug
            return f"prunekit: refused ({kind})"
        return f"prunekit: raw {kind}"
    if p.get("shape_kept") is False:
        return "prunekit: output shape changed"
    if p.get("finite") is False:
        return "prunekit: non-finite output"
    if status == "unpruned":
        return "prunekit: nothing removed"
    frozen = p.get("frozen") or []
    if frozen:  # the first frozen region's op names the cause ("function _operator.floordiv", "module GPSA")
        return f"prunekit: MACs ratio > 0.6, frozen: {frozen[0].split(' in ')[0]}"
    return "prunekit: MACs ratio > 0.6, no frozen region"


def categories(rows: list[dict], examples: int = 3) -> dict[str, dict]:
    """``{category: {"count": n, "examples": [first models]}}``, most frequent first (ties by name)."""
    out: dict[str, dict] = {}
    for r in rows:
        c = out.setdefault(category(r), {"count": 0, "examples": []})
        c["count"] += 1
        if len(c["examples"]) < examples:
            c["examples"].append(r["model"])
    return dict(sorted(out.items(), key=lambda kv: (-kv[1]["count"], kv[0])))


def summarize(rows: list[dict]) -> dict:
    """Totals per library: built, really pruned by prunekit / by Torch-Pruning, errors, frozen, not built by cause."""
    out = {}
    for lib in sorted({r.get("library", "timm") for r in rows}):
        every = [r for r in rows if r.get("library", "timm") == lib]
        rs = [r for r in every if r.get("build") == "ok"]
        pk = [r.get("prunekit", {}) for r in rs]
        tp = [r.get("torch_pruning", {}) for r in rs]
        exact = [p for p in pk if p.get("really_pruned") and not p.get("norm_coupled")]
        cats = [category(r) for r in every]
        out[lib] = {
            "built": len(rs),
            "not_built": len(every) - len(rs),
            "not_built_limits": sum(1 for c in cats if c.startswith(LIMITS)),
            "prunekit_really_pruned": sum(1 for p in pk if p.get("really_pruned")),
            "prunekit_frozen_everything": sum(1 for p in pk if p.get("status") == "frozen"),
            "prunekit_errors": sum(1 for p in pk if p.get("status") in ("error", "timeout")),
            "prunekit_raw_exceptions": sum(1 for c in cats if c.startswith("prunekit: raw ")),
            "prunekit_exact_apply_vs_masks": sum(1 for p in exact if (p.get("apply_vs_masks") or 0) <= 1e-4),
            "prunekit_exact_candidates": len(exact),
            "tp_run": sum(1 for t in tp if t),
            "tp_really_pruned": sum(1 for t in tp if t.get("really_pruned")),
            "tp_errors": sum(1 for t in tp if t.get("status") == "error"),
            "slowest_plan_s": max((p["plan_s"] for p in pk if p.get("plan_s") is not None), default=None),
            "plan_over_10s": sorted(r["model"] for r in rs if (r.get("prunekit", {}).get("plan_s") or 0) > 10),
            "max_analysis_vs_forward": max((p["analysis_vs_forward"] for p in pk
                                            if p.get("analysis_vs_forward") is not None), default=None),
            "max_analysis_peak_mb": max((p["analysis_peak_mb"] for p in pk if p.get("analysis_peak_mb") is not None),
                                        default=None),
            "shape_pass_real": sum(1 for p in pk if str(p.get("shape_pass", "")).startswith("real")),
            "tp_pruned_but_not_prunekit": sorted(r["model"] for r in rs if r.get("torch_pruning", {}).get(
                "really_pruned") and not r["prunekit"].get("really_pruned")),
        }
    return out


def _commands(command) -> str:
    """One command in backticks, or several (a store filled in passes: a list) joined with "then"."""
    if isinstance(command, (list, tuple)):
        return ", then ".join(f"`{c}`" for c in command)
    return f"`{command}`"


def _cell(d: dict, key: str, fmt="{}") -> str:
    v = d.get(key)
    return "" if v is None else fmt.format(v)


def _fmt(v, fmt: str) -> str:
    return "-" if v is None else fmt.format(v)


def _pct(a: int, b: int) -> str:
    return f"{100 * a / b:.1f}%" if b else "n/a"


def markdown(rows: list[dict], totals: dict, command: str) -> str:
    """docs/coverage.md: totals per library, the categories with counts and examples, one row per model."""
    tp_ran = any(t.get("tp_run", 1) for t in totals.values())
    when = "in the passes listed" if isinstance(command, (list, tuple)) else "in the same run"
    tools = (f"prunekit and Torch-Pruning 1.6.1 {when}, same ratio, same MACs counter" if tp_ran
             else "prunekit only: this run did not run Torch-Pruning")
    tp_note = ("Torch-Pruning runs with its defaults (`MagnitudePruner`, L1, no `num_heads` map, so attention "
               "models often fail in its reshapes); " if tp_ran else "")
    lines = ["# Coverage: third-party models pruned at 50% of channels", "",
             f"Generated by {_commands(command)} (random init, task head ignored; {tools}). `really` = MACs after/before "
             "<= 0.6, output shape kept, finite. `apply/masks` = relative difference between removing and zeroing "
             "the channels (`~` marks plans that prune channels a LayerNorm-style op normalises over, where the "
             f"two differ by design). {tp_note}a model whose tool exceeded the time limit is "
             "`skipped`/`timeout`. Seconds are wall time; unless the run was alone on the machine they were measured "
             "under load and are not results.", ""]
    for lib, t in totals.items():
        tp_of = t["built"] if t.get("tp_run", t["built"]) == t["built"] else f"{t['tp_run']} it ran on (not yet run on " \
            f"{t['built'] - t['tp_run']})"
        tp = (f"Torch-Pruning 1.6.1 really prunes {t['tp_really_pruned']}/{tp_of} (errors: {t['tp_errors']})"
              if t.get("tp_run", 1) else "Torch-Pruning not run")
        lines.append(f"**{lib}**: {t['built']} built ({t['not_built']} did not build, "
                     f"{t.get('not_built_limits', 0)} of them not within the time/memory/size limits); "
                     f"prunekit really prunes {t['prunekit_really_pruned']}/{t['built']} "
                     f"({_pct(t['prunekit_really_pruned'], t['built'])}; "
                     f"frozen everything: {t['prunekit_frozen_everything']}, errors: {t['prunekit_errors']}, "
                     f"raw internal exceptions: {t.get('prunekit_raw_exceptions', 0)}; "
                     f"apply = apply_masks within 1e-4 on {t['prunekit_exact_apply_vs_masks']}/"
                     f"{t['prunekit_exact_candidates']} without norm coupling); {tp}"
                     + (f"; pruned by Torch-Pruning only: {', '.join(t['tp_pruned_but_not_prunekit'])}"
                        if t["tp_pruned_but_not_prunekit"] else "") + ".")
        lines.append("")
        if t.get("slowest_plan_s") is not None:
            lines.append(f"prunekit plan + apply: slowest {t['slowest_plan_s']:.2f} s"
                         + (f", over 10 s: {', '.join(t['plan_over_10s'])}" if t["plan_over_10s"] else
                            ", none over 10 s")
                         + (f"; analysis peak memory at most {t['max_analysis_vs_forward']:.2f}x the model's "
                            f"forward (at most {t.get('max_analysis_peak_mb') or 0:.1f} MB: at these small example "
                            "inputs a forward's own peak is often under 1 MB, so the ratio measures the analysis's "
                            "fixed cost; see BENCHMARKS.md's engine section for ResNet-50 at 224x224); shapes from "
                            f"the real forward on {t['shape_pass_real']} models"
                            if t.get("max_analysis_vs_forward") is not None else "") + ".")
            lines.append("")
    lines += ["| outcome | models | examples |", "|---|---|---|"]
    lines += [f"| {c} | {v['count']} | {', '.join(v['examples'])} |" for c, v in categories(rows).items()]
    lines += ["", "| model | family | input | prunekit | MACs after/before | really | apply/masks | frozen regions | s "
              "| plan+apply s | analysis peak / forward | Torch-Pruning | MACs after/before | really | s "
              "| reason (prunekit) |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("build") != "ok":
            lines.append(f"| {r['model']} | {r.get('family', '')} | | {category(r)} | | | | | | | | | | | | "
                         f"{(r.get('reason') or '').replace('|', '/')[:160]} |")
            continue
        p, t = r.get("prunekit", {}), r.get("torch_pruning", {})
        avm = p.get("apply_vs_masks")
        avm_s = "" if avm is None else (("~" if p.get("norm_coupled") else "") + f"{avm:.1e}")
        inp = "x".join(str(s) for s in r["input"][0][1:])
        reason = (p.get("reason") or (p.get("frozen") or [""])[0]).replace("|", "/")[:200]
        lines.append(" | ".join([
            f"| {r['model']}", r.get("family", r.get("library", "")), inp, p.get("status", ""),
            _cell(p, "macs_ratio", "{:.2f}"), "yes" if p.get("really_pruned") else "no", avm_s,
            str(p.get("n_frozen", "")), _cell(p, "seconds", "{:.1f}"), _cell(p, "plan_s", "{:.2f}"),
            _cell(p, "analysis_vs_forward", "{:.2f}"), t.get("status", ""),
            _cell(t, "macs_ratio", "{:.2f}"), ("yes" if t.get("really_pruned") else "no") if t else "",
            _cell(t, "seconds", "{:.1f}"), reason]) + " |")
    return "\n".join(lines) + "\n"


def summary_page(totals: dict, command: str, table: str, finished: str | None = None) -> str:
    """The totals, for BENCHMARKS.md (the per-model table stays in ``table``); ``finished``: when the last row ran."""
    title = ("# Coverage of third-party models: every timm architecture (`bench/coverage.py --all`)"
             if "--all" in str(command) else "# Coverage of third-party models (`bench/coverage.py`)")
    lines = [title, "",
             f"{_commands(command)}, {finished or 'rendered ' + time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
             ", random init, 50% of channels, "
             "task head ignored, prunekit and Torch-Pruning 1.6.1 (its defaults: `MagnitudePruner`, L1) "
             f"{'in the passes listed' if isinstance(command, (list, tuple)) else 'in the same run'} on the same list. "
             f"Per-model rows with the reason for every model not pruned: [{Path(table).name}](../{Path(table).name}).",
             "", "| library | built | not built (limits) | prunekit really prunes | frozen everything | errors | "
             "apply = masks (no norm coupling) | Torch-Pruning really prunes | TP errors | slowest plan+apply s | "
             "analysis peak / forward (max) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for lib, t in totals.items():
        partial = "" if t.get("tp_run", t["built"]) == t["built"] else f" of {t['tp_run']} run"
        tp = (f"{t['tp_really_pruned']}{partial} | {t['tp_errors']}" if t.get("tp_run", 1) else "not run | ")
        lines.append(f"| {lib} | {t['built']} | {t['not_built']} ({t.get('not_built_limits', 0)}) | "
                     f"{t['prunekit_really_pruned']} ({_pct(t['prunekit_really_pruned'], t['built'])}) | "
                     f"{t['prunekit_frozen_everything']} | {t['prunekit_errors']} | "
                     f"{t['prunekit_exact_apply_vs_masks']}/{t['prunekit_exact_candidates']} | {tp} | "
                     f"{_fmt(t.get('slowest_plan_s'), '{:.2f}')} | {_fmt(t.get('max_analysis_vs_forward'), '{:.2f}')} |")
    lines += ["", "\"Really prunes\": MACs after/before <= 0.6, output shape kept, finite output."]
    peaks = [t.get("max_analysis_peak_mb") for t in totals.values() if t.get("max_analysis_peak_mb") is not None]
    if peaks:
        lines += ["", f"\"Analysis peak / forward\" is measured at the small example inputs of the table, where a "
                  f"model's own forward often peaks under 1 MB; the analysis's peak was at most {max(peaks):.1f} MB, "
                  "so the large ratios are its fixed cost. At a realistic input the ratio is in the engine speed "
                  "section (ResNet-50 at 224x224)."]
    return "\n".join(lines) + "\n"
