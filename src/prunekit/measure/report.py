"""The :class:`ProfileReport`: every size and speed figure of one model, as JSON, Markdown or a terminal table.

Reports are built by :func:`prunekit.measure.profile` and compared with
:func:`prunekit.measure.compare`. They hold plain numbers only, so
``ProfileReport.from_dict(r.to_dict()) == r``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from prunekit.errors import ConfigError
from prunekit.measure.format import human_bytes, human_count, human_ms, markdown_table, text_table
from prunekit.measure.latency import LatencyResult
from prunekit.measure.macs import MacsReport
from prunekit.measure._utils import plain_shape, shape_text

REPORT_FORMAT = "prunekit.profile"
REPORT_VERSION = 1


@dataclass
class ProfileReport:
    """Size and speed of one model.

    Attributes:
        name: label of the model (architecture name, file name, or given).
        input_shape: shape of one input sample (no batch dimension); a list of shapes for several inputs.
        params: parameter elements (tied parameters once).
        trainable_params: those with ``requires_grad``.
        nonzero_params: parameter elements that are not exactly zero.
        macs: MACs of one forward pass on **one** sample (batch size 1), per layer.
        layer_params: parameter elements of each layer listed in ``macs.per_layer``
            (parameters of unlisted children are charged to their nearest listed ancestor).
        latency: batch size -> :class:`LatencyResult` (empty when latency was not measured).
        peak_memory: batch size -> peak extra bytes of a forward pass (None: not measurable here).
        state_dict_bytes: bytes of ``torch.save(model.state_dict())``.
        file: path of the file the model came from, if any.
        file_bytes: size of that file.
        environment: torch version, platform, threads and methods the figures were taken with.
    """

    name: str
    input_shape: list[int]
    params: int
    trainable_params: int
    nonzero_params: int
    macs: MacsReport
    layer_params: dict[str, int] = field(default_factory=dict)
    latency: dict[int, LatencyResult] = field(default_factory=dict)
    peak_memory: dict[int, int | None] = field(default_factory=dict)
    state_dict_bytes: int = 0
    file: str | None = None
    file_bytes: int | None = None
    environment: dict = field(default_factory=dict)

    @property
    def sparsity(self) -> float:
        """Fraction of parameter elements that are zero."""
        return 0.0 if self.params == 0 else 1.0 - self.nonzero_params / self.params

    def compare(self, after: "ProfileReport", labels: tuple[str, str] = ("before", "after")):
        """Before/after table of this report and ``after``; same as :func:`prunekit.measure.compare`."""
        from prunekit.measure.compare import compare

        return compare(self, after, labels)

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict:
        """JSON-able form (batch-size keys become strings)."""
        return {
            "format": REPORT_FORMAT, "version": REPORT_VERSION,
            "name": self.name, "input_shape": list(self.input_shape),
            "params": self.params, "trainable_params": self.trainable_params,
            "nonzero_params": self.nonzero_params, "sparsity": self.sparsity,
            "macs": self.macs.to_dict(), "layer_params": dict(self.layer_params),
            "latency": {str(bs): r.to_dict() for bs, r in self.latency.items()},
            "peak_memory": {str(bs): v for bs, v in self.peak_memory.items()},
            "state_dict_bytes": self.state_dict_bytes, "file": self.file, "file_bytes": self.file_bytes,
            "environment": dict(self.environment),
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> "ProfileReport":
        """Inverse of :meth:`to_dict`; unknown keys, missing keys or bad values raise ConfigError naming them."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"a profile report must be a JSON object, got {type(d).__name__}")
        known = {"format", "version", "name", "input_shape", "params", "trainable_params", "nonzero_params",
                 "sparsity", "macs", "layer_params", "latency", "peak_memory", "state_dict_bytes", "file",
                 "file_bytes", "environment"}
        for key in d:
            if key not in known:
                raise ConfigError(f"profile report: unknown key {key!r}")
        if d.get("format", REPORT_FORMAT) != REPORT_FORMAT or d.get("version", REPORT_VERSION) != REPORT_VERSION:
            raise ConfigError(f"profile report: unsupported format {d.get('format')!r} version {d.get('version')!r}")
        try:
            return cls(
                name=str(d["name"]), input_shape=plain_shape(d["input_shape"]),
                params=int(d["params"]), trainable_params=int(d["trainable_params"]),
                nonzero_params=int(d["nonzero_params"]), macs=MacsReport.from_dict(d["macs"]),
                layer_params={str(k): int(v) for k, v in d.get("layer_params", {}).items()},
                latency={int(bs): LatencyResult.from_dict(r) for bs, r in d.get("latency", {}).items()},
                peak_memory={int(bs): (None if v is None else int(v)) for bs, v in d.get("peak_memory", {}).items()},
                state_dict_bytes=int(d.get("state_dict_bytes", 0)),
                file=None if d.get("file") is None else str(d["file"]),
                file_bytes=None if d.get("file_bytes") is None else int(d["file_bytes"]),
                environment=dict(d.get("environment", {})),
            )
        except ConfigError:
            raise
        except KeyError as e:
            raise ConfigError(f"profile report: missing key {e.args[0]!r}") from None
        except (TypeError, ValueError, AttributeError) as e:
            raise ConfigError(f"profile report: malformed value ({e})") from None

    def save_json(self, path: str | os.PathLike, overwrite: bool = True) -> Path:
        """Write :meth:`to_dict` as indented JSON, atomically; ``overwrite=False`` refuses an existing file."""
        from prunekit.utils.io import check_overwrite, write_json

        return write_json(check_overwrite(path, overwrite), self.to_dict(), indent=2)

    @classmethod
    def load_json(cls, path: str | os.PathLike) -> "ProfileReport":
        """Read a report written by :meth:`save_json`; errors name the file."""
        from prunekit.utils.io import read_json

        p = Path(path)
        data = read_json(p, "report")
        try:
            return cls.from_dict(data)
        except ConfigError as e:
            raise ConfigError(f"{p}: {e}") from None

    # ------------------------------------------------------------- rendering
    def summary_rows(self) -> list[tuple[str, str]]:
        """``(metric, value)`` pairs shown by :meth:`to_table` and :meth:`to_markdown`."""
        rows = [("params", f"{self.params:,} ({human_count(self.params)})")]
        if self.trainable_params != self.params:
            rows.append(("trainable params", f"{self.trainable_params:,}"))
        rows.append(("nonzero params", f"{self.nonzero_params:,} ({100 * self.sparsity:.2f}% zeros)"))
        rows.append(("MACs / sample", f"{self.macs.total:,} ({human_count(self.macs.total)})"))
        for typ, macs in self.macs.per_type.items():
            share = 100.0 * macs / self.macs.total if self.macs.total else 0.0
            rows.append((f"  in {typ}", f"{macs:,} ({share:.1f}%)"))
        for kind, n in self.macs.extra_totals.items():
            rows.append((f"{kind} / sample", f"{n:,} ({human_count(n)})"))
        for bs, r in self.latency.items():
            rows.append((f"latency bs={bs} (median)",
                         f"{human_ms(r.median_ms)} [p10 {r.p10_ms:.3f}, p90 {r.p90_ms:.3f}; "
                         f"{r.repeats} runs, {r.threads} thread{'s' if r.threads != 1 else ''}]"))
        for bs, v in self.peak_memory.items():
            rows.append((f"peak memory bs={bs}", human_bytes(v)))
        rows.append(("state_dict size", f"{human_bytes(self.state_dict_bytes)} ({self.state_dict_bytes:,} B)"))
        if self.file is not None:
            rows.append(("file size", f"{human_bytes(self.file_bytes)} ({self.file_bytes:,} B)"
                         if self.file_bytes is not None else "n/a"))
        return rows

    def layer_rows(self) -> list[list[str]]:
        """One row per layer: name, type, params, MACs, % of MACs, extra ops."""
        rows = []
        names = list(self.macs.per_layer) + [n for n in self.macs.extra_ops if n not in self.macs.per_layer]
        for name in names:
            macs = self.macs.per_layer.get(name, 0)
            share = 100.0 * macs / self.macs.total if self.macs.total else 0.0
            extra = ", ".join(f"{k}={v:,}" for k, v in self.macs.extra_ops.get(name, {}).items())
            rows.append([name or "(root)", self.macs.layer_types.get(name, "?"),
                         f"{self.layer_params.get(name, 0):,}", f"{macs:,}", f"{share:.1f}%", extra])
        return rows

    def _title(self) -> str:
        shape = shape_text(self.input_shape)
        torch_v = self.environment.get("torch", "?")
        return f"{self.name}: input {shape}, torch {torch_v}"

    def to_table(self, per_layer: bool = False) -> str:
        """Aligned text for terminals; ``per_layer=True`` adds the per-layer MACs table."""
        out = [self._title(), "", text_table(["metric", "value"], [list(r) for r in self.summary_rows()], "ll")]
        if per_layer:
            out += ["", text_table(["layer", "type", "params", "MACs", "% MACs", "other ops"], self.layer_rows(),
                                   "llrrrl")]
        return "\n".join(out)

    def to_markdown(self, per_layer: bool = False) -> str:
        """Markdown tables (summary, then per layer when asked)."""
        out = [f"**{self._title()}**", "",
               markdown_table(["metric", "value"], [list(r) for r in self.summary_rows()], "ll")]
        if per_layer:
            out += ["", markdown_table(["layer", "type", "params", "MACs", "% MACs", "other ops"], self.layer_rows(),
                                       "llrrrl")]
        return "\n".join(out)

    def __str__(self) -> str:
        return self.to_table()
