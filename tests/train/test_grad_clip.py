"""grad_clip: a fine-tuning option added as one dataclass field plus its use in the Trainer.

It is the refactor's proof (issue 13): no family, command or recipe needed code of its own
for the option to reach every one of them.
"""
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from prunekit.errors import ConfigError
from prunekit.train import FinetuneConfig, run_finetune


def _tiny(digits, n=16):
    return dataclasses.replace(digits, train_x=digits.train_x[:n], train_y=digits.train_y[:n],
                               test_x=digits.test_x[:8], test_y=digits.test_y[:8])


@pytest.mark.parametrize("clip", [None, 0.05])
def test_one_sgd_step_uses_the_clipped_gradient(digits, clip):
    data = _tiny(digits)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    w0, b0 = net[1].weight.detach().clone(), net[1].bias.detach().clone()
    # the expected step, by hand: plain SGD (no momentum, no decay, constant rate) on the clipped gradient
    ref = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    ref.load_state_dict(net.state_dict())
    F.cross_entropy(ref(data.train_x), data.train_y).backward()
    gw, gb = ref[1].weight.grad, ref[1].bias.grad
    norm = torch.sqrt(gw.pow(2).sum() + gb.pow(2).sum())
    scale = 1.0 if clip is None else min(1.0, clip / (float(norm) + 1e-6))
    assert clip is None or scale < 0.5          # the test clips for real
    lr = 0.5
    cfg = FinetuneConfig(epochs=1, batch_size=16, lr=lr, momentum=0.0, weight_decay=0.0, schedule="constant",
                         grad_clip=clip, augment=False, progress=False, checkpoint_every=0)
    run_finetune(net, data, cfg)
    torch.testing.assert_close(net[1].weight.detach(), w0 - lr * scale * gw, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(net[1].bias.detach(), b0 - lr * scale * gb, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), True])
def test_grad_clip_must_be_positive(bad):
    with pytest.raises(ConfigError, match="grad_clip"):
        FinetuneConfig(grad_clip=bad)


def test_every_fine_tuning_command_got_the_flag_and_recipes_the_key():
    from prunekit.cli import build_parser, cmd_sparsify, prune_methods
    from prunekit.config import from_dict
    from prunekit.methods import METHODS

    p = build_parser()
    a = p.parse_args(["prune", "ck.pt", "--method", "l1", "--data", "digits", "--finetune-grad-clip", "2.5"])
    assert prune_methods.resolve(a)[2].finetune.grad_clip == 2.5
    a = p.parse_args(["sparsify", "ck.pt", "--method", "agp", "--data", "digits", "--out", "o",
                      "--finetune-grad-clip", "1"])
    assert cmd_sparsify.build_config("agp", a).finetune.grad_clip == 1.0
    from prunekit.cli import cmd_train

    a = p.parse_args(["train", "--model", "lenet5", "--data", "digits", "--out", "o", "--grad-clip", "0.5",
                      "--no-augment", "--lr", "0.1"])
    cfg = cmd_train.build_config(a)
    assert (cfg.grad_clip, cfg.augment, cfg.lr) == (0.5, False, 0.1)
    info = METHODS.get("magnitude")
    assert from_dict(info.config_cls, {"finetune": {"grad_clip": 3}}).finetune.grad_clip == 3.0
