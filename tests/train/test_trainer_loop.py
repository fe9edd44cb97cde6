import json

import pytest
import torch

from prunekit import checkpoint
from prunekit.errors import CheckpointError, ConfigError, PrunekitError
from prunekit.train import Callback, EarlyStopping, LambdaCallback, TrainConfig, Trainer, evaluate, fit

FAST = dict(epochs=2, batch_size=256, lr=0.1, progress=False, num_threads=1)


def cfg(**kw):
    return TrainConfig(**{**FAST, **kw})


def weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_mnist5k_lenet5_reaches_95_percent(mnist5k):
    from prunekit import models

    torch.manual_seed(0)
    net = models.create("lenet5", num_classes=10, in_channels=1)
    hist = fit(net, mnist5k, TrainConfig(epochs=4, batch_size=64, lr=0.05, augment=False, progress=False,
                                         num_threads=1))
    assert len(hist) == 4
    assert hist[-1]["test_top1"] >= 95.0, hist[-1]
    assert evaluate(net, mnist5k.test_x, mnist5k.test_y)["top1"] == pytest.approx(hist[-1]["test_top1"])


def test_history_records(digits, make_mlp):
    hist = fit(make_mlp(), digits, cfg(batch_size=64, augment=False))
    assert [r["epoch"] for r in hist] == [0, 1]
    assert set(hist[0]) == {"epoch", "lr", "train_loss", "train_top1", "test_loss", "test_top1", "test_top5",
                            "seconds"}
    assert hist[0]["lr"] == 0.1 and hist[1]["lr"] == pytest.approx(0.05)  # cosine, per step
    assert hist[-1]["test_top1"] > 85  # chance is 10%
    assert hist.best()["test_top1"] == max(r["test_top1"] for r in hist)


@pytest.mark.parametrize("augment", [False, True])
def test_same_seed_same_weights_bit_for_bit(digits, make_mlp, augment):
    runs = []
    for seed in (0, 0, 1):
        net = make_mlp()
        fit(net, digits, cfg(seed=seed, augment=augment))
        runs.append(weights(net))
    assert same(runs[0], runs[1])
    assert not same(runs[0], runs[2])


class Recorder(Callback):
    def __init__(self, log):
        self.log = log

    def on_train_begin(self, t):
        self.log.append(("train_begin",))

    def on_epoch_begin(self, t, epoch):
        self.log.append(("epoch_begin", epoch))

    def extra_loss(self, t, outputs, targets):
        self.log.append(("extra_loss", t.global_step))

    def on_after_backward(self, t):
        self.log.append(("after_backward", t.global_step))

    def on_step_end(self, t, step):
        self.log.append(("step_end", step))

    def on_epoch_end(self, t, epoch, metrics):
        self.log.append(("epoch_end", epoch, metrics["test_top1"] is not None))

    def on_train_end(self, t):
        self.log.append(("train_end",))


def test_callbacks_called_in_order(digits, make_mlp):
    log = []
    tr = Trainer(make_mlp(), digits, cfg(), callbacks=[Recorder(log), Recorder(log)])
    tr.fit()
    spe = tr.steps_per_epoch
    assert spe == 6  # ceil(1437 / 256)
    expected = [("train_begin",)] * 2
    step = 0
    for epoch in range(2):
        expected += [("epoch_begin", epoch)] * 2
        for _ in range(spe):
            expected += [("extra_loss", step)] * 2 + [("after_backward", step)] * 2
            step += 1
            expected += [("step_end", step)] * 2
        expected += [("epoch_end", epoch, True)] * 2
    expected += [("train_end",)] * 2
    assert log == expected
    assert tr.global_step == 12


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_callback_zeroing_grads_freezes_weights(digits, make_mlp, optimizer):
    net = make_mlp()
    before = weights(net)

    class ZeroGrads(Callback):
        def on_after_backward(self, t):
            for p in t.model.parameters():
                p.grad.zero_()

    fit(net, digits, cfg(optimizer=optimizer, weight_decay=0.0), callbacks=[ZeroGrads()])
    assert same(before, weights(net))


def test_extra_loss_equals_loss_fn_with_the_same_term(digits, make_mlp):
    penalty = lambda outputs: 0.01 * outputs.square().mean()  # noqa: E731
    a, b = make_mlp(), make_mlp()
    fit(a, digits, cfg(), callbacks=[LambdaCallback(extra_loss=lambda t, o, y: penalty(o))])
    fit(b, digits, cfg(),
        loss_fn=lambda o, y: torch.nn.functional.cross_entropy(o, y) + penalty(o))
    assert same(weights(a), weights(b))
    c = make_mlp()
    fit(c, digits, cfg())
    assert not same(weights(a), weights(c))


def test_grad_edit_equals_l1_subgradient_in_the_loss(digits, make_mlp):
    # Network Slimming's updateBN: adding lam*sign(w) to the gradient == adding lam*|w|.sum() to the loss
    lam = 1e-3

    class SignGrad(Callback):
        def on_after_backward(self, t):
            w = t.model.classifier.weight
            w.grad.add_(lam * torch.sign(w.detach()))

    class L1(Callback):
        def extra_loss(self, t, outputs, targets):
            return lam * t.model.classifier.weight.abs().sum()

    a, b = make_mlp(), make_mlp()
    config = cfg(weight_decay=0.0)
    fit(a, digits, config, callbacks=[SignGrad()])
    fit(b, digits, config, callbacks=[L1()])
    assert same(weights(a), weights(b))


def test_masks_stay_zero_with_grad_and_step_hooks(digits, make_mlp):
    net = make_mlp()
    w = net.features[0].weight
    mask = (torch.arange(w.numel()).view_as(w) % 3 != 0).float()
    with torch.no_grad():
        w.mul_(mask)

    class Mask(Callback):
        def on_after_backward(self, t):
            w.grad.mul_(mask)

        def on_step_end(self, t, step):
            with torch.no_grad():
                w.mul_(mask)  # weight decay and momentum would otherwise revive pruned weights

    fit(net, digits, cfg(weight_decay=5e-4), callbacks=[Mask()])
    assert torch.count_nonzero(w[mask == 0]) == 0
    assert torch.count_nonzero(w[mask == 1]) == int(mask.sum())


def test_stop_training_mid_epoch(digits, make_mlp):
    stopper = LambdaCallback(on_step_end=lambda t, step: setattr(t, "stop_training", step >= 3 or t.stop_training))
    tr = Trainer(make_mlp(), digits, cfg(epochs=5, eval_every=0), callbacks=[stopper])
    hist = tr.fit()
    assert tr.global_step == 3 and len(hist) == 1
    assert hist[0]["test_top1"] is not None  # the last epoch run is always evaluated


def test_early_stopping(digits, make_mlp):
    es = EarlyStopping(monitor="train_loss", mode="max", patience=2)  # loss falls, so it never "improves"
    hist = fit(make_mlp(), digits, cfg(epochs=10), callbacks=[es])
    assert len(hist) == 3 and es.bad_epochs == 2


def test_eval_every(digits, make_mlp):
    hist = fit(make_mlp(), digits, cfg(epochs=5, eval_every=2))
    assert [r["test_top1"] is not None for r in hist] == [False, True, False, True, True]


def test_params_and_optimizer_factory(digits, make_mlp):
    net = make_mlp()
    before = weights(net)
    fit(net, digits, cfg(), params=net.classifier.parameters())
    after = weights(net)
    assert same({k: v for k, v in before.items() if k.startswith("features")},
                {k: v for k, v in after.items() if k.startswith("features")})
    assert not torch.equal(before["classifier.weight"], after["classifier.weight"])

    seen = {}

    def factory(model, cfg):
        seen["lr"] = cfg.lr
        return torch.optim.SGD([{"params": model.features.parameters(), "lr": cfg.lr},
                                {"params": model.classifier.parameters(), "lr": 0.0}])

    net2 = make_mlp()
    b2 = weights(net2)
    tr = Trainer(net2, digits, cfg(), optimizer_factory=factory)
    tr.fit()
    assert seen["lr"] == 0.1
    assert torch.equal(b2["classifier.weight"], net2.classifier.weight)  # its group's lr is 0 at every step
    with pytest.raises(PrunekitError, match="not both"):
        Trainer(make_mlp(), digits, cfg(), params=[], optimizer_factory=factory)


def test_checkpoints_files_and_meta(digits, make_mlp, tmp_path):
    net = make_mlp()
    tr = Trainer(net, digits, cfg(epochs=3), out_dir=tmp_path / "run", meta={"note": "x"})
    hist = tr.fit()
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "config.yaml", "history.json", "last.pt"]
    last = checkpoint.load(run / "last.pt")
    assert same(weights(last.model), weights(net))
    assert last.meta["dataset"] == "digits" and last.meta["note"] == "x"
    assert last.meta["metrics"]["test_top1"] == hist[-1]["test_top1"]
    assert last.train_state["epoch"] == 3 and last.train_state["global_step"] == 18
    best = checkpoint.load(run / "best.pt")
    assert best.train_state is None
    assert best.meta["best"]["test_top1"] == hist.best()["test_top1"]
    assert evaluate(best.model, digits.test_x, digits.test_y)["top1"] == pytest.approx(hist.best()["test_top1"])
    assert json.loads((run / "history.json").read_text()) == hist.to_list()
    assert TrainConfig.load(run / "config.yaml") == tr.config


class Interrupt(Callback):
    def __init__(self, at_epoch):
        self.at_epoch = at_epoch

    def on_epoch_begin(self, t, epoch):
        if epoch == self.at_epoch:
            raise KeyboardInterrupt


class NoisyLoss(Callback):
    """Draws from the global torch RNG every step, like dropout or MetaPruning's random encodings."""

    def extra_loss(self, t, outputs, targets):
        return 1e-2 * torch.randn(()) * outputs.mean()


@pytest.mark.parametrize("optimizer,augment", [("sgd", True), ("adam", False)])
def test_resume_equals_uninterrupted_run(digits, make_mlp, tmp_path, optimizer, augment):
    config = cfg(epochs=4, optimizer=optimizer, augment=augment, schedule="step",
                    milestones=[1, 3], warmup_epochs=0.5, lr=0.05 if optimizer == "sgd" else 0.003)
    ref = make_mlp()
    ref_hist = fit(ref, digits, config, callbacks=[EarlyStopping(patience=99), NoisyLoss()])

    net = make_mlp()
    with pytest.raises(KeyboardInterrupt):
        fit(net, digits, config, out_dir=tmp_path, callbacks=[EarlyStopping(patience=99), NoisyLoss(),
                                                            Interrupt(2)])
    assert checkpoint.read_raw(tmp_path / "last.pt")["train_state"]["epoch"] == 2

    resumed = make_mlp(seed=123)  # different starting weights: all must come from last.pt
    es = EarlyStopping(patience=99)
    hist = fit(resumed, digits, config, out_dir=tmp_path, resume=True, callbacks=[es, NoisyLoss(), Callback()])
    assert same(weights(resumed), weights(ref))
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(hist) == strip(ref_hist)
    assert es.best == max(r["test_top1"] for r in ref_hist)  # callback state came back too


def test_resume_finished_run_trains_no_more(digits, make_mlp, tmp_path):
    net = make_mlp()
    fit(net, digits, cfg(), out_dir=tmp_path)
    again = make_mlp(seed=5)
    log = []
    tr = Trainer(again, digits, cfg(), out_dir=tmp_path, resume=True, callbacks=[Recorder(log)])
    tr.fit()
    assert same(weights(again), weights(net)) and tr.global_step == 12
    assert ("step_end", 13) not in log


def test_resume_without_checkpoint_warns_and_starts_fresh(digits, make_mlp, tmp_path):
    with pytest.warns(UserWarning, match="does not exist"):
        hist = fit(make_mlp(), digits, cfg(), out_dir=tmp_path, resume=True)
    assert len(hist) == 2 and (tmp_path / "last.pt").is_file()


def test_resume_with_changed_config_warns(digits, make_mlp, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        fit(make_mlp(), digits, cfg(), out_dir=tmp_path, callbacks=[Interrupt(1)])
    with pytest.warns(UserWarning, match="lr"):
        fit(make_mlp(), digits, cfg(lr=0.2), out_dir=tmp_path, resume=True)


def test_refuses_to_overwrite_a_run(digits, make_mlp, tmp_path):
    fit(make_mlp(), digits, cfg(epochs=1), out_dir=tmp_path)
    with pytest.raises(PrunekitError, match="last.pt already exists"):
        Trainer(make_mlp(), digits, cfg(), out_dir=tmp_path)
    hist = fit(make_mlp(), digits, cfg(), out_dir=tmp_path, overwrite=True)
    assert checkpoint.read_raw(tmp_path / "last.pt")["train_state"]["epoch"] == len(hist) == 2
    other = tmp_path / "other"
    other.mkdir()
    (other / "history.json").write_text("[]")  # not ours to replace either
    with pytest.raises(PrunekitError, match="history.json already exists"):
        Trainer(make_mlp(), digits, cfg(), out_dir=other)


def test_user_errors(digits, make_mlp, tmp_path):
    plain = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    with pytest.raises(CheckpointError, match="prunekit_spec"):
        Trainer(plain, digits, cfg(), out_dir=tmp_path)
    fit(plain, digits, cfg(epochs=1))  # without out_dir a plain module is fine
    with pytest.raises(PrunekitError, match="DatasetSplits"):
        Trainer(make_mlp(), (digits.train_x, digits.train_y), cfg())
    with pytest.raises(PrunekitError, match="Callback"):
        Trainer(make_mlp(), digits, cfg(), callbacks=[object()])
    with pytest.raises(PrunekitError, match="epoch"):
        Trainer(make_mlp(), digits, {"epoch": 1})
    tr = Trainer(make_mlp(), digits, cfg(epochs=1))
    tr.fit()
    with pytest.raises(PrunekitError, match="already called"):
        tr.fit()


def test_distributed_without_launcher_is_a_config_error(digits, make_mlp, monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    threads = torch.get_num_threads()
    with pytest.raises(ConfigError, match="torchrun"):
        fit(make_mlp(), digits, cfg(distributed=True, num_threads=threads + 1))
    assert torch.get_num_threads() == threads  # restored on the error path too


def test_threads_and_determinism_flags_are_restored(digits, make_mlp):
    threads = torch.get_num_threads()
    fit(make_mlp(), digits, cfg(num_threads=2, deterministic=True, epochs=1))
    assert torch.get_num_threads() == threads
    assert not torch.are_deterministic_algorithms_enabled()


def test_fit_moves_the_model_back_to_the_device_it_came_on(digits, make_mlp, monkeypatch):
    """The model trains on the configured device and comes back to its own (faked: no second device on CI)."""
    from prunekit.train import trainer as T

    net = make_mlp()
    monkeypatch.setattr(T, "model_device", lambda m: torch.device("meta"))  # pretend it came on "meta"
    tr = Trainer(net, digits, cfg(epochs=1, device="cpu", augment=False))
    assert all(p.device.type == "cpu" for p in net.parameters())  # trained on the configured device
    tr.fit()
    assert all(p.device.type == "meta" for p in net.parameters())  # and handed back where it came from


def test_fit_on_the_same_device_leaves_the_model_there(digits, make_mlp):
    net = make_mlp()
    before = [p for p in net.parameters()]
    fit(net, digits, cfg(epochs=1, device="cpu", augment=False))
    assert all(a is b for a, b in zip(net.parameters(), before))  # the same Parameter objects
    assert all(p.device.type == "cpu" for p in net.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fit_on_cuda_returns_a_cpu_model(digits, make_mlp):
    net = make_mlp()
    fit(net, digits, cfg(epochs=1, device="cuda", augment=False))
    assert all(p.device.type == "cpu" for p in net.parameters())
