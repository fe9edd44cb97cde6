"""Compression reports in the shape of Deep Compression's tables (Han et al., ICLR 2016, tables 2-5).

Per layer: weights, kept fraction, bits per cluster index and per relative
position at fixed width (pruning + quantization, "P+Q") and after entropy coding
("P+Q+H"), the Shannon entropy of the same symbols (the bound any coder of them
is measured against), and the compression rate. In total: the size after each
stage, as stored:

* ``original``: every tensor of the state dict in its own dtype (float32 weights);
* ``pruned``: kept weights as float32 plus a relative position each (sparse
  layers), dense layers as float32;
* ``quantized``: fixed-width cluster indices and positions plus codebooks;
* ``coded``: the entropy-coded streams (with their tables) plus codebooks;
* ``file``: the actual ``.pkz`` file (adds the header, the unquantized tensors
  are in every stage, and the checksum).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field


@dataclass
class LayerRow:
    """One shared weight tensor's figures (bits are totals for the tensor)."""

    name: str
    kind: str
    weights: int
    kept: int
    entries: int
    fillers: int
    layout: str
    bits: int
    index_bits: int
    codebook_bytes: int
    value_bytes: int
    gap_bytes: int
    value_entropy_bits: float
    gap_entropy_bits: float

    @property
    def pruned_bits(self) -> int:
        """Float32 kept weights with fixed-width relative positions (or dense float32)."""
        return self.entries * (32 + self.index_bits) if self.layout == "sparse" else self.weights * 32

    @property
    def quantized_bits(self) -> int:
        """Fixed-width indices (and positions) plus the codebook."""
        per = self.bits + (self.index_bits if self.layout == "sparse" else 0)
        return self.entries * per + 8 * self.codebook_bytes

    @property
    def coded_bits(self) -> int:
        """Entropy-coded streams (tables included) plus the codebook."""
        return 8 * (self.value_bytes + self.gap_bytes + self.codebook_bytes)

    def per_entry(self, bits: float) -> float:
        """``bits`` spread over the stored entries."""
        return bits / self.entries if self.entries else 0.0


@dataclass
class CompressionReport:
    """Sizes per layer and per stage of one compressed model; see the module docstring.

    ``accuracy`` optionally maps stage names (``"original"``, ``"pruned"``,
    ``"quantized"``, ``"finetuned"``) to top-1 accuracy in percent.
    """

    layers: list
    raw_bytes: int
    original_bytes: int
    file_bytes: int
    coder: str
    accuracy: dict = field(default_factory=dict)

    def stage_bytes(self) -> dict:
        """Size in bytes after each stage (unquantized tensors counted in every stage)."""
        def total(attr):
            return self.raw_bytes + sum(getattr(r, attr) for r in self.layers) / 8

        return {"original": float(self.original_bytes), "pruned": total("pruned_bits"),
                "quantized": total("quantized_bits"), "coded": total("coded_bits"),
                "file": float(self.file_bytes)}

    def ratios(self) -> dict:
        """Original size over the size after each stage."""
        return {k: (self.original_bytes / v if v else float("inf")) for k, v in self.stage_bytes().items()}

    def entropy_overhead(self) -> dict:
        """Coded bits of the index streams vs their Shannon entropy (tables and lane offsets included)."""
        coded = sum(8 * (r.value_bytes + r.gap_bytes) for r in self.layers)
        bound = sum(r.value_entropy_bits + r.gap_entropy_bits for r in self.layers)
        return {"coded_bits": coded, "entropy_bits": bound,
                "overhead_pct": 100.0 * (coded / bound - 1.0) if bound else 0.0}

    def to_dict(self) -> dict:
        """Plain data (JSON-able), including the derived stage sizes and ratios."""
        return {"coder": self.coder, "raw_bytes": self.raw_bytes, "original_bytes": self.original_bytes,
                "file_bytes": self.file_bytes, "stages": self.stage_bytes(), "ratios": self.ratios(),
                "entropy": self.entropy_overhead(), "accuracy": dict(self.accuracy),
                "layers": [asdict(r) for r in self.layers]}

    def to_json(self) -> str:
        """:meth:`to_dict` as indented JSON."""
        return json.dumps(self.to_dict(), indent=2)

    def layer_table(self) -> str:
        """The per-layer Markdown table (the paper's tables 2-5)."""
        coder = self.coder
        # "weight bits" = bits per cluster index, "position bits" = bits per relative index,
        # named as in the paper's tables (where the latter is called "index bits").
        lines = [f"| layer | kind | weights | kept | layout | weight bits P+Q | weight bits {coder} | weight entropy "
                 f"| position bits P+Q | position bits {coder} | position entropy | rate P+Q | rate P+Q+{coder} |",
                 "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        rows = list(self.layers)
        for r in rows:
            lines.append(_row(r.name, r.kind, r.weights, r.kept, r.layout, r))
        if rows:
            tot = LayerRow("total", "", sum(r.weights for r in rows), sum(r.kept for r in rows),
                           sum(r.entries for r in rows), sum(r.fillers for r in rows), "", 0, 0,
                           sum(r.codebook_bytes for r in rows), sum(r.value_bytes for r in rows),
                           sum(r.gap_bytes for r in rows), sum(r.value_entropy_bits for r in rows),
                           sum(r.gap_entropy_bits for r in rows))
            lines.append(_row("**total**", "", tot.weights, tot.kept, "", tot, rows=rows))
        return "\n".join(lines)

    def stage_table(self) -> str:
        """Size, ratio and (where known) accuracy after each stage, as Markdown."""
        sizes, ratios = self.stage_bytes(), self.ratios()
        names = {"original": "original (float32)", "pruned": "pruned (sparse float32 + positions)",
                 "quantized": "pruned + shared (fixed-width indices)",
                 "coded": f"pruned + shared + {self.coder}", "file": ".pkz file"}
        acc_key = {"original": "original", "pruned": "pruned", "quantized": "quantized",
                   "coded": "finetuned", "file": "finetuned"}
        base = self.accuracy.get("original")
        lines = ["| stage | bytes | ratio | top-1 | change |", "|---|---:|---:|---:|---:|"]
        for k in ("original", "pruned", "quantized", "coded", "file"):
            acc = self.accuracy.get(acc_key[k])
            if acc is None and k in ("coded", "file"):
                acc = self.accuracy.get("quantized")
            a = f"{acc:.2f}%" if acc is not None else "-"
            d = f"{acc - base:+.2f}" if (acc is not None and base is not None) else "-"
            lines.append(f"| {names[k]} | {sizes[k]:,.0f} | {ratios[k]:.1f}x | {a} | {d} |")
        return "\n".join(lines)

    def entropy_text(self) -> str:
        """One paragraph: coded index streams against their Shannon bound, and the unquantized bytes."""
        e = self.entropy_overhead()
        return (f"Index streams: {e['coded_bits'] / 8:,.0f} bytes coded with {self.coder}, Shannon bound "
                f"{e['entropy_bits'] / 8:,.0f} bytes ({e['overhead_pct']:+.2f}%). "
                f"Unquantized tensors (biases, BatchNorm): {self.raw_bytes:,} bytes.")

    def to_markdown(self) -> str:
        """Stage table, per-layer table and the entropy comparison."""
        return f"{self.stage_table()}\n\n{self.layer_table()}\n\n{self.entropy_text()}\n"

    def run_report(self, title: str):
        """This report as a :class:`prunekit.runs.Report` (report.json holds :meth:`to_dict`)."""
        from prunekit.runs import Report, Section

        acc = self.accuracy
        after_acc = acc.get("finetuned", acc.get("quantized"))
        profile = {"before": {"bytes": float(self.original_bytes), "test top-1": acc.get("original")},
                   "after": {"bytes": float(self.file_bytes), "test top-1": after_acc}}
        return Report(title=title, data=self.to_dict(), summary=[("coder", self.coder),
                                                                 ("compression", f"{self.ratios()['file']:.1f}x")],
                      profile=profile, labels=("original (float32)", ".pkz file"),
                      sections=[Section("Size and accuracy after each stage", self.stage_table()),
                                Section("Per layer", f"{self.layer_table()}\n\n{self.entropy_text()}")])


def _row(name, kind, weights, kept, layout, r: LayerRow, rows=None) -> str:
    sparse_rows = [x for x in (rows or [r]) if x.layout == "sparse"]
    keptp = f"{100.0 * kept / weights:.1f}%" if weights else "-"
    ib = f"{r.bits}" if rows is None else _weighted(rows, lambda x: x.bits * x.entries)
    ibc = f"{r.per_entry(8 * r.value_bytes):.2f}"
    ibe = f"{r.per_entry(r.value_entropy_bits):.2f}"
    if sparse_rows:
        pos_entries = sum(x.entries for x in sparse_rows)
        pb = f"{r.index_bits}" if rows is None else _weighted(sparse_rows, lambda x: x.index_bits * x.entries)
        pbc = f"{8 * r.gap_bytes / pos_entries:.2f}"
        pbe = f"{r.gap_entropy_bits / pos_entries:.2f}"
    else:
        pb = pbc = pbe = "-"
    dense = 32 * weights
    if rows is not None:
        qb = sum(x.quantized_bits for x in rows)
        cbits = sum(x.coded_bits for x in rows)
    else:
        qb, cbits = r.quantized_bits, r.coded_bits
    rq = f"{dense / qb:.1f}x" if qb else "-"
    rc = f"{dense / cbits:.1f}x" if cbits else "-"
    return f"| {name} | {kind} | {weights:,} | {keptp} | {layout} | {ib} | {ibc} | {ibe} | {pb} | {pbc} | {pbe} | {rq} | {rc} |"


def _weighted(rows, fn) -> str:
    n = sum(x.entries for x in rows)
    return f"{sum(fn(x) for x in rows) / n:.2f}" if n else "-"


def build_report(stats: list[dict], original_bytes: int, file_bytes: int, coder: str) -> CompressionReport:
    """A :class:`CompressionReport` from the per-tensor statistics of :mod:`prunekit.compress.codec`."""
    layers, raw = [], 0
    for s in stats:
        if "values" not in s:
            raw += s["bytes"]
            continue
        g = s.get("gaps", {"bytes": 0, "entropy_bits": 0.0})
        layers.append(LayerRow(name=s["name"], kind=s["kind"], weights=s["n"], kept=s["kept"], entries=s["entries"],
                               fillers=s["fillers"], layout=s["layout"], bits=s["bits"], index_bits=s["index_bits"],
                               codebook_bytes=s["codebook_bytes"], value_bytes=s["values"]["bytes"],
                               gap_bytes=g["bytes"], value_entropy_bits=s["values"]["entropy_bits"],
                               gap_entropy_bits=g["entropy_bits"]))
    return CompressionReport(layers=layers, raw_bytes=raw, original_bytes=original_bytes, file_bytes=file_bytes,
                             coder=coder)


def report_from_dict(d: dict) -> CompressionReport:
    """Inverse of :meth:`CompressionReport.to_dict` (derived fields are recomputed)."""
    return CompressionReport(layers=[LayerRow(**r) for r in d["layers"]], raw_bytes=d["raw_bytes"],
                             original_bytes=d["original_bytes"], file_bytes=d["file_bytes"], coder=d["coder"],
                             accuracy=dict(d.get("accuracy", {})))
