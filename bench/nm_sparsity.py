"""Is 2:4 (N:M) sparsity faster on this CPU? Dense vs 2:4-masked Linear and Conv2d, eager PyTorch.

N:M sparsity (Zhou et al., ICLR 2021; NVIDIA Ampere's 2:4) is fast only where a kernel
skips the pruned half: the sparse tensor cores of Ampere and later GPUs, reached from
PyTorch through ``torch.sparse.to_sparse_semi_structured`` (CUDA only). On a CPU a
2:4-masked weight is an ordinary dense tensor with zeros, so the same dense GEMM runs.
This script times, interleaved (``time_models`` of bench/latency_common.py, ratios
with bootstrap intervals):

* ``dense``: the layer with its trained (random) weights;
* ``2:4 masked``: the same layer with a 2:4 mask applied (:func:`prunekit.sparse.nm_mask`);
* ``2:4 as CSR`` (Linear only): :class:`prunekit.sparse.SparseLinear` on the masked weight;
* ``semi-structured``: ``to_sparse_semi_structured`` when it works here (it raises on CPU;
  the page then states the error).

Run (about a minute on an idle machine; do not run it on a loaded one)::

    .venv/bin/python bench/nm_sparsity.py [--threads 1] [--rounds 60] [--quick]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from latency_common import machine_line, publish, time_models  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "bench" / "nm_sparsity.md"


def masked(layer):
    """A copy of ``layer`` with a 2:4 mask applied to its weight."""
    import copy

    import torch

    from prunekit.sparse import nm_mask

    m = copy.deepcopy(layer)
    with torch.no_grad():
        m.weight.mul_(nm_mask(m.weight, 2, 4))
    return m


def semi_structured(layer):
    """``layer`` with a semi-structured (2:4) weight, or the error message when this build cannot."""
    import copy

    import torch

    try:
        from torch.sparse import to_sparse_semi_structured

        m = copy.deepcopy(masked(layer))
        m.weight = torch.nn.Parameter(to_sparse_semi_structured(m.weight.detach()))
        return m, None
    except Exception as e:   # CUDA-only in torch: RuntimeError/ValueError on CPU
        return None, f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"


def main(argv=None) -> int:
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=60)
    p.add_argument("--quick", action="store_true", help="few rounds, print only (nothing written)")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    rounds = 5 if args.quick else args.rounds
    torch.manual_seed(0)
    from prunekit.sparse import SparseLinear

    cases = {
        "Linear 1024 -> 1024, batch 64": (torch.nn.Linear(1024, 1024), torch.randn(64, 1024)),
        "Conv2d 64 -> 64, 3x3, 32x32, batch 8": (torch.nn.Conv2d(64, 64, 3, padding=1), torch.randn(8, 64, 32, 32)),
    }
    lines = ["# N:M (2:4) sparsity on CPU", "",
             "`bench/nm_sparsity.py`: dense vs 2:4-masked layers in eager PyTorch, timed interleaved; ratio = "
             "time / dense time (95% bootstrap interval). " + machine_line(args.threads), "",
             "| layer | variant | median ms | ratio to dense |", "|---|---|---:|---|"]
    errors = set()
    verdicts = []
    for label, (layer, x) in cases.items():
        named = {"dense": layer, "2:4 masked (dense kernel)": masked(layer)}
        if isinstance(layer, torch.nn.Linear):
            named["2:4 as CSR (SparseLinear)"] = SparseLinear.from_linear(masked(layer))
        semi, err = semi_structured(layer)
        if semi is not None:
            named["semi-structured (to_sparse_semi_structured)"] = semi
        else:
            errors.add(err)
        res = time_models(named, x, args.threads, rounds)
        r = res["2:4 masked (dense kernel)"]
        verdicts.append(f"{label}: 2:4-masked / dense = {r['ratio']:.2f} [{r['low']:.2f}, {r['high']:.2f}], "
                        + ("faster" if r["high"] < 1 else "not faster"))
        for name, r in res.items():
            lines.append(f"| {label} | {name} | {r['ms']:.3f} | {r['ratio']:.2f} [{r['low']:.2f}, {r['high']:.2f}] |")
    lines += ["", "`torch.sparse.to_sparse_semi_structured` on this machine: "
              + ("; ".join(sorted(errors)) if errors else "available (timed above)") + ".", "",
              "Measured: " + "; ".join(verdicts) + ".", "",
              "Why: a 2:4 mask halves the non-zero weights but not the work of a dense CPU kernel, which "
              "multiplies the zeros too. 2:4 pays off on GPUs with sparse tensor cores (NVIDIA Ampere and "
              "later), which `to_sparse_semi_structured` reaches on CUDA only. Kernel-level sparsity removes whole k x k "
              "kernels, which again only a sparse convolution kernel exploits; see docs/sparse.md."]
    publish("\n".join(lines) + "\n", args.out, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
