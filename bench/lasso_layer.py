"""Benchmark of Channel Pruning (He et al., ICCV 2017): one layer, and a whole CIFAR-sized VGG-16.

Part 1, one layer with 256 input channels (3x3 kernels, 256 outputs) and 10,000 sampled
points: the Gram statistics, the LASSO selection (coordinate descent over an alpha grid, bisected to
c' = 128 channels) and the least-squares step (``torch.linalg.lstsq``), side by side
with scikit-learn's ``lasso_path`` on the *same* LASSO problem. scikit-learn needs the
design matrix explicitly; the true one has N*n = 2,560,000 rows (5 GB in float64), so
it is given the exactly equivalent c x c problem ``Z' = L^T``, ``y' = L^-1 b`` with
``G = L L^T`` (same minimiser for alpha' = alpha * N n / c), over the same alphas.

Part 2: ``channel_pruning`` of a whole VGG-16 (3x32x32 input, random weights: timing
only) to 50% of its MACs with ``calib_images`` images and 10,000 points per layer.

Run: ``.venv/bin/python bench/lasso_layer.py [--threads 2] [--skip-vgg]``; prints Markdown.
"""
from __future__ import annotations

import argparse
import math
import platform
import statistics
import time


def _time(fn, repeats):
    ts, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts), out


def layer_bench(repeats: int):
    import numpy as np
    import torch
    from sklearn.linear_model import lasso_path

    from prunekit.methods.structured import lasso_math as lm

    g = torch.Generator().manual_seed(0)
    N, c, n, keep = 10000, 256, 256, 128
    X = torch.randn(N, c, 9, generator=g)
    W = torch.randn(n, c, 9, generator=g) * (torch.rand(1, c, 1, generator=g) ** 2)
    Y = X.flatten(1) @ W.flatten(1).T
    S = float(Y.numel())
    t_gram, (G, b, _) = _time(lambda: lm.gram_stats(X, W, Y), repeats)
    t_sel, (kept, _) = _time(lambda: lm.lasso_select(G, b, keep, scale=S), repeats)
    idx = torch.as_tensor(kept)
    t_ls, Wk = _time(lambda: lm.least_squares(X[:, idx], Y), repeats)
    err = lm.relative_error(X[:, idx], Wk, Y)
    # the same alphas as one bisection round, through scikit-learn
    a_max = float((b / S).abs().max())
    alphas = np.logspace(math.log10(a_max), math.log10(a_max * 1e-6), 24)
    L = np.linalg.cholesky(G.numpy() + 1e-12 * np.eye(c))
    Zp, yp = L.T, np.linalg.solve(L, b.numpy())
    t_sk, (al, coefs, _) = _time(lambda: lasso_path(Zp, yp, alphas=alphas * S / c, max_iter=10000, tol=1e-6),
                                 repeats)
    t_ours_grid, B = _time(lambda: lm.lasso_fista(G, b, torch.as_tensor(alphas.copy()), iters=300, scale=S), repeats)
    nnz_sk = (np.abs(coefs) > 0).sum(0)
    nnz_ours = (B != 0).sum(0).numpy()
    agree = float(np.mean(nnz_sk == nnz_ours))
    return {"gram_s": t_gram, "select_s": t_sel, "lstsq_s": t_ls, "rel_error": err, "sk_path_s": t_sk,
            "ours_grid_s": t_ours_grid, "support_size_agreement": agree}


def vgg_bench(calib_images: int):
    import torch

    from prunekit import models
    from prunekit.methods.structured import ChannelPruningConfig, channel_pruning

    class Splits:  # the only fields channel_pruning reads
        def __init__(self, x):
            self.train_x = x
            self.train_y = torch.zeros(len(x), dtype=torch.long)

    torch.manual_seed(0)
    net = models.create("vgg16", num_classes=10, in_channels=3, input_size=(32, 32)).eval()
    data = Splits(torch.randn(calib_images, 3, 32, 32))
    cfg = ChannelPruningConfig(macs=0.5, calib_images=calib_images, points_per_image=10000 // calib_images,
                               max_points=10000, finetune={"epochs": 0})
    t = time.perf_counter()
    res = channel_pruning(net, data, cfg, progress=False)
    total = time.perf_counter() - t
    return {"total_s": total, "layers": len(res.layers),
            "macs_kept": res.plan.info["macs_after"] / res.plan.info["macs_before"]}


def main(argv=None):
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--calib-images", type=int, default=500)
    p.add_argument("--skip-vgg", action="store_true")
    p.add_argument("--skip-layer", action="store_true")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{a.threads} threads, medians of {a.repeats}; shared machine, noisy\n")
    if not a.skip_layer:
        _print_layer(layer_bench(a.repeats))
    if not a.skip_vgg:
        v = vgg_bench(a.calib_images)
        print(f"### Whole VGG-16 (3x32x32), LASSO to 50% MACs, {a.calib_images} images, 10,000 points/layer\n")
        print(f"| layers | MACs kept | total seconds | goal |\n|---:|---:|---:|---:|")
        print(f"| {v['layers']} | {v['macs_kept']:.3f} | {v['total_s']:.1f} | < 300 |")


def _print_layer(r):
    print("### LASSO channel selection, one layer (c=256, 3x3, n=256, N=10,000 points, keep 128)\n")
    print("| step | seconds |\n|---|---:|")
    print(f"| Gram statistics G, b (no explicit Z) | {r['gram_s']:.2f} |")
    print(f"| LASSO selection (CD grid x bisection, default) | {r['select_s']:.2f} |")
    print(f"| least squares W' (torch.linalg.lstsq on the normal equations) | {r['lstsq_s']:.2f} |")
    print(f"| one 24-alpha grid, ours (batched FISTA, 300 it.) | {r['ours_grid_s']:.3f} |")
    print(f"| the same 24 alphas, scikit-learn lasso_path (equivalent c x c problem) | {r['sk_path_s']:.3f} |")
    print(f"\nrelative reconstruction error after lstsq: {r['rel_error']:.4f}; support sizes equal to "
          f"scikit-learn's at {100 * r['support_size_agreement']:.0f}% of the alphas\n")


if __name__ == "__main__":
    main()
