"""The demo's Deep Compression stage keeps accuracy (issue 16): within 0.5 point of the pruned model it compresses.

Measured with the default settings (2026-12-03): -0.2, -0.1, -0.3 point (seeds 0, 1, 2; 2 threads), -0.1 and +0.6 (seeds 0, 3; 1 thread).

Runs the whole default ``prunekit demo`` (about 15 s on an idle 2-core machine) and reads its report.json.
"""
import json

from prunekit.cli import main
from prunekit.compress import demo_sparsity
from prunekit import models


def test_demo_final_stage_keeps_the_pruned_models_accuracy(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--no-progress", "--json"]) == 0
    capsys.readouterr()
    rep = json.loads((out / "report.json").read_text())
    pruned, compressed = rep["pruned"]["top1"], rep["compressed"]["top1"]
    assert compressed >= pruned - 0.5, (pruned, compressed, rep["compressed"]["report"]["accuracy"])
    assert rep["compressed"]["top1_before"] == pruned  # the stage starts from the pruned, fine-tuned model
    assert rep["compressed"]["ratio"] > 8              # and still compresses it


def test_demo_sparsity_spares_the_small_first_and_last_layers():
    net = models.create("lenet5", in_channels=1, input_size=(28, 28))
    assert demo_sparsity(net) == {"conv1.weight": 0.2, "conv2.weight": 0.0, "fc1.weight": 0.7,
                                  "fc2.weight": 0.7, "fc3.weight": 0.4}
    mlp = models.create("lenet300_100", in_channels=1, input_size=(28, 28))
    assert demo_sparsity(mlp, {"fc": 0.9}) == {"features.0.weight": 0.9, "features.2.weight": 0.9,
                                               "classifier.weight": 0.4}
