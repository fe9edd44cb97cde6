"""Exact values of the BWN / XNOR-Net math on tiny inputs."""
import pytest
import torch
import torch.nn.functional as F

from prunekit.binary import functional as BF


def test_sign_maps_zero_to_plus_one():
    x = torch.tensor([-3.0, -1e-9, -0.0, 0.0, 1e-9, 2.0, float("nan")])
    assert BF.sign(x).tolist() == [-1.0, -1.0, 1.0, 1.0, 1.0, 1.0, -1.0]
    assert BF.sign(x.double()).dtype == torch.float64


def test_ste_gradient_is_clipped_identity():
    x = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.0001, 3.0], requires_grad=True)
    y = BF.SignSTE.apply(x)
    assert y.tolist() == [-1, -1, -1, 1, 1, 1, 1, 1]
    (y * torch.arange(1.0, 9.0)).sum().backward()
    assert x.grad.tolist() == [0.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0, 0.0]


def test_sign_ste_without_grad_is_plain_sign():
    x = torch.tensor([-0.5, 0.5])
    assert BF.sign_ste(x).tolist() == [-1.0, 1.0]


def test_weight_alpha_is_mean_abs_per_output_channel():
    w = torch.tensor([[[[1.0, -2.0], [3.0, -4.0]]], [[[0.5, 0.5], [-0.5, 0.5]]]])
    assert BF.weight_alpha(w).tolist() == [2.5, 0.5]
    # alpha* = ||W||_1 / n minimises ||W - alpha sign(W)||^2 (seed 004): check against neighbours
    b = BF.sign(w[0])
    err = lambda a: float(((w[0] - a * b) ** 2).sum())  # noqa: E731
    assert err(2.5) < err(2.4) and err(2.5) < err(2.6)


def test_activation_scale_map_matches_seed_definition():
    # A(i,j) = sum_c |I(c,i,j)|, K = A * k with k_ij = 1/(c*kh*kw)
    x = torch.tensor([[[[1.0, -2.0, 3.0], [0.0, 4.0, -1.0], [2.0, 2.0, -2.0]],
                       [[-1.0, 0.0, 1.0], [1.0, -1.0, 0.0], [0.0, 3.0, 1.0]]]])
    k = BF.activation_scale_map(x, 2)
    a = x.abs().sum(1)[0]
    expect = torch.tensor([[a[0:2, 0:2].sum(), a[0:2, 1:3].sum()], [a[1:3, 0:2].sum(), a[1:3, 1:3].sum()]]) / 8
    assert k.shape == (1, 1, 2, 2)
    torch.testing.assert_close(k[0, 0], expect, rtol=0, atol=1e-6)
    # padding counts |0| and keeps the divisor c*kh*kw
    kp = BF.activation_scale_map(x, 3, padding=1)
    assert kp[0, 0, 0, 0].item() == pytest.approx(float(a[0:2, 0:2].sum()) / 18)


def test_bwn_conv_forward_and_weight_gradient_exact():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    w = torch.tensor([[[[0.5, -0.25], [-2.0, 0.25]]]], requires_grad=True)
    y = BF.bwn_conv2d(x, w)
    alpha = (0.5 + 0.25 + 2.0 + 0.25) / 4  # 0.75
    assert y.item() == pytest.approx(alpha * (1 - 2 - 3 + 4))
    y.backward()
    # d/dW [alpha(W) * <x, sign(W)>]: (1/n) sign(W) <x, sign(W)> + alpha * x * 1{|W| <= 1}
    dot = 1 - 2 - 3 + 4
    expect = torch.tensor([[[[0.25 * dot + alpha * 1, -0.25 * dot + alpha * 2],
                             [-0.25 * dot + 0.0, 0.25 * dot + alpha * 4]]]])
    torch.testing.assert_close(w.grad, expect)


def test_xnor_conv_equals_manual_formula():
    torch.manual_seed(0)
    x, w, b = torch.randn(2, 3, 5, 4), torch.randn(4, 3, 3, 3), torch.randn(4)
    y = BF.xnor_conv2d(x, w, b, stride=1, padding=1)
    ints = F.conv2d(BF.sign(x), BF.sign(w), padding=1)
    assert torch.equal(ints, ints.round())  # exact integers
    k = BF.activation_scale_map(x, 3, 1, 1)
    manual = ints * BF.weight_alpha(w).view(1, -1, 1, 1) * k + b.view(1, -1, 1, 1)
    assert torch.equal(y, manual)


def test_xnor_linear_gradient_reaches_input_through_ste_and_beta():
    x = torch.tensor([[0.5, -2.0]], requires_grad=True)
    w = torch.tensor([[1.0, 1.0]])
    y = BF.xnor_linear(x, w)
    beta, alpha = 1.25, 1.0
    assert y.item() == pytest.approx(alpha * beta * (1 - 1))
    y.backward()
    # y = alpha * beta(x) * (sign(x0) + sign(x1)); d/dx0 = alpha*(sign(x0)/2)*0 + alpha*beta*1{|x0|<=1}
    assert x.grad.tolist() == [[pytest.approx(1.25), pytest.approx(0.0)]]


def test_scale_output_order_is_fixed():
    y = torch.tensor([[[[3.0]], [[-1.0]]]])
    out = BF.scale_output(y, torch.tensor([2.0, 0.5]), torch.tensor([[[[0.1]]]]), torch.tensor([1.0, -1.0]))
    assert out.flatten().tolist() == [pytest.approx(3 * 2 * 0.1 + 1), pytest.approx(-1 * 0.5 * 0.1 - 1)]
