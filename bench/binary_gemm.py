"""Packed binary GEMM / XNOR convolution vs float32 torch at the same shapes (prints Markdown).

Shapes (issue 7): a 4096x4096x4096 GEMM and a 3x3 convolution with 256 input and output
channels on a 14x14 map (the layer XNOR-Net's speed-up analysis uses). Every kernel of
``prunekit.binary.gemm`` that runs on this machine is timed beside ``torch`` float32,
interleaved repetition by repetition (so background load hits both alike), at 2 and 1
threads; figures are medians.

What is timed:

* GEMM ``float32``: ``a @ b`` with ``torch`` (MKL/oneDNN).
* GEMM ``packed``: :func:`prunekit.binary.binary_gemm` on pre-packed operands (weights
  are packed once at load time), and, separately, the same plus packing the signs of the
  float32 left operand (what a layer pays per call for its activations).
* conv ``float32``: ``F.conv2d``; conv ``packed``: the full integer XNOR convolution from a
  float32 input (sign packing, im2col of packed words, binary GEMM, padding correction),
  and the complete :class:`~prunekit.binary.packed.PackedBinaryConv2d` layer (plus the
  ``K`` map and scaling) against the float ``BinaryConv2d`` that emulates it.

Run: ``.venv/bin/python bench/binary_gemm.py [--reps 5] [--threads 2 1] [--skip-numpy]``.
"""
from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import time


def cpu_info() -> dict:
    """CPU model and the popcount-related flags from /proc/cpuinfo (Linux)."""
    info = {"model": platform.processor() or platform.machine(), "flags": []}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and info["model"] in ("", platform.machine()):
                    info["model"] = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    info["flags"] = [fl for fl in ("popcnt", "avx2", "avx512f", "avx512_vpopcntdq") if fl in flags]
                    break
    except OSError:
        pass
    return info


def timed(fn, reps: int) -> list[float]:
    """Wall-clock seconds of ``reps`` calls after one warm-up call."""
    fn()
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def interleaved(fns: dict, reps: int) -> dict:
    """Median seconds of each function, the repetitions of all functions interleaved."""
    for fn in fns.values():
        fn()  # warm-up
    times: dict = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_gemm(n: int, threads: int, reps: int, kernels: list[str], skip_numpy: bool) -> list[tuple]:
    import numpy as np
    import torch

    from prunekit.binary import binary_gemm
    from prunekit.binary.packing import pack_signs

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    bt = b.t().contiguous()  # rows of B^T are the columns the dot products run over
    pa, pb = pack_signs(a), pack_signs(bt)
    out = np.empty((n, n), np.int32)
    fns = {"float32": lambda: torch.mm(a, b)}
    for k in kernels:
        if k == "numpy":
            continue
        fns[k] = (lambda k=k: binary_gemm(pa, pb, n, kernel=k, threads=threads, out=out))
    best = kernels[0]
    fns[f"{best} + pack A"] = lambda: binary_gemm(pack_signs(a), pb, n, kernel=best, threads=threads, out=out)
    med = interleaved(fns, reps)
    if "numpy" in kernels and not skip_numpy:
        med["numpy"] = statistics.median(timed(lambda: binary_gemm(pa, pb, n, kernel="numpy", out=out),
                                               max(1, reps // 3)))
    # exactness at this size, once
    ref = (torch.sign(a[:64]).add(a[:64] == 0) @ torch.sign(b).add(b == 0)).to(torch.int32).numpy()
    assert np.array_equal(binary_gemm(pa[:64], pb, n, kernel=best), ref), "packed GEMM != float reference"
    flops = 2 * n ** 3
    rows = []
    for k, s in med.items():
        rows.append((f"GEMM {n}x{n}x{n}", threads, k, s * 1e3, flops / s / 1e9, med["float32"] / s))
    return rows


def bench_conv(threads: int, reps: int, kernels: list[str], batch: int) -> list[tuple]:
    import torch
    import torch.nn.functional as F

    from prunekit.binary import BinaryConv2d
    from prunekit.binary.packed import PackedBinaryConv2d
    from prunekit.binary import packed_ops

    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 256, 14, 14, generator=g)
    layer = BinaryConv2d(256, 256, 3, padding=1, bias=False, mode="xnor", input_norm=False).eval()
    w = layer.weight.detach()
    taps = packed_ops.pack_conv_weight_taps(w)
    corr = packed_ops.padding_correction(w, (14, 14), (1, 1), (1, 1), (1, 1))
    packed = PackedBinaryConv2d.from_binary(layer).eval()
    fns = {"float32 conv2d": lambda: F.conv2d(x, w, padding=1)}
    for k in kernels:
        if k == "numpy" and batch > 1:
            continue
        fns[f"{k} xnor int conv"] = (lambda k=k: packed_ops.xnor_conv2d_int(
            x, taps, w, (1, 1), (1, 1), (1, 1), correction=corr, kernel=k, threads=threads))
    packed.kernel, packed.threads = kernels[0], threads
    with torch.no_grad():
        fns["float BinaryConv2d layer (emulation)"] = lambda: layer(x)
        fns[f"{kernels[0]} PackedBinaryConv2d layer"] = lambda: packed(x)
        med = interleaved(fns, reps)
        assert torch.equal(packed(x), layer(x)), "packed layer != float reference"
    macs = batch * 256 * 256 * 9 * 14 * 14
    base = med["float32 conv2d"]
    return [(f"conv 3x3 256->256 14x14 batch {batch}", threads, k, s * 1e3, 2 * macs / s / 1e9, base / s)
            for k, s in med.items()]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    p.add_argument("--n", type=int, default=4096, help="GEMM size")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 16], help="conv batch sizes")
    p.add_argument("--skip-numpy", action="store_true", help="skip the slow NumPy GEMM")
    args = p.parse_args(argv)

    import numpy as np
    import torch

    from prunekit.binary import available_kernels

    import os

    kernels = available_kernels()
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    rows = []
    for t in args.threads:
        torch.set_num_threads(t)
        rows += bench_gemm(args.n, t, args.reps, kernels, args.skip_numpy)
        for bsz in args.batch:
            rows += bench_conv(t, args.reps, kernels, bsz)
    load_after = os.getloadavg() if hasattr(os, "getloadavg") else None
    cpu = cpu_info()
    print(f"## Packed binary GEMM / XNOR convolution vs float32 ({datetime.date.today().isoformat()})\n")
    print(f"- CPU: {cpu['model']}; flags: {', '.join(cpu['flags']) or '?'}; "
          f"torch {torch.__version__}, numpy {np.__version__}; kernels here: {', '.join(kernels)}")
    cmd = " ".join([".venv/bin/python bench/binary_gemm.py", *(argv if argv is not None else sys.argv[1:])])
    print(f"- command: `{cmd}`")
    if load_before is not None:
        print(f"- {os.cpu_count()} CPUs; 1-minute load average {load_before[0]:.1f} before, {load_after[0]:.1f} after "
              "(other users' processes: figures move with it)")
    print(f"- medians of {args.reps} interleaved repetitions after a warm-up; "
          "'GFLOP/s-equiv.' counts 2 ops per (binary or float) multiply-accumulate\n")
    print("| shape | threads | implementation | median ms | GFLOP/s-equiv. | speed-up vs float32 |")
    print("|---|---:|---|---:|---:|---:|")
    for shape, t, k, ms, gf, ratio in rows:
        print(f"| {shape} | {t} | {k} | {ms:.2f} | {gf:.0f} | {ratio:.2f}x |")
    c, nw = 256, 9
    print(f"\nXNOR-Net's theoretical figure for this conv (c={c}, N_W={nw}): 64cN_W/(cN_W+64) = "
          f"{64 * c * nw / (c * nw + 64):.2f}x (their paper: '58x faster convolutional operations', counted "
          "in high-precision operations, not measured).")


if __name__ == "__main__":
    main()
