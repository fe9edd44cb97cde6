"""Latency, peak memory and size on disk: sane values, argument checks, state restored (no timing assertions)."""
import io

import pytest
import torch
import torch.nn as nn

from prunekit.errors import ConfigError, PrunekitError
from prunekit.measure import LatencyResult, compare_latency, measure_latency, peak_memory, size_on_disk
from prunekit.measure.memory import peak_from_events


def small_net():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 8 * 8, 10))


def test_latency_result_is_sane_and_restores_state():
    net = small_net().train()
    before_threads = torch.get_num_threads()
    r = measure_latency(net, torch.randn(3, 1, 8, 8), warmup=1, repeats=5, threads=1)
    assert r.repeats == 5 and r.threads == 1 and r.batch_size == 3
    assert 0 < r.min_ms <= r.p10_ms <= r.median_ms <= r.p90_ms
    assert r.mean_ms > 0 and r.per_sample_ms == pytest.approx(r.median_ms / 3)
    assert net.training and torch.get_num_threads() == before_threads
    assert not net[1].running_mean.any()  # eval mode: BatchNorm statistics untouched


def test_min_time_adds_runs_up_to_the_cap():
    r = measure_latency(nn.Identity(), torch.zeros(1), warmup=0, repeats=2, threads=1, min_time_s=10.0,
                        max_repeats=7)
    assert r.repeats == 7


def test_compare_latency_interleaves_all_models():
    x = torch.randn(1, 1, 8, 8)
    res = compare_latency({"a": small_net(), "b": nn.Flatten()}, x, warmup=1, repeats=4, threads=1)
    assert list(res) == ["a", "b"]
    assert all(r.repeats == 4 and r.median_ms > 0 for r in res.values())


@pytest.mark.parametrize("kwargs,match", [
    ({"repeats": 0}, "repeats"),
    ({"warmup": -1}, "warmup"),
    ({"threads": 0}, "threads"),
    ({"min_time_s": -1.0}, "min_time_s"),
    ({"repeats": 5, "max_repeats": 2}, "max_repeats"),
])
def test_bad_latency_arguments(kwargs, match):
    with pytest.raises(PrunekitError, match=match):
        measure_latency(nn.Identity(), torch.zeros(1), **kwargs)


def test_compare_latency_needs_models():
    with pytest.raises(PrunekitError, match="non-empty"):
        compare_latency({}, torch.zeros(1))


def test_latency_summary_is_exact_on_known_times():
    r = LatencyResult.from_times([0.001, 0.002, 0.003, 0.004, 0.005], threads=2, batch_size=4)
    assert (r.median_ms, r.mean_ms, r.min_ms) == pytest.approx((3.0, 3.0, 1.0))
    assert (r.p10_ms, r.p90_ms) == pytest.approx((1.4, 4.6))
    assert r.throughput == pytest.approx(4 / 0.003)
    assert LatencyResult.from_dict(r.to_dict()) == r
    with pytest.raises(ConfigError, match="'extra'"):
        LatencyResult.from_dict({**r.to_dict(), "extra": 1})
    with pytest.raises(ConfigError, match="'repeats'"):
        LatencyResult.from_dict({k: v for k, v in r.to_dict().items() if k != "repeats"})


def test_peak_from_events():
    assert peak_from_events([]) == 0
    assert peak_from_events([100, 50, -100, 200, -250]) == 250
    assert peak_from_events([-10, 5]) == 0


def test_peak_memory_covers_the_output_and_grows_with_batch():
    lin = nn.Linear(256, 1024)
    small = peak_memory(lin, torch.randn(1, 256))
    big = peak_memory(lin, torch.randn(64, 256))
    if small is None:
        pytest.skip("this torch build has no Kineto profiler")
    assert small >= 1024 * 4          # the output alone
    assert big >= 64 * 1024 * 4 and big > small


def test_size_on_disk_model_state_dict_and_file(tmp_path):
    lin = nn.Linear(100, 100)
    buf = io.BytesIO()
    torch.save(lin.state_dict(), buf)
    assert size_on_disk(lin) == len(buf.getvalue())
    assert size_on_disk(lin.state_dict()) == len(buf.getvalue())
    f = tmp_path / "w.bin"
    f.write_bytes(b"x" * 1234)
    assert size_on_disk(f) == 1234 and size_on_disk(str(f)) == 1234
    with pytest.raises(PrunekitError, match="no such file"):
        size_on_disk(tmp_path / "missing.pt")
    with pytest.raises(PrunekitError, match="not a regular file"):
        size_on_disk(tmp_path)


def test_peak_cpu_memory_sees_torch_and_numpy_allocations():
    import numpy as np

    from prunekit.measure.memory import peak_cpu_memory

    def make():
        t = torch.empty(1_000_000)          # 4 MB through torch's allocator, freed before the end
        a = np.ones(2_000_000)              # 16 MB of NumPy (tracemalloc), freed before the end
        del t, a
        return None

    torch_only = peak_cpu_memory(make)
    both = peak_cpu_memory(make, python=True)
    if torch_only is None:
        pytest.skip("no Kineto profiler in this torch build")
    assert 4_000_000 <= torch_only < 16_000_000
    assert both >= torch_only + 16_000_000
