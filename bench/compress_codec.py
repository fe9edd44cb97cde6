#!/usr/bin/env python
"""Benchmark of the .pkz codec: encode/decode throughput and coded size against the entropy bound.

Two models from the zoo, on one thread:

* ``vgg_1m``: vgg11 with channels [32, M, 64, M, 128, 128, M, 256, 256, M] (1.1M parameters, MNIST input);
* ``resnet50``: the zoo's resnet50 (25.6M parameters).

Their weights are replaced by seeded Laplace samples with each tensor's own scale
(a common model of trained weights; freshly initialised uniform weights would
make every cluster index equally likely and flatter the coders), then compressed
as Deep Compression does: 90% magnitude pruning per layer, 8-bit conv / 5-bit fc
codebooks, relative positions, entropy coding. A dense variant (no pruning) is
timed as well. Timings are medians of repeated runs measured side by side in one
process; "decode to module" is ``prunekit.compress.loads(bytes)``: verify the
checksum, decode every stream, rebuild the architecture and load the weights.

If the ``constriction`` package is installed, its rANS coder is timed on the
largest stream for comparison with prunekit's NumPy rANS (it is not a prunekit
dependency).

Usage::

    .venv/bin/python bench/compress_codec.py            # prints a Markdown block
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import torch

VGG_CFG = [32, "M", 64, "M", 128, 128, "M", 256, 256, "M"]


def _median_time(fn, repeat):
    times = []
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _laplace_weights(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                scale = p.std().item() / np.sqrt(2)
                u = torch.rand(p.shape, generator=g) - 0.5
                p.copy_(-scale * torch.sign(u) * torch.log1p(-2 * u.abs()))
    return model


def _build(name):
    from prunekit import models

    if name == "vgg_1m":
        return models.create("vgg11", in_channels=1, input_size=(28, 28), cfg=VGG_CFG)
    return models.create("resnet50", num_classes=1000, input_size=(224, 224))


def bench_model(name, sparsity, repeat):
    from prunekit import compress
    from prunekit.compress import codec, fileformat
    from prunekit.compress.pipeline import prune_masks

    net = _laplace_weights(_build(name), 0)
    n_params = sum(p.numel() for p in net.parameters())
    cfg = compress.CompressConfig(prune_sparsity=sparsity) if sparsity else compress.CompressConfig()
    t0 = time.perf_counter()
    masks = prune_masks(net, cfg) if sparsity else None
    if masks:
        from prunekit import sparse

        sparse.apply_masks(net, masks)
    shared = compress.share_weights(net, masks, cfg)
    compress.apply_shared(net, shared)
    share_s = time.perf_counter() - t0
    row = {"model": name, "params": n_params, "pruned": sparsity or 0.0, "share_s": share_s}
    for coder in ("huffman", "rans"):
        enc_s, (data, report) = _median_time(lambda: compress.encode_model(net, shared, coder=coder),
                                             max(1, repeat // 2))
        dec_s, _ = _median_time(lambda: compress.loads(data), repeat)
        header, payload = fileformat.unpack(data)
        streams_s, _ = _median_time(lambda: codec.decode_tensors(header["tensors"], payload), repeat)
        e = report.entropy_overhead()
        row[coder] = {"bytes": len(data), "encode_s": enc_s, "decode_module_s": dec_s, "decode_tensors_s": streams_s,
                      "coded_bits": e["coded_bits"], "entropy_bits": e["entropy_bits"],
                      "overhead_pct": e["overhead_pct"], "ratio": report.ratios()["file"]}
    # the outputs of the loaded model equal the compressed one
    x = torch.randn(1, *net.prunekit_spec.input_shape)
    row["exact"] = bool(torch.equal(compress.loads(data)(x), net.eval()(x)))
    row["largest_stream"] = max(((st.name, int(st.mask.sum())) for st in shared.values()), key=lambda t: t[1])
    row["_shared"] = shared
    return row


def bench_constriction(shared, repeat):
    """prunekit's rANS vs constriction's on the cluster indices of the largest layer."""
    try:
        import constriction
    except ImportError:
        return None
    from prunekit.compress import rans
    from prunekit.compress.relindex import decode_positions, encode_positions

    st = max(shared.values(), key=lambda s: int(s.mask.sum()))
    mask = st.mask.reshape(-1).numpy()
    if st.layout == "sparse":
        gaps, _ = encode_positions(mask, st.index_bits)
        sym = st.assignments.reshape(-1).numpy()[decode_positions(gaps)]
    else:
        sym = st.assignments.reshape(-1).numpy()
    k = len(st.codebook)
    counts = np.bincount(sym, minlength=k)
    probs = counts / counts.sum()
    ours_enc, blob = _median_time(lambda: rans.encode(sym, k), repeat)
    ours_dec, out = _median_time(lambda: rans.decode(blob), repeat)
    assert np.array_equal(out, sym)
    model = constriction.stream.model.Categorical(probs, perfect=False)

    def c_enc():
        coder = constriction.stream.stack.AnsCoder()
        coder.encode_reverse(sym.astype(np.int32), model)
        return coder.get_compressed()

    c_enc_s, comp = _median_time(c_enc, repeat)
    c_dec_s, out2 = _median_time(lambda: constriction.stream.stack.AnsCoder(comp).decode(model, len(sym)), repeat)
    assert np.array_equal(out2, sym)
    from prunekit.compress.codec import entropy_bits

    return {"layer": st.name, "symbols": len(sym), "entropy_bytes": entropy_bits(counts) / 8,
            "ours": (len(blob), ours_enc, ours_dec), "constriction": (len(comp) * 4, c_enc_s, c_dec_s)}


def skewed_streams():
    """Coded size over entropy on synthetic 32-symbol streams where one symbol has probability p0."""
    from prunekit.compress import huffman, rans
    from prunekit.compress.codec import entropy_bits

    rng = np.random.default_rng(0)
    rows = []
    for p0 in (0.1, 0.5, 0.8, 0.95):
        p = np.full(32, (1 - p0) / 31)
        p[0] = p0
        s = rng.choice(32, size=200_000, p=p)
        bound = entropy_bits(np.bincount(s, minlength=32))
        rows.append((p0, bound / len(s), 8 * len(huffman.encode(s, 32)) / bound - 1,
                     8 * len(rans.encode(s, 32)) / bound - 1))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--models", nargs="+", default=["vgg_1m", "resnet50"])
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for name in args.models:
        for sp in (0.9, None):
            rows.append(bench_model(name, sp, args.repeat if name == "vgg_1m" else max(1, args.repeat // 2)))
    crow = bench_constriction(rows[0]["_shared"], args.repeat)
    print(f"Machine: {platform.processor() or platform.machine()}, {platform.python_version()}, torch "
          f"{torch.__version__}, numpy {np.__version__}, 1 thread; shared 2-core machine (noisy). "
          f"{time.strftime('%Y-%m-%d')}.\n")
    print("| model | params | pruned | coder | .pkz bytes | ratio | encode s | enc Mparam/s | decode to module s "
          "| dec Mparam/s | decode streams s | coded / entropy |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        for coder in ("huffman", "rans"):
            c = r[coder]
            mp = r["params"] / 1e6
            print(f"| {r['model']} | {mp:.2f}M | {100 * r['pruned']:.0f}% | {coder} | {c['bytes']:,} | {c['ratio']:.1f}x "
                  f"| {c['encode_s']:.3f} | {mp / c['encode_s']:.1f} | {c['decode_module_s']:.3f} "
                  f"| {mp / c['decode_module_s']:.1f} | {c['decode_tensors_s']:.3f} | {c['overhead_pct']:+.2f}% |")
    print()
    print("Weight sharing (k-means, not part of encode above): " + ", ".join(
        f"{r['model']} {100 * r['pruned']:.0f}% pruned {r['share_s']:.2f} s" for r in rows))
    print("Loaded model outputs equal the compressed model's: " + ", ".join(f"{r['model']}={r['exact']}" for r in rows))
    print("\nCoded size over the entropy bound on synthetic 200,000-symbol streams of 32 symbols, one of "
          "probability p0 (sizes only, deterministic):\n")
    print("| p0 | entropy bits/symbol | Huffman | rANS |\n|---:|---:|---:|---:|")
    for p0, h, hu, ra in skewed_streams():
        print(f"| {p0} | {h:.3f} | {100 * hu:+.2f}% | {100 * ra:+.2f}% |")
    if crow:
        o, c = crow["ours"], crow["constriction"]
        print(f"\nrANS on the cluster indices of {crow['layer']} ({crow['symbols']:,} symbols, entropy "
              f"{crow['entropy_bytes']:,.0f} bytes):\n")
        print("| coder | bytes | encode s | decode s |\n|---|---:|---:|---:|")
        print(f"| prunekit rANS (NumPy) | {o[0]:,} | {o[1]:.4f} | {o[2]:.4f} |")
        print(f"| constriction AnsCoder (Rust) | {c[0]:,} | {c[1]:.4f} | {c[2]:.4f} |")
    else:
        print("\n(constriction not installed: rANS comparison skipped)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
