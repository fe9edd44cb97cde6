"""compress_model end to end: pruning, retraining, sharing, fine-tuning, report; recipe and demo hooks."""
from pathlib import Path

import pytest
import torch

from prunekit import checkpoint, compress, models
from prunekit.errors import ConfigError


@pytest.fixture(scope="module")
def data():
    from prunekit.data import load_dataset

    return load_dataset("synthetic", num_samples=300, shape=(1, 28, 28))


@pytest.fixture(scope="module")
def trained(data):
    from prunekit.train import TrainConfig, fit

    torch.manual_seed(0)
    net = models.create("lenet300_100", in_channels=1, input_size=(28, 28))
    fit(net, data, TrainConfig(epochs=2, lr=0.05, progress=False, augment=False, checkpoint_every=0))
    return net


def test_full_pipeline_with_retraining_and_finetuning(trained, data):
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    cfg = {"prune_sparsity": 0.9, "retrain": {"epochs": 1}, "finetune": {"epochs": 1}, "coder": "rans"}
    result = compress.compress_model(trained, cfg, data=data, progress=False)
    # the caller's model is untouched
    assert all(torch.equal(v, before[k]) for k, v in trained.state_dict().items())
    acc = result.report.accuracy
    assert set(acc) == {"original", "pruned_no_retrain", "pruned", "quantized", "finetuned"}
    # 90% of every shared layer pruned, and the masks hold in the final model
    for name, st in result.shared.items():
        assert abs(1 - st.mask.float().mean().item() - 0.9) < 0.01
        assert torch.equal(result.masks[name], st.mask)
        assert torch.all(dict(result.model.named_parameters())[name][~st.mask] == 0)
    x = data.test_x[:8]
    assert torch.equal(compress.loads(result.data)(x), result.model(x))
    ratios = result.report.ratios()
    assert ratios["pruned"] > 5 and ratios["quantized"] > ratios["pruned"] and ratios["coded"] > ratios["quantized"]
    assert result.report.file_bytes == len(result.data)
    md = result.report.to_markdown()
    assert "| **total** |" in md and "Shannon bound" in md


def test_report_figures_are_consistent(trained):
    result = compress.compress_model(trained, {"prune_sparsity": 0.9}, progress=False)
    rep = result.report
    d = rep.to_dict()
    from prunekit.compress.report import report_from_dict
    assert report_from_dict(d).to_dict() == d
    n_weights = sum(r.weights for r in rep.layers)
    assert n_weights == sum(p.numel() for n, p in trained.named_parameters() if n.endswith("weight"))
    for r in rep.layers:
        assert r.bits == 5 and r.layout == "sparse" and r.entries == r.kept + r.fillers
        # Huffman costs at least the entropy of the symbols it codes
        assert 8 * r.value_bytes >= r.value_entropy_bits and 8 * r.gap_bytes >= r.gap_entropy_bits
    total_params = sum(t.numel() * t.element_size() for t in trained.state_dict().values())
    assert rep.original_bytes == total_params
    assert rep.stage_bytes()["coded"] < rep.stage_bytes()["file"] < rep.stage_bytes()["coded"] + 2000


def test_training_steps_need_data(trained):
    with pytest.raises(ConfigError, match="need training data"):
        compress.compress_model(trained, {"prune_sparsity": 0.5, "retrain": {"epochs": 1}})


def test_structurally_pruned_model_round_trips():
    import prunekit

    torch.manual_seed(0)
    net = models.create("vgg11", in_channels=1, input_size=(16, 16), num_classes=4, cfg=[8, "M", 16, "M", 16])
    x = torch.randn(2, 1, 16, 16)
    small = prunekit.prune(net, x, ratio=0.5)
    assert small.prunekit_spec.transforms[0]["kind"] == "prune_plan"
    result = compress.compress_model(small, {"prune_sparsity": 0.5}, progress=False)
    loaded = compress.loads(result.data)
    assert torch.equal(loaded(x), result.model(x))
    assert sum(p.numel() for p in loaded.parameters()) == sum(p.numel() for p in small.parameters())


class _State:
    def __init__(self, model, data, out_dir):
        self.model, self.data, self.out_dir, self.masks, self.records, self.extras = model, data, out_dir, None, [], {}

    def record(self, step, **info):
        self.records.append({"step": step, **info})


def test_recipe_step_and_demo_stage(trained, data, tmp_path):
    state = _State(trained, data, tmp_path)
    cfg = compress.CompressConfig(prune_sparsity=0.8)
    compress.recipe_step(state, cfg)
    assert (tmp_path / "model.pkz").is_file() and (tmp_path / "compress_report.md").is_file()
    assert state.records[0]["step"] == "compress" and state.records[0]["ratio"] > 10
    info = compress.demo_stage(trained, data, tmp_path / "demo.pkz")
    import json
    json.dumps(info)                                  # the demo prints it with --json
    assert Path(info["path"]).stat().st_size == info["pkz_bytes"]
    assert info["ratio"] > 10 and info["dense_bytes"] > info["pkz_bytes"] and info["top1"] is not None
    again = compress.demo_stage(trained, None, tmp_path / "demo.pkz")   # no data: sharing + coding only
    assert again["top1"] is None and 3 < again["ratio"] < info["ratio"]


def test_decompressed_checkpoint_is_an_ordinary_checkpoint(trained, tmp_path):
    result = compress.compress_model(trained, None, progress=False)
    p = tmp_path / "m.pkz"
    result.save(p)
    model = compress.load(p)
    checkpoint.save(tmp_path / "m.pt", model)
    again = checkpoint.load(tmp_path / "m.pt").model
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(again(x), result.model(x))


def test_iterative_pruning_rounds_reach_the_target(trained, data):
    cfg = {"prune_sparsity": {"features.0.weight": 0.9, "features.2.weight": 0.8}, "prune_rounds": 3,
           "retrain": {"epochs": 1}}
    result = compress.compress_model(trained, cfg, data=data, progress=False)
    assert sorted(result.history) == ["retrain0", "retrain1", "retrain2"]
    kept = {n: st.mask.float().mean().item() for n, st in result.shared.items()}
    assert abs(kept["features.0.weight"] - 0.1) < 0.005 and abs(kept["features.2.weight"] - 0.2) < 0.005
    assert kept["classifier.weight"] == 1.0     # not named in the dict: left dense
    assert result.shared["classifier.weight"].layout == "dense"
