"""Per-layer latency lookup table (MetaPruning, Liu et al., ICCV 2019, Sec. 3.4, "latency constraint").

For every convolution/linear layer the table holds the measured time of that
layer alone for each (input channels, output channels) pair an encoding can
give it, on the target (torch on this CPU, ``threads`` threads, one by default; or onnxruntime). A
network's predicted latency is the sum of its layers' entries plus a model of
everything else: ``c0 + c1 * A`` where ``A`` is the number of output activation
elements of the table's layers (BatchNorm, activations and residual adds are
memory-bound and scale with it) and ``c0`` is fixed overhead (pooling, the
framework). ``c0, c1`` are fitted (least squares, non-negative ``c1``) on the
measured latency of the full, the half-width and the narrowest network.
Each entry times the layer called ``inner`` times in a row, so the timing
harness's per-call overhead is amortised away.

Entries are measured lazily (the first time an encoding needs them) and cached;
``fill()`` measures the whole grid up front. ``bench/latency_table.py`` checks
the predictions against measured whole-network latency.

On a shared machine the speed itself drifts (by 10-20% within a minute on our
2-core VM), so a table built at one moment mispredicts networks timed at
another by that much whatever its model. The table therefore keeps
``reference_ms``, the full network's latency when it was calibrated;
:meth:`LatencyTable.drift` times the full network again and gives the ratio,
which :func:`prunekit.search.search` reports next to a latency-constrained
result. :meth:`remeasure` re-times entries and :meth:`fit_overhead` refits the
constants on given timings, so the benchmark can time table entries and whole
networks side by side.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from prunekit.errors import PrunekitError
from prunekit.validate import check_choice, check_int

BACKENDS = ("torch", "onnxruntime")
#: "median": each timing is a median (the typical latency); "fastest": the whole grid is timed
#: up front in several interleaved passes and every entry and calibration network keeps its
#: fastest pass (the CPU's own speed, without the load of its neighbours; see docs/search.md)
MODES = ("median", "fastest")
#: how one timing (entry or network) summarises its repeated runs
RUN_STATISTICS = ("median", "min")
#: "fastest" mode: whole-network timings are the fastest of this many rounds, this many seconds apart
#: (the VM's slow spells last seconds, so rounds back to back tend to share one)
FASTEST_ROUNDS, FASTEST_PAUSE_S = 10, 0.5


def timing_rounds(mode: str):
    """Yield once per whole-network timing round of ``mode``, pausing between rounds in "fastest" mode."""
    import time

    n = FASTEST_ROUNDS if mode == "fastest" else 5
    for i in range(n):
        if i and mode == "fastest":
            time.sleep(FASTEST_PAUSE_S)
        yield i


@dataclass
class _Layer:
    name: str
    kind: str            # "conv" or "linear"
    cfg: dict            # kernel/stride/padding/dilation/depthwise/bias
    in_shape: tuple      # input shape with batch, full width
    gin: int | None      # search-group index of the input channels
    gout: int | None     # search-group index of the output channels
    cin: int
    cout: int
    out_hw: int = 1      # output positions per channel (for the activation-volume term)


@dataclass
class LatencyTable:
    """Latency lookup table of a model's prunable layers; see the module docstring.

    Attributes:
        layers: the timed layers.
        constant_ms: latency of everything outside the table.
        entries: ``{signature: ms}`` measured so far.
        backend: ``"torch"`` or ``"onnxruntime"``.
        mode: ``"median"`` or ``"fastest"`` (see :data:`MODES`).
        reference_ms: the full network's latency at calibration (see :meth:`drift`).
        threads: torch intra-op threads of every timing (the engine's latency budget times at the
            thread count it is asked for; the search at one).
        run_statistic: how one timing summarises its repeated runs: ``"median"`` (the search), or
            ``"min"`` (the engine's latency budget: load from other processes only ever adds time,
            so the fastest run is the layer's own cost, and the table stays monotone in the widths).
    """

    layers: list
    constant_ms: float = 0.0
    entries: dict = field(default_factory=dict)
    backend: str = "torch"
    repeats: int = 20
    per_activation_ms: float = 0.0
    inner: int = 10
    reference_ms: float = 0.0
    mode: str = "median"
    threads: int = 1
    run_statistic: str = "median"

    def __post_init__(self) -> None:
        check_int("latency table threads", self.threads, error=PrunekitError)
        check_choice("latency table run_statistic", self.run_statistic, RUN_STATISTICS, error=PrunekitError)
        if self.mode not in MODES:
            raise PrunekitError(f"latency table mode must be one of {', '.join(MODES)}, got {self.mode!r}")

    @classmethod
    def build(cls, model, example_input, space, backend: str = "torch", repeats: int = 20,
              progress: bool = False, mode: str = "median", rounds: int = 3, threads: int = 1,
              inner: int = 10, run_statistic: str = "median") -> "LatencyTable":
        """Record every conv/linear layer's input shape, time the full model, and set the constant.

        ``mode="fastest"`` times the whole grid up front in ``rounds`` interleaved passes
        and keeps every entry's fastest pass (and the fastest of the calibration rounds).
        ``threads`` is the torch thread count of every timing; ``inner`` the calls per entry timing;
        ``run_statistic`` as the attribute.
        """
        check_choice("latency table mode", mode, MODES, error=PrunekitError)
        check_int("latency table rounds", rounds, error=PrunekitError)
        check_choice("latency backend", backend, BACKENDS, error=PrunekitError)
        if backend == "onnxruntime":
            try:
                import onnxruntime  # noqa: F401
            except ImportError:
                raise PrunekitError("the onnxruntime latency backend needs onnxruntime installed") from None
        layers = record_layers(model, example_input, space)
        table = cls(layers, 0.0, {}, backend, repeats, inner=inner, mode=mode, threads=threads,
                    run_statistic=run_statistic)
        if mode == "fastest":
            table.fill(space, progress=progress, rounds=rounds)
        table.calibrate(model, example_input, space)
        return table

    def remeasure(self, encodings=None) -> list:
        """Time again the entries ``encodings`` use (all entries if None), replacing the old timings.

        Returns the signatures (entry keys) it timed.
        """
        if encodings is None:
            sigs = list(self.entries)
        else:
            sigs = list(dict.fromkeys(self._signature(layer, *self._widths(layer, enc))
                                      for enc in encodings for layer in self.layers))
        for sig in sigs:
            self.entries[sig] = self._measure_signature(sig)
        return sigs

    def fit_overhead(self, encodings, measured_ms, layer_sums=None) -> None:
        """Fit ``constant_ms`` and ``per_activation_ms`` so that ``predict`` matches ``measured_ms``.

        Least squares of ``measured - layer_sum`` on the activation volume (slope clamped
        at 0); with one network, or equal volumes, only the constant is fitted.
        ``layer_sums`` gives the layer sums to use (e.g. taken right before each network
        was timed); by default the current entries'.
        """
        import numpy as np

        encodings, measured_ms = list(encodings), [float(t) for t in measured_ms]
        if not encodings or len(encodings) != len(measured_ms):
            raise PrunekitError("fit_overhead needs one measured latency per encoding")
        sums = [self.layer_sum(enc) for enc in encodings] if layer_sums is None else [float(v) for v in layer_sums]
        if len(sums) != len(encodings):
            raise PrunekitError("fit_overhead needs one layer sum per encoding")
        rest = [t - ls for ls, t in zip(sums, measured_ms)]
        act = [self.activations(enc) for enc in encodings]
        slope, icpt = 0.0, float(np.mean(rest))
        if len(encodings) > 1 and max(act) > min(act):
            s_, i_ = np.polyfit(np.array(act), np.array(rest), 1)
            if s_ >= 0:
                slope, icpt = float(s_), float(i_)
        self.per_activation_ms, self.constant_ms = slope, icpt

    def drift(self, model, example_input) -> float:
        """The full network's latency now divided by its latency at calibration (1.0: same speed).

        ``model`` is the full network the table was built for; a ratio of 1.15 means this
        machine is currently 15% slower than when the table was measured, and every
        measured latency is inflated by about that much against the table's predictions.
        """
        if self.reference_ms <= 0:
            raise PrunekitError("this latency table has no reference timing (built before prunekit recorded one); "
                                "rebuild it")
        return self._network_ms(model.eval(), example_input) / self.reference_ms

    def statistic(self, times) -> float:
        """This table's summary of repeated whole-network timings: their median, or (``"fastest"``) their minimum."""
        import statistics

        return min(times) if self.mode == "fastest" else statistics.median(times)

    def _network_ms(self, model, example_input) -> float:
        """A network's latency as this table's mode measures it, over :func:`timing_rounds`."""
        return self.statistic([self._measure_model(model, example_input) for _ in timing_rounds(self.mode)])

    def activations(self, encoding) -> float:
        """Output activation elements (per sample) of the table's layers under ``encoding``."""
        return float(sum(self._widths(layer, encoding)[1] * layer.out_hw for layer in self.layers))

    def calibrate(self, model, example_input, space) -> None:
        """Fit ``constant_ms`` and ``per_activation_ms`` on measured whole sub-networks.

        The full, half-width and narrowest networks are each timed in 5 rounds
        (``mode="fastest"``: 10, half a second apart), the rounds interleaved across the
        three, and summarised by :meth:`statistic`: a burst of load from another process
        then skews one round of each network instead of the whole fit (on a shared 2-core
        machine single timings drift by tens of percent).
        """
        encs = list(dict.fromkeys([space.full, space.uniform(0.5), space.smallest]))
        nets = [model if enc == space.full else space.plan(enc).apply(model).eval() for enc in encs]
        times = [[] for _ in encs]
        for _ in timing_rounds(self.mode):
            for i, net in enumerate(nets):
                times[i].append(self._measure_model(net, example_input))
        summary = [self.statistic(ts) for ts in times]
        self.reference_ms = summary[encs.index(space.full)]
        self.fit_overhead(encs, summary)

    # ------------------------------------------------------------------ prediction
    def _widths(self, layer: _Layer, encoding) -> tuple[int, int]:
        cin = encoding[layer.gin] if layer.gin is not None else layer.cin
        cout = encoding[layer.gout] if layer.gout is not None else layer.cout
        return int(cin), int(cout)

    def _signature(self, layer: _Layer, cin: int, cout: int) -> str:
        shape = list(layer.in_shape)
        shape[1 if layer.kind == "conv" else -1] = cin
        return json.dumps([layer.kind, layer.cfg, shape, cout])

    def layer_sum(self, encoding) -> float:
        """Sum of the table entries of ``encoding``'s layers (measuring missing ones)."""
        total = 0.0
        for layer in self.layers:
            cin, cout = self._widths(layer, encoding)
            sig = self._signature(layer, cin, cout)
            if sig not in self.entries:
                self.entries[sig] = self._measure_signature(sig)
            total += self.entries[sig]
        return total

    def predict(self, encoding) -> float:
        """Predicted latency (ms) of the sub-network ``encoding``."""
        return self.layer_sum(encoding) + self.constant_ms + self.per_activation_ms * self.activations(encoding)

    def fill(self, space, progress: bool = False, rounds: int = 1) -> int:
        """Measure every (cin, cout) pair of the grid; returns the number of entries.

        With ``rounds`` > 1 every grid entry is timed again in that many passes over the
        whole grid and keeps its fastest pass (passes, not repeats back to back, so that
        a slow spell of the machine hits one pass of every entry).
        """
        from prunekit.utils.progress import progress_bar

        sigs = []
        for layer in self.layers:
            cins = space.candidates[layer.gin] if layer.gin is not None else (layer.cin,)
            couts = space.candidates[layer.gout] if layer.gout is not None else (layer.cout,)
            pairs = [(c, c) for c in cins] if layer.cfg.get("dw") else [(a, b) for a in cins for b in couts]
            sigs += [self._signature(layer, cin, cout) for cin, cout in pairs]
        sigs = list(dict.fromkeys(sigs))
        todo = sigs if rounds > 1 else [k for k in sigs if k not in self.entries]
        best = {}
        with progress_bar(total=len(todo) * max(1, rounds), desc="latency table", enabled=progress, leave=True) as bar:
            for _ in range(max(1, rounds)):
                for sig in todo:
                    best[sig] = min(best.get(sig, float("inf")), self._measure_signature(sig))
                    bar.update(1)
        self.entries.update(best)
        return len(self.entries)

    # ------------------------------------------------------------------ measurement
    def _measure_signature(self, sig: str) -> float:
        """Time the layer a signature describes (kind, config, input shape, output channels), ms per call."""
        import torch

        kind, c, shape, cout = json.loads(sig)
        if kind == "linear":
            layer = torch.nn.Linear(shape[-1], cout, bias=c["bias"])
        else:
            cin = shape[1]
            layer = torch.nn.Conv2d(cin, cout, tuple(c["k"]), tuple(c["s"]), tuple(c["p"]), tuple(c["d"]),
                                    groups=cin if c["dw"] else 1, bias=c["bias"])
        rep = _Repeat(layer.eval(), self.inner)
        return self._measure_model(rep, torch.randn(*shape)) / self.inner

    def _measure_model(self, model, x) -> float:
        if self.backend == "onnxruntime":
            return _ort_latency(model, x, self.repeats, self.threads)
        from prunekit.measure import measure_latency

        r = measure_latency(model, x, warmup=3, repeats=self.repeats, threads=self.threads)
        return float(r.min_ms if self.run_statistic == "min" else r.median_ms)

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict:
        """The table as JSON-able data (layers, fitted constants, measured entries)."""
        return {"backend": self.backend, "constant_ms": self.constant_ms, "repeats": self.repeats,
                "per_activation_ms": self.per_activation_ms, "inner": self.inner, "reference_ms": self.reference_ms,
                "mode": self.mode, "threads": self.threads, "run_statistic": self.run_statistic,
                "layers": [vars(layer) for layer in self.layers], "entries": self.entries}

    def save(self, path) -> Path:
        """Write the table as JSON atomically."""
        from prunekit.utils.io import atomic_write

        with atomic_write(path, "w") as f:
            json.dump(self.to_dict(), f)
        return Path(path)

    @classmethod
    def load(cls, path) -> "LatencyTable":
        """Read a table written by :meth:`save`; a missing or malformed file raises naming it."""
        p = Path(path)
        if not p.is_file():
            raise PrunekitError(f"latency table {p} is not a file (write one with LatencyTable.save or take a "
                                "search's OUT/latency_table.json)")
        try:
            return cls.from_dict(json.loads(p.read_text()))
        except (ValueError, KeyError, TypeError) as e:
            raise PrunekitError(f"{p} is not a prunekit latency table ({type(e).__name__}: {e})") from None

    def check_matches(self, model, example_input, space, where: str = "latency table") -> None:
        """Raise unless this table was built for ``model`` at ``example_input``'s shape and ``space``'s groups."""
        want = record_layers(model, example_input, space)
        if [vars(x) for x in want] != [vars(x) for x in self.layers]:
            mine, theirs = {x.name: vars(x) for x in self.layers}, {x.name: vars(x) for x in want}
            diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            raise PrunekitError(f"{where} was built for another model, input shape or search grid (layers "
                                f"differing: {', '.join(diff[:5]) or 'their order'}); build one for this search")

    @classmethod
    def from_dict(cls, d: dict) -> "LatencyTable":
        """Rebuild a table written by :meth:`to_dict` (no re-measurement)."""
        layers = [_Layer(**{**x, "in_shape": tuple(x["in_shape"])}) for x in d["layers"]]
        return cls(layers, float(d["constant_ms"]), dict(d["entries"]), d.get("backend", "torch"),
                   int(d.get("repeats", 20)), float(d.get("per_activation_ms", 0.0)), int(d.get("inner", 10)),
                   float(d.get("reference_ms", 0.0)), d.get("mode", "median"), int(d.get("threads", 1)),
                   d.get("run_statistic", "median"))



def record_layers(model, example_input, space) -> list:
    """The conv/linear layers of ``model`` as the table times them: input shape, config, search groups."""
    import torch

    where = {}
    for gi, g in enumerate(space.groups):
        for m in g.members:
            where[(m.param, m.dim)] = gi
    shapes, outs, hooks = {}, {}, []
    mods = dict(model.named_modules())
    for name, mod in mods.items():
        if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
            def grab(_m, a, name=name):
                shapes.setdefault(name, tuple(a[0].shape))  # returns None: inputs unchanged

            def grab_out(_m, _a, y, name=name):
                outs.setdefault(name, int(y[0].numel() // y.shape[1]) if y.dim() > 2 else 1)

            hooks.append(mod.register_forward_pre_hook(grab))
            hooks.append(mod.register_forward_hook(grab_out))
    try:
        with torch.no_grad():
            model.eval()(example_input)
    finally:
        for h in hooks:
            h.remove()
    layers = []
    for name, shape in shapes.items():
        mod = mods[name]
        w = name + ".weight" if name else "weight"
        if isinstance(mod, torch.nn.Conv2d):
            dw = mod.groups > 1 and mod.groups == mod.in_channels == mod.out_channels
            if mod.groups > 1 and not dw:
                raise PrunekitError(f"latency table: grouped convolution {name!r} is not supported")
            cfg = {"k": list(mod.kernel_size), "s": list(mod.stride), "p": list(mod.padding),
                   "d": list(mod.dilation), "dw": dw, "bias": mod.bias is not None}
            gout = where.get((w, 0))
            gin = gout if dw else where.get((w, 1))
            layers.append(_Layer(name, "conv", cfg, shape, gin, gout, mod.in_channels, mod.out_channels,
                                 outs[name]))
        else:
            layers.append(_Layer(name, "linear", {"bias": mod.bias is not None}, shape,
                                 where.get((w, 1)), where.get((w, 0)), mod.in_features, mod.out_features))
    return layers


class _Repeat(torch.nn.Module):
    """Runs ``layer`` ``k`` times per call (amortises the timing harness's per-call overhead)."""

    def __init__(self, layer, k: int) -> None:
        super().__init__()
        self.layer, self.k = layer, k

    def forward(self, x):
        y = None
        for _ in range(self.k):
            y = self.layer(x)
        return y


def _ort_latency(model, x, repeats: int, threads: int = 1) -> float:
    """Median ms of ``model`` exported to ONNX and run by onnxruntime on ``threads`` CPU threads."""
    import io
    import statistics
    import time

    import onnxruntime as ort
    import torch

    buf = io.BytesIO()
    torch.onnx.export(model, (x,), buf, dynamo=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x.numpy()}
    for _ in range(3):
        sess.run(None, feed)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        sess.run(None, feed)
        times.append((time.perf_counter() - t) * 1000.0)
    return float(statistics.median(times))
