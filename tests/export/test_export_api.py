"""prunekit.export.export: ONNX (dynamo) and torch.export round trips, checked in a fresh interpreter."""
import sys

import pytest
import torch

from export_helpers import run_isolated
from prunekit import export, models
from prunekit.errors import ExportError, PrunekitError
from prunekit.export.api import flatten_outputs

pytest.importorskip("onnxruntime")

FAST_ZOO = ("lenet5", "resnet20")


def _zoo(name):
    torch.manual_seed(0)
    net = models.create(name).eval()
    return net, torch.randn(1, *net.prunekit_spec.input_shape)


@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
@pytest.mark.parametrize("name", FAST_ZOO)
def test_zoo_round_trip_runs_without_prunekit(name, fmt, tmp_path):
    net, x = _zoo(name)
    r = export.export(net, x, tmp_path / f"m.{fmt}", format=fmt)
    assert r.ok and r.max_abs_diff <= r.tolerance and len(r.checks) == 3
    assert [c["batch"] for c in r.checks] == [1, 1, 1]
    assert r.files == [tmp_path / f"m.{fmt}"]
    xs = (torch.randn(1, *x.shape[1:], generator=torch.Generator().manual_seed(7)),)
    (got,) = run_isolated(fmt, r.path, xs, tmp_path)
    with torch.no_grad():
        ref = net(*xs)
    assert got.shape == ref.shape
    assert float((got - ref).abs().max()) < 1e-4


@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
def test_dynamic_batch_is_checked_at_two_batch_sizes(fmt, tmp_path):
    net, x = _zoo("lenet5")
    r = export.export(net, x, tmp_path / f"m.{fmt}", format=fmt, dynamic_batch=True,
                      options=export.ExportOptions(seeds=2, batch_sizes=(1, 5)))
    assert [(c["batch"], c["seed"]) for c in r.checks] == [(1, 0), (1, 1), (5, 0), (5, 1)]
    assert r.input_shapes == [[2, *x.shape[1:]]]   # traced at batch 2: torch.export fixes a batch of 1
    xs = (torch.randn(7, *x.shape[1:]),)
    (got,) = run_isolated(fmt, r.path, xs, tmp_path)
    with torch.no_grad():
        assert float((got - net(*xs)).abs().max()) < 1e-4
    assert got.shape == (7, 10)


def test_static_export_keeps_the_example_batch(tmp_path):
    net, x = _zoo("lenet5")
    r = export.export(net, x.repeat(3, 1, 1, 1), tmp_path / "m.pt2", format="pt2")
    assert {c["batch"] for c in r.checks} == {3}
    prog = torch.export.load(str(r.path))
    with pytest.raises(Exception):
        prog.module()(torch.randn(4, *x.shape[1:]))   # a static export refuses another batch size


def test_model_with_batch_dependent_code_refuses_a_dynamic_batch(tmp_path):
    from usernet_for_export import FixedBatchNet

    with pytest.raises(ExportError, match="does not support a dynamic batch"):
        export.export(FixedBatchNet(), torch.randn(1, 4), tmp_path / "m.pt2", format="pt2", dynamic_batch=True)
    assert list(tmp_path.iterdir()) == []   # nothing left behind


def test_training_flag_is_restored_and_export_runs_in_eval_mode(tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.5)).train()
    r = export.export(net, torch.randn(2, 4), tmp_path / "m.pt2", format="pt2")
    assert net.training and r.max_abs_diff == 0.0


def test_bad_input(tmp_path):
    net, x = _zoo("lenet5")
    with pytest.raises(ExportError, match="format"):
        export.export(net, x, tmp_path / "m.tflite", format="tflite")
    (tmp_path / "m.pt2").write_bytes(b"mine")
    with pytest.raises(PrunekitError, match="already exists"):
        export.export(net, x, tmp_path / "m.pt2", format="pt2")
    assert (tmp_path / "m.pt2").read_bytes() == b"mine"
    with pytest.raises(ExportError, match="example_inputs"):
        export.export(net, "x", tmp_path / "n.pt2", format="pt2")
    with pytest.raises(ExportError, match="seeds"):
        export.ExportOptions(seeds=0)
    with pytest.raises(ExportError, match="batch size"):
        export.ExportOptions(batch_sizes=(1, 0))


def test_tolerance_refusal_writes_nothing(tmp_path, monkeypatch):
    from prunekit.export import api

    net, x = _zoo("lenet5")
    real = api._run_pt2
    monkeypatch.setattr(api, "_run_pt2", lambda p: (lambda inputs: [t + 1.0 for t in real(p)(inputs)]))
    with pytest.raises(ExportError, match=r"differs from the model by up to 1 \(tolerance"):
        export.export(net, x, tmp_path / "m.pt2", format="pt2")
    assert list(tmp_path.iterdir()) == []


def test_missing_onnx_extra_names_it(tmp_path, monkeypatch):
    net, x = _zoo("lenet5")
    monkeypatch.setitem(sys.modules, "onnxscript", None)   # import onnxscript -> ImportError
    with pytest.raises(ExportError, match=r"onnx extra .*prunekit\[onnx\]"):
        export.export(net, x, tmp_path / "m.onnx", format="onnx")


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
@pytest.mark.parametrize("name", sorted(models.list_models()))
def test_every_zoo_model_round_trips(name, fmt, tmp_path):
    net, x = _zoo(name)
    r = export.export(net, x, tmp_path / f"m.{fmt}", format=fmt, dynamic_batch=True,
                      options=export.ExportOptions(seeds=1))
    xs = (torch.randn(2, *x.shape[1:]),)
    got = run_isolated(fmt, r.path, xs, tmp_path)
    with torch.no_grad():
        ref = flatten_outputs(net(*xs))
    assert all(float((g - q).abs().max()) <= r.tolerance for g, q in zip(got, ref))
