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

and the same list with Torch-Pruning 1.6.1 (``MagnitudePruner``, L1, 50%,
same ignored head), side by side, in the same run. Each model runs in its own
forked process with a timeout and an address-space limit.

timm imports torchvision at import time (``FrozenBatchNorm2d`` and the data
transforms) although building models never uses it; there is no CPU build of
torchvision on the registry, so when it is absent a stub module stands in for
it (:func:`install_torchvision_stub`). prunekit itself never imports torchvision.

Usage::

    python bench/coverage.py --sample 30            # one model per family, ~30 families
    python bench/coverage.py --all                  # every timm architecture (hours)
    python bench/coverage.py --models resnet18,vit_tiny_patch16_224 --no-tp
    python bench/coverage.py --hf                   # the HF transformers models only

Writes ``docs/coverage.md`` (table) and ``docs/coverage.json`` unless told otherwise.
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

RATIO = 0.5
SMALL_SIDES = (64, 96, 128)  # tried in order for models that accept other input sizes

# ----------------------------------------------------------------------------- timm without torchvision


def install_torchvision_stub() -> bool:
    """Make ``import torchvision...`` succeed with inert stand-ins when torchvision is not installed.

    Returns True when the stub was installed. Any attribute of a stub module is a
    placeholder class; calling it raises, so code that really needs torchvision
    fails loudly instead of silently doing nothing.
    """
    import importlib.abc
    import importlib.machinery
    import importlib.util
    import types

    if "torchvision" in sys.modules or importlib.util.find_spec("torchvision") is not None:
        return False

    class _Placeholder(type):
        def __getattr__(cls, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return _Placeholder(name, (), {})

        def __call__(cls, *a, **k):
            raise RuntimeError(f"torchvision is not installed ({cls.__name__} is a stub)")

    class _StubModule(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return _Placeholder(name, (), {})

    class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        prunekit_stub = True

        def find_spec(self, fullname, path, target=None):
            if fullname == "torchvision" or fullname.startswith("torchvision."):
                return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
            return None

        def create_module(self, spec):
            m = _StubModule(spec.name)
            m.__path__ = []
            return m

        def exec_module(self, module):
            pass

    sys.meta_path.append(_Finder())
    return True


def remove_torchvision_stub() -> None:
    """Undo :func:`install_torchvision_stub` (transformers reads torchvision's version when it looks importable)."""
    sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "prunekit_stub", False)]
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        if type(sys.modules[name]).__name__ == "_StubModule":
            del sys.modules[name]


def import_timm():
    """``timm``, or None when it is not installed."""
    try:
        import timm  # noqa: F401
    except ModuleNotFoundError as e:
        if e.name != "torchvision":
            return None
        install_torchvision_stub()
    try:
        import timm
    except ModuleNotFoundError:
        return None
    return timm


def timm_family(timm, name: str) -> str:
    """The timm module an architecture is defined in (its family: ``resnet``, ``vision_transformer``...)."""
    from timm.models import get_arch_name, model_entrypoint

    try:
        return model_entrypoint(name).__module__.rpartition(".")[2]
    except Exception:  # noqa: BLE001 - family is only used for sampling
        return get_arch_name(name)


def timm_sample(timm, n: int) -> list[str]:
    """Up to ``n`` architectures, one per family, the smallest-looking name of each family first.

    Deterministic: families in alphabetical order, spread evenly over the list.
    """
    fams: dict = {}
    for name in timm.list_models():
        fams.setdefault(timm_family(timm, name), []).append(name)
    small = ("atto", "femto", "pico", "nano", "tiny", "xxs", "xs", "small", "s12", "t8", "_002", "050", "18", "_b0",
             "lite0", "a0", "_s", "128s")

    def rank(name):
        hit = [k for k, s in enumerate(small) if s in name]
        return (min(hit) if hit else len(small), len(name), name)

    keys = sorted(fams)
    if n >= len(keys):
        chosen = keys
    else:
        step = len(keys) / n
        chosen = [keys[int(k * step)] for k in range(n)]
    return [sorted(fams[f], key=rank)[0] for f in chosen]


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


# ----------------------------------------------------------------------------- HF transformers


HF_MODELS = ("hf_bert", "hf_vit", "hf_gpt2", "hf_llama_gqa", "hf_qwen2_gqa", "hf_t5")


def build_hf(name: str):
    """A small-config HF transformers model wrapped to return its logits, with its example input and head."""
    import torch

    remove_torchvision_stub()  # timm models are built already; transformers must not see a fake torchvision
    import transformers as tf

    torch.manual_seed(0)
    ids = torch.randint(0, 100, (1, 12))
    common = dict(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
    if name == "hf_bert":
        model = tf.BertForSequenceClassification(tf.BertConfig(**common, num_labels=3))
        head, x = "model.classifier", ids
    elif name == "hf_vit":
        cfg = tf.ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                           image_size=32, patch_size=8, num_labels=3)
        model = tf.ViTForImageClassification(cfg)
        head, x = "model.classifier", torch.randn(1, 3, 32, 32)
    elif name == "hf_gpt2":
        cfg = tf.GPT2Config(vocab_size=100, n_embd=64, n_layer=2, n_head=4, n_positions=32, num_labels=3,
                            pad_token_id=0)
        model = tf.GPT2ForSequenceClassification(cfg)
        head, x = "model.score", ids
    elif name == "hf_llama_gqa":
        model = tf.LlamaForCausalLM(tf.LlamaConfig(**common, num_key_value_heads=2, max_position_embeddings=32))
        head, x = "model.lm_head", ids
    elif name == "hf_qwen2_gqa":
        model = tf.Qwen2ForCausalLM(tf.Qwen2Config(**common, num_key_value_heads=2, max_position_embeddings=32))
        head, x = "model.lm_head", ids
    elif name == "hf_t5":
        cfg = tf.T5Config(vocab_size=100, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4,
                          decoder_start_token_id=0)
        model = tf.T5ForConditionalGeneration(cfg)
        head, x = "model.lm_head", (ids, torch.zeros(1, 4, dtype=torch.long))
    else:
        raise ValueError(f"unknown HF model {name!r}; choose from {HF_MODELS}")
    wrapped = _make_logits()(model.eval()).eval()
    return wrapped, x, [head]


def _make_logits():
    import torch.nn as nn

    class Logits(nn.Module):
        """A HF model returning its logits tensor (the engine and Torch-Pruning want tensors out)."""

        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x, decoder_input_ids=None):
            if decoder_input_ids is not None:
                return self.model(input_ids=x, decoder_input_ids=decoder_input_ids, use_cache=False).logits
            if x.is_floating_point():
                return self.model(pixel_values=x).logits
            return self.model(input_ids=x, use_cache=False).logits  # no KV cache: one forward pass

    return Logits


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
    from prunekit.errors import UnsupportedModelError

    names = dict(model.named_modules())
    ignored = [h for h in heads if h in names]
    row: dict = {}
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            plan = prunekit.plan(model, x, ratio=RATIO, ignored_layers=ignored or None)
            small = plan.apply(model)
            masked = plan.apply_masks(model)
    except UnsupportedModelError as e:
        msg = str(e)
        row.update(status="frozen" if msg.startswith("nothing in") else "error", reason=msg[:300],
                   seconds=round(time.perf_counter() - t0, 2))
        return row
    except Exception as e:  # noqa: BLE001 - recorded: the harness must finish
        row.update(status="error", reason=f"{type(e).__name__}: {str(e)[:300]}",
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
               n_frozen=len(plan.frozen), seconds=round(seconds, 2))
    if not row["really_pruned"]:
        why = [] if shape_kept and finite else ["output shape changed" if not shape_kept else "non-finite output"]
        if ratio > 0.6:
            why.append(f"MACs ratio {ratio:.2f} > 0.6" + (f"; first frozen: {row['frozen'][0]}" if row["frozen"]
                                                           else ""))
        row["reason"] = "; ".join(why)
    return row


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


def evaluate(name: str, tool: str = "prunekit") -> dict:
    """Build ``name`` (a timm architecture or one of :data:`HF_MODELS`) and prune it with ``tool``.

    ``tool`` is ``"prunekit"`` or ``"torch_pruning"``; each runs in its own
    process (see :func:`evaluate_isolated`) so that one tool's timeout does not
    hide the other's result.
    """
    import torch

    torch.set_num_threads(1)
    row = {"model": name, "library": "transformers" if name in HF_MODELS else "timm"}
    t0 = time.perf_counter()
    try:
        model, x, heads = build_hf(name) if name in HF_MODELS else build_timm(name)
    except Exception as e:  # noqa: BLE001
        row.update(build="failed", reason=f"{type(e).__name__}: {str(e)[:200]}")
        return row
    row.update(build="ok", input=[list(t.shape) for t in _as_tuple(x)], build_s=round(time.perf_counter() - t0, 2))
    if row["library"] == "timm":
        row["family"] = timm_family(import_timm(), name)
    row[tool] = (run_prunekit if tool == "prunekit" else run_torch_pruning)(model, x, heads)
    return row


def _child(name, tool, mem_gb, conn):
    if mem_gb:
        import resource

        limit = int(mem_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        conn.send(evaluate(name, tool))
    except BaseException as e:  # noqa: BLE001 - MemoryError included
        conn.send({"model": name, "build": "failed", "reason": f"{type(e).__name__}: {str(e)[:200]}"})
    conn.close()


def _run_forked(name: str, tool: str, timeout: float, mem_gb: float | None) -> dict | None:
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_child, args=(name, tool, mem_gb, child))
    p.start()
    child.close()
    row = None
    if parent.poll(timeout):
        try:
            row = parent.recv()
        except EOFError:
            row = None
    p.join(5)
    if p.is_alive():
        p.kill()
        p.join()
    if row is None:
        why = f"timeout after {timeout:.0f} s" if p.exitcode in (None, -9) else f"process died (exit {p.exitcode})"
        return {"status": "skipped", "reason": why}
    return row


def evaluate_isolated(name: str, with_tp: bool, timeout: float, mem_gb: float | None) -> dict:
    """:func:`evaluate` for prunekit, then for Torch-Pruning, each in a forked process killed after ``timeout`` s."""
    row = _run_forked(name, "prunekit", timeout, mem_gb)
    if "build" not in row:  # the prunekit process timed out or died
        row = {"model": name, "build": "skipped", "reason": row["reason"]}
    if with_tp and row.get("build") == "ok":
        tp = _run_forked(name, "torch_pruning", timeout, mem_gb)
        row["torch_pruning"] = tp.get("torch_pruning", {"status": tp.get("status", "error"),
                                                         "reason": tp.get("reason", "")})
    return row


# ----------------------------------------------------------------------------- report


def summarize(rows: list[dict]) -> dict:
    """Totals per library: built, really pruned by prunekit / by Torch-Pruning, errors, frozen."""
    out = {}
    for lib in sorted({r.get("library", "timm") for r in rows}):
        rs = [r for r in rows if r.get("library", "timm") == lib and r.get("build") == "ok"]
        pk = [r["prunekit"] for r in rs]
        tp = [r.get("torch_pruning", {}) for r in rs]
        exact = [p for p in pk if p.get("really_pruned") and not p.get("norm_coupled")]
        out[lib] = {
            "built": len(rs),
            "not_built": sum(1 for r in rows if r.get("library", "timm") == lib and r.get("build") != "ok"),
            "prunekit_really_pruned": sum(1 for p in pk if p.get("really_pruned")),
            "prunekit_frozen_everything": sum(1 for p in pk if p.get("status") == "frozen"),
            "prunekit_errors": sum(1 for p in pk if p.get("status") == "error"),
            "prunekit_exact_apply_vs_masks": sum(1 for p in exact if (p.get("apply_vs_masks") or 0) <= 1e-4),
            "prunekit_exact_candidates": len(exact),
            "tp_really_pruned": sum(1 for t in tp if t.get("really_pruned")),
            "tp_errors": sum(1 for t in tp if t.get("status") == "error"),
            "tp_pruned_but_not_prunekit": sorted(r["model"] for r in rs if r.get("torch_pruning", {}).get(
                "really_pruned") and not r["prunekit"].get("really_pruned")),
        }
    return out


def _cell(d: dict, key: str, fmt="{}") -> str:
    v = d.get(key)
    return "" if v is None else fmt.format(v)


def markdown(rows: list[dict], totals: dict, command: str) -> str:
    lines = ["# Coverage: third-party models pruned at 50% of channels", "",
             f"Generated by `{command}` (random init, task head ignored; prunekit and Torch-Pruning 1.6.1 "
             "in the same run, same ratio, same MACs counter). `really` = MACs after/before <= 0.6, output "
             "shape kept, finite. `apply/masks` = relative difference between removing and zeroing the "
             "channels (`~` marks plans that prune channels a LayerNorm-style op normalises over, where the "
             "two differ by design). Torch-Pruning runs with its defaults (`MagnitudePruner`, L1, no `num_heads` "
             "map, so attention models often fail in its reshapes); a model whose tool exceeded the time limit is "
             "`skipped`. Seconds are wall time; unless the run was alone on the machine they were measured under load and are not results (the published sample ran beside other jobs).", ""]
    for lib, t in totals.items():
        lines.append(f"**{lib}**: {t['built']} built ({t['not_built']} did not build within the limits); "
                     f"prunekit really prunes {t['prunekit_really_pruned']}/{t['built']} "
                     f"(frozen everything: {t['prunekit_frozen_everything']}, errors: {t['prunekit_errors']}; "
                     f"apply = apply_masks within 1e-4 on {t['prunekit_exact_apply_vs_masks']}/"
                     f"{t['prunekit_exact_candidates']} without norm coupling); Torch-Pruning 1.6.1 really prunes "
                     f"{t['tp_really_pruned']}/{t['built']} (errors: {t['tp_errors']})"
                     + (f"; pruned by Torch-Pruning only: {', '.join(t['tp_pruned_but_not_prunekit'])}"
                        if t["tp_pruned_but_not_prunekit"] else "") + ".")
        lines.append("")
    lines += ["| model | family | input | prunekit | MACs after/before | really | apply/masks | frozen regions | s "
              "| Torch-Pruning | MACs after/before | really | s | reason (prunekit) |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("build") != "ok":
            lines.append(f"| {r['model']} | {r.get('family', '')} | | not built | | | | | | | | | | "
                         f"{r.get('reason', '')[:160]} |")
            continue
        p, t = r["prunekit"], r.get("torch_pruning", {})
        avm = p.get("apply_vs_masks")
        avm_s = "" if avm is None else (("~" if p.get("norm_coupled") else "") + f"{avm:.1e}")
        inp = "x".join(str(s) for s in r["input"][0][1:])
        reason = (p.get("reason") or (p.get("frozen") or [""])[0]).replace("|", "/")[:200]
        lines.append(" | ".join([
            f"| {r['model']}", r.get("family", r.get("library", "")), inp, p.get("status", ""),
            _cell(p, "macs_ratio", "{:.2f}"), "yes" if p.get("really_pruned") else "no", avm_s,
            str(p.get("n_frozen", "")), _cell(p, "seconds", "{:.1f}"), t.get("status", ""),
            _cell(t, "macs_ratio", "{:.2f}"), ("yes" if t.get("really_pruned") else "no") if t else "",
            _cell(t, "seconds", "{:.1f}"), reason]) + " |")
    return "\n".join(lines) + "\n"


def summary_page(totals: dict, command: str, table: str) -> str:
    """The totals, for BENCHMARKS.md (the per-model table stays in ``table``)."""
    lines = ["# Coverage of third-party models (`bench/coverage.py`)", "",
             f"`{command}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, random init, 50% of channels, "
             "task head ignored, prunekit and Torch-Pruning 1.6.1 (its defaults: `MagnitudePruner`, L1) in the same run "
             "on the same list. "
             f"Per-model rows with the reason for every model not pruned: [{Path(table).name}](../{Path(table).name}).",
             "", "| library | built | prunekit really prunes | frozen everything | errors | apply = masks (no norm "
             "coupling) | Torch-Pruning really prunes | TP errors |", "|---|---|---|---|---|---|---|---|"]
    for lib, t in totals.items():
        lines.append(f"| {lib} | {t['built']} | {t['prunekit_really_pruned']} | {t['prunekit_frozen_everything']} | "
                     f"{t['prunekit_errors']} | {t['prunekit_exact_apply_vs_masks']}/{t['prunekit_exact_candidates']} | "
                     f"{t['tp_really_pruned']} | {t['tp_errors']} |")
    lines += ["", "\"Really prunes\": MACs after/before <= 0.6, output shape kept, finite output."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sel = ap.add_mutually_exclusive_group()
    sel.add_argument("--sample", type=int, default=30, help="one architecture per family, this many families")
    sel.add_argument("--all", action="store_true", help="every timm architecture")
    sel.add_argument("--models", help="comma-separated architecture names (timm names or hf_*)")
    ap.add_argument("--hf", action="store_true", help="only the HF transformers models")
    ap.add_argument("--no-hf", action="store_true", help="skip the HF transformers models")
    ap.add_argument("--no-tp", action="store_true", help="skip Torch-Pruning")
    ap.add_argument("--timeout", type=float, default=180, help="seconds per model (build + both tools)")
    ap.add_argument("--mem-gb", type=float, default=8, help="address-space limit per model process (0: none)")
    ap.add_argument("--out", default="docs/coverage.md")
    ap.add_argument("--json", default="docs/coverage.json")
    ap.add_argument("--summary", default="docs/bench/coverage.md",
                    help="totals page collected into BENCHMARKS.md by scripts/build_reports.py ('' to skip)")
    args = ap.parse_args(argv)
    timm = import_timm()
    if args.models:
        names = args.models.split(",")
    elif args.hf:
        names = list(HF_MODELS)
    else:
        if timm is None:
            print("timm is not installed: pip install --no-deps timm huggingface_hub safetensors", file=sys.stderr)
            return 2
        names = timm.list_models() if args.all else timm_sample(timm, args.sample)
        if not args.no_hf:
            names += list(HF_MODELS)
    rows = []
    for k, name in enumerate(names):
        row = evaluate_isolated(name, not args.no_tp, args.timeout, args.mem_gb or None)
        rows.append(row)
        p, t = row.get("prunekit", {}), row.get("torch_pruning", {})
        print(f"[{k + 1}/{len(names)}] {name}: {row.get('build')} prunekit={p.get('status')} "
              f"{p.get('macs_ratio')} tp={t.get('status')} {t.get('macs_ratio')} {row.get('reason') or p.get('reason') or ''}"[:300],
              flush=True)
    totals = summarize(rows)
    command = "python bench/coverage.py " + " ".join(argv if argv is not None else sys.argv[1:])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(markdown(rows, totals, command.strip()))
    Path(args.json).write_text(json.dumps({"ratio": RATIO, "totals": totals, "rows": rows}, indent=1, default=str))
    if args.summary:
        Path(args.summary).write_text(summary_page(totals, command.strip(), args.out))
    print(json.dumps(totals, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
