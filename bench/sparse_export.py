"""Sparse export sizes and sparse-vs-dense CPU inference (prints a Markdown block).

Part 1, file sizes (issue 5: "a 95%-sparse LeNet-300-100 saved as sparse tensors is at
most 1/8 of the dense file"). LeNet-300-100 and LeNet-5 are magnitude-pruned per layer
(:func:`prunekit.sparse.magnitude_masks`) at several sparsities, then written

* dense with zeros (:func:`prunekit.checkpoint.save`), and
* as sparse tensors (:func:`prunekit.sparse.save_sparse`, COO and CSR layouts),

and the bytes on disk are compared. Weights are those of a freshly initialised network:
the sizes do not depend on the values.

Part 2, inference (honest comparison): the pruned LeNet-300-100 (all Linear layers)
runs dense (``nn.Linear``, zeros included, MKL GEMM) and with
:func:`prunekit.sparse.to_sparse_inference` (``torch.sparse`` CSR ``addmm``), at batch
1, 64 and 1000, 1 thread, interleaved repetitions, medians.

Run: ``.venv/bin/python bench/sparse_export.py [--reps 200] [--threads 1]``.
"""
from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import tempfile
import time
from pathlib import Path


def file_sizes(name: str, sparsities, tmp: Path) -> list[dict]:
    import torch

    from prunekit import checkpoint, models
    from prunekit.sparse import apply_masks, magnitude_masks, save_sparse

    rows = []
    for s in sparsities:
        torch.manual_seed(0)
        net = models.create(name, in_channels=1)
        masks = magnitude_masks(net, s)
        apply_masks(net, masks)
        dense = checkpoint.save(tmp / f"{name}_{s}_dense.pt", net).stat().st_size
        coo = save_sparse(tmp / f"{name}_{s}_coo.pt", net, masks, layout="coo").stat().st_size
        csr = save_sparse(tmp / f"{name}_{s}_csr.pt", net, masks, layout="csr").stat().st_size
        rows.append({"model": name, "sparsity": s, "dense": dense, "coo": coo, "csr": csr})
    return rows


def inference(sparsities, batches, reps: int) -> list[dict]:
    import torch

    from prunekit import models
    from prunekit.sparse import apply_masks, magnitude_masks, to_sparse_inference

    rows = []
    for s in sparsities:
        torch.manual_seed(0)
        net = models.create("lenet300_100", in_channels=1).eval()
        masks = magnitude_masks(net, s)
        apply_masks(net, masks)
        fast = to_sparse_inference(net, masks, min_sparsity=0.0)
        for b in batches:
            x = torch.randn(b, 1, 28, 28)
            with torch.inference_mode():
                ref = net(x)
                err = float((fast(x) - ref).abs().max())
                fns = {"dense": lambda: net(x), "sparse": lambda: fast(x)}
                for fn in fns.values():
                    for _ in range(5):
                        fn()
                times = {k: [] for k in fns}
                for _ in range(reps):
                    for k, fn in fns.items():
                        t = time.perf_counter()
                        fn()
                        times[k].append(time.perf_counter() - t)
            med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
            rows.append({"sparsity": s, "batch": b, **med, "max_abs_diff": err})
    return rows


def main(argv=None) -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=200, help="timed repetitions per case (default 200)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as d:
        sizes = (file_sizes("lenet300_100", (0.5, 0.8, 0.9, 0.95, 0.98, 0.99), Path(d))
                 + file_sizes("lenet5", (0.9, 0.95, 0.99), Path(d)))
    inf = inference((0.5, 0.9, 0.95, 0.99), (1, 64, 1000), args.reps)
    print(f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} thread(s), {datetime.date.today()}; shared and noisy machine.")
    print()
    print("File sizes (bytes on disk; ratio = sparse / dense):")
    print()
    print("| model | sparsity | dense file | COO file | COO ratio | CSR file | CSR ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in sizes:
        print(f"| {r['model']} | {100 * r['sparsity']:.0f}% | {r['dense']:,} | {r['coo']:,} | "
              f"1/{r['dense'] / r['coo']:.1f} | {r['csr']:,} | 1/{r['dense'] / r['csr']:.1f} |")
    print()
    print("Inference, LeNet-300-100, dense nn.Linear vs torch.sparse CSR (median ms per forward):")
    print()
    print("| sparsity | batch | dense (ms) | sparse CSR (ms) | sparse / dense | max abs diff |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in inf:
        print(f"| {100 * r['sparsity']:.0f}% | {r['batch']} | {r['dense']:.4f} | {r['sparse']:.4f} | "
              f"{r['sparse'] / r['dense']:.2f} | {r['max_abs_diff']:.1e} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
