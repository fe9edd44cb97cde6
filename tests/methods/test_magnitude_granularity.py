"""``prunekit sparsify --method magnitude --granularity kernel|pattern|nm`` end to end, and the config/recipe path."""
import json

import pytest
import torch

from prunekit.errors import ConfigError


@pytest.fixture(scope="module")
def conv_ckpt(tmp_path_factory):
    from prunekit import checkpoint, models

    torch.manual_seed(0)
    net = models.create("convnet3", num_classes=10, in_channels=1, input_size=(8, 8))
    path = tmp_path_factory.mktemp("ck") / "conv.pt"
    checkpoint.save(path, net)
    return path


def cli(*args) -> int:
    import prunekit.cli as c

    return c.main(["sparsify", *map(str, args)])


def test_nm_cli_masks_survive_retraining(conv_ckpt, tmp_path, capsys):
    out = tmp_path / "nm"
    assert cli(conv_ckpt, "--method", "magnitude", "--granularity", "nm", "--nm", "2:4", "--epochs", "1",
               "--data", "digits", "--out", out, "--no-progress", "--json") == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["final"]["sparsity"] == pytest.approx(0.5, abs=0.01)
    from prunekit.sparse import load_with_masks

    ck, masks = load_with_masks(out / "model.pt")
    w = dict(ck.model.named_parameters())
    # conv2 (64 <- 32 channels): for every output and kernel position, groups of 4 input channels keep exactly 2
    m2 = masks["conv2.weight"]
    assert (m2.permute(0, 2, 3, 1).reshape(64, 3, 3, 8, 4).sum(-1) == 2).all()
    # after a retraining epoch the pruned weights are still exactly zero
    assert (w["conv2.weight"][~m2] == 0).all()
    assert ck.meta["sparsify"]["config"]["granularity"] == "nm"


def test_kernel_cli_removes_whole_kernels(conv_ckpt, tmp_path, capsys):
    out = tmp_path / "k"
    assert cli(conv_ckpt, "--method", "magnitude", "--granularity", "kernel", "--sparsity", "0.75",
               "--epochs", "1", "--data", "digits", "--out", out, "--no-progress", "--json") == 0
    capsys.readouterr()
    from prunekit.sparse import load_with_masks

    ck, masks = load_with_masks(out / "model.pt")
    k = masks["conv3.weight"].reshape(64 * 64, 9)
    assert (k.all(1) | ~k.any(1)).all() and int(k.all(1).sum()) == 64 * 64 // 4
    assert (ck.model.conv3.weight.detach().reshape(-1, 9)[~k.all(1)] == 0).all()


def test_config_round_trips_and_rejects_bad_combinations():
    from prunekit.config import from_dict, to_dict
    from prunekit.methods.magnitude import MagnitudeConfig

    cfg = MagnitudeConfig(sparsity=0.5, granularity="pattern", patterns=4)
    assert from_dict(MagnitudeConfig, to_dict(cfg)) == cfg
    assert MagnitudeConfig(granularity="nm", nm="1:4").nm_sparsity() == 0.75
    with pytest.raises(ConfigError, match="scope 'layer'"):
        MagnitudeConfig(granularity="kernel", scope="global")
    with pytest.raises(ConfigError, match="rounds must be 1"):
        MagnitudeConfig(granularity="nm", schedule="iterative", rounds=2)
    with pytest.raises(ConfigError, match="nm"):
        MagnitudeConfig(granularity="nm", nm="4:2")


def test_recipe_sparsify_step_accepts_granularity():
    from prunekit.recipe_steps import SparsifyStepConfig

    SparsifyStepConfig(method="magnitude", config={"granularity": "nm", "nm": "2:4"})
    with pytest.raises(ConfigError):
        SparsifyStepConfig(method="magnitude", config={"granularity": "block"})
