"""Centroid fine-tuning: each centroid's gradient is the sum of its weights' gradients."""
import torch
from torch import nn

from prunekit.compress import CompressConfig, share_weights
from prunekit.compress.finetune import CentroidFinetune, centroid_grads, centroids_from_weight


def test_centroid_grads_exact():
    g = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    a = torch.tensor([[0, 1], [0, 2]])
    m = torch.tensor([[True, True], [True, False]])
    assert centroid_grads(g, a, m, 3).tolist() == [4.0, 2.0, 0.0]


def test_centroids_from_weight_means_and_keeps_empty():
    w = torch.tensor([1.0, 3.0, 5.0, 0.0])
    a = torch.tensor([0, 0, 1, 2])
    m = torch.tensor([True, True, True, False])
    cb = torch.tensor([9.0, 9.0, 7.0, 0.0])
    assert centroids_from_weight(w, a, m, cb, 3).tolist() == [2.0, 5.0, 7.0, 0.0]


class _Trainer:
    def __init__(self, model):
        self.model = model


def test_one_sgd_step_moves_each_centroid_by_lr_times_summed_grad():
    torch.manual_seed(0)
    lin = nn.Linear(6, 3, bias=False)
    net = nn.Sequential(lin)
    masks = {"0.weight": torch.rand(3, 6) > 0.3}
    shared = share_weights(net, masks, CompressConfig(bits_fc=2, layout="dense"))
    st = shared["0.weight"]
    cb = CentroidFinetune(shared)
    tr = _Trainer(net)
    cb.on_train_begin(tr)
    before = st.codebook.clone()
    x = torch.randn(4, 6)
    net(x).pow(2).sum().backward()
    expected_grad = centroid_grads(lin.weight.grad, st.assignments, st.mask, len(before))
    cb.on_after_backward(tr)
    lr = 0.1
    torch.optim.SGD(net.parameters(), lr=lr).step()
    cb.on_step_end(tr, 1)
    n = st.n_learned
    assert torch.allclose(st.codebook[:n], before[:n] - lr * expected_grad[:n], atol=1e-6)
    assert st.codebook[st.zero_code] == 0
    # weights stay exactly shared, pruned weights stay zero
    assert torch.equal(lin.weight.detach(), st.weight())
    assert torch.all(lin.weight[~masks["0.weight"]] == 0)


def test_finetune_with_trainer_improves_loss_and_keeps_sharing():
    from prunekit.data import load_dataset
    from prunekit.train import TrainConfig, evaluate, fit

    torch.manual_seed(0)
    data = load_dataset("synthetic", num_samples=200, shape=(1, 8, 8))
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    fit(net, data, TrainConfig(epochs=3, lr=0.05, progress=False, augment=False, checkpoint_every=0))
    shared = share_weights(net, config=CompressConfig(bits_fc=2))
    cb = CentroidFinetune(shared)
    cb.on_train_begin(_Trainer(net))
    loss_before = evaluate(net, data.train_x, data.train_y)["loss"]
    fit(net, data, TrainConfig(epochs=2, lr=0.001, progress=False, augment=False, checkpoint_every=0,
                               weight_decay=0.0), callbacks=[cb])
    loss_after = evaluate(net, data.train_x, data.train_y)["loss"]
    assert loss_after < loss_before
    for name, st in cb.shared.items():
        w = dict(net.named_parameters())[name]
        assert torch.equal(w.detach(), st.weight())
        assert len(torch.unique(w.detach())) <= 4
