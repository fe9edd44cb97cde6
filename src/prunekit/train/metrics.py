"""Accuracy and loss of a classifier on in-memory tensors.

Example:
    >>> import torch
    >>> net = torch.nn.Linear(4, 3)
    >>> r = evaluate(net, torch.randn(10, 4), torch.randint(0, 3, (10,)))
    >>> sorted(r)
    ['loss', 'n', 'top1', 'top5']
"""
from __future__ import annotations

from prunekit.errors import PrunekitError


def topk_correct(logits, targets, ks=(1, 5)) -> list:
    """Number of rows whose target is among the ``k`` largest logits, for each ``k``.

    Returns 0-dim tensors (no host sync, so this is cheap inside a training loop).
    ``k`` larger than the number of classes counts every row as correct.
    """
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices  # (N, kmax)
    hit = top.eq(targets.view(-1, 1))
    return [hit[:, : min(k, kmax)].any(dim=1).sum() for k in ks]


def _check_xy(x, y) -> None:
    if x.shape[0] != y.shape[0]:
        raise PrunekitError(f"evaluate: {x.shape[0]} inputs but {y.shape[0]} labels")
    if x.shape[0] == 0:
        raise PrunekitError("evaluate: empty input (0 samples)")


def model_device(model):
    """The device of ``model``'s first parameter (or buffer); CPU for a module with neither."""
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    import torch

    return torch.device("cpu")


def eval_sums(model, x, y, batch_size: int = 512, device=None):
    """Sums behind :func:`evaluate`: ``(tensor [loss_sum, top1_count, top5_count, n], num_outputs)``.

    The tensor is float64 on ``device``; it is split out so distributed evaluation
    can all-reduce the sums before dividing. The model's train/eval mode is left as
    it was found.
    """
    import torch
    import torch.nn.functional as F

    _check_xy(x, y)
    device = torch.device(device) if device is not None else model_device(model)
    was_training = model.training
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=device)
    num_outputs = 0
    try:
        with torch.inference_mode():
            for i in range(0, x.shape[0], batch_size):
                xb = x[i:i + batch_size].to(device, non_blocking=True)
                yb = y[i:i + batch_size].to(device, non_blocking=True)
                out = model(xb)
                if out.dim() != 2:
                    raise PrunekitError(f"evaluate: the model must return logits (N, classes), got shape "
                                        f"{tuple(out.shape)}")
                num_outputs = int(out.shape[1])
                c1, c5 = topk_correct(out, yb, (1, 5))
                sums[0] += F.cross_entropy(out.float(), yb, reduction="sum").double()
                sums[1] += c1
                sums[2] += c5
                sums[3] += yb.shape[0]
    finally:
        model.train(was_training)
    return sums, num_outputs


def sums_to_metrics(sums, num_classes: int) -> dict:
    """``{"top1": %, "top5": % or None, "loss": mean, "n": count}`` from :func:`eval_sums` output.

    Top-5 is reported only when there are at least 5 classes (otherwise it is trivially 100%).
    """
    loss, c1, c5, n = (float(v) for v in sums.tolist())
    n_int = int(round(n))
    return {"top1": 100.0 * c1 / n, "top5": 100.0 * c5 / n if num_classes >= 5 else None,
            "loss": loss / n, "n": n_int}


def evaluate(model, x, y, batch_size: int = 512, device=None) -> dict:
    """Top-1/top-5 accuracy (percent) and mean cross-entropy of ``model`` on ``(x, y)``.

    Runs in eval mode under ``torch.inference_mode()`` and restores the model's mode.

    Args:
        model: a classifier returning logits ``(N, num_classes)``.
        x, y: inputs and int64 labels (CPU or device tensors).
        batch_size: samples per forward pass.
        device: where to run; defaults to the device of the model's parameters.

    Returns:
        ``{"top1": float, "top5": float | None, "loss": float, "n": int}``; ``top5`` is
        None when the model has fewer than 5 outputs.
    """
    if batch_size < 1:
        raise PrunekitError(f"evaluate: batch_size must be >= 1, got {batch_size}")
    sums, num_outputs = eval_sums(model, x, y, batch_size, device)
    return sums_to_metrics(sums, num_outputs)


def predict(model, x, batch_size: int = 512, device=None, logits: bool = False):
    """Predicted class indices (int64, on CPU) for ``x``; ``logits=True`` returns the raw outputs.

    Runs in eval mode under ``torch.inference_mode()`` and restores the model's mode.
    """
    import torch

    if x.shape[0] == 0:
        raise PrunekitError("predict: empty input (0 samples)")
    device = torch.device(device) if device is not None else model_device(model)
    was_training = model.training
    model.eval()
    outs = []
    try:
        with torch.inference_mode():
            for i in range(0, x.shape[0], batch_size):
                out = model(x[i:i + batch_size].to(device, non_blocking=True))
                outs.append((out if logits else out.argmax(dim=1)).cpu())
    finally:
        model.train(was_training)
    return torch.cat(outs)
