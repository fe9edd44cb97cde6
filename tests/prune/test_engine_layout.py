"""The engine's shape: plain functions, no callable modules, no import cycles, documented recipes that work."""
from __future__ import annotations

import ast
import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import prunekit

SRC = Path(prunekit.__file__).parent


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at top level or inside functions."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def test_plan_and_prune_are_plain_functions_whatever_was_imported():
    for mod in ("prunekit.engine", "prunekit.engine.options", "prunekit.engine.planner",
                "prunekit.engine.pruning_plan", "prunekit.engine.policy", "prunekit.engine.gather"):
        importlib.import_module(mod)
    from prunekit.engine import plan, prune

    assert inspect.isfunction(prunekit.plan) and inspect.isfunction(prunekit.prune)
    assert prunekit.plan is plan and prunekit.prune is prune
    assert inspect.isclass(prunekit.PlanOptions) and inspect.isclass(prunekit.PruningPlan)


def test_no_module_replaces_its_own_class():
    offenders = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                 if re.search(r"sys\.modules\[[^\]]+\]\.__class__\s*=", p.read_text())]
    assert offenders == []


def test_spec_is_a_leaf_and_checkpoint_models_plan_planner_do_not_import_each_other():
    spec = {m for m in _imports(SRC / "spec.py") if m.startswith("prunekit")}
    assert spec <= {"prunekit.errors", "prunekit.errors.CheckpointError"}, spec
    for path in (SRC / "models").rglob("*.py"):
        assert not any(m.startswith("prunekit.checkpoint") for m in _imports(path)), path
    assert not any(m.startswith("prunekit.engine.planner") for m in _imports(SRC / "engine" / "pruning_plan.py"))
    assert not any(m.startswith("prunekit.checkpoint") for p in (SRC / "engine").glob("*.py") for m in _imports(p))


def test_checkpoint_with_a_prune_plan_loads_in_a_fresh_process(tmp_path):
    # checkpoints store only the transform kind "prune_plan"; loading must find the engine by itself
    from prunekit import checkpoint, models

    torch.manual_seed(0)
    net = models.create("resnet20", num_classes=10, in_channels=3, input_size=(16, 16)).eval()
    small = prunekit.prune(net, torch.randn(1, 3, 16, 16), ratio=0.5)
    path = checkpoint.save(tmp_path / "small.pt", small)
    x = torch.ones(1, 3, 16, 16)
    torch.save(small(x), tmp_path / "out.pt")
    code = ("import sys, torch; from prunekit import checkpoint; "
            f"ck = checkpoint.load({str(path)!r}); "
            "assert 'prunekit.engine.planner' not in sys.modules; "
            f"print(torch.equal(ck.model(torch.ones(1, 3, 16, 16)), torch.load({str(tmp_path / 'out.pt')!r})), "
            "ck.spec.transforms[-1]['kind'])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "prune_plan"]


@pytest.mark.parametrize("module", ["prunekit.recipe", "docs/compress.md", "README.md"])
def test_documented_recipe_prune_steps_are_valid(module):
    """Every ``- prune: {...}`` line of the recipe docs parses as the recipe step's options."""
    import yaml

    from prunekit.recipe import get_step

    if module.endswith(".md"):
        text = (SRC.parents[1] / module).read_text()
    else:
        text = importlib.import_module(module).__doc__
    lines = re.findall(r"^\s*- (prune: \{.*\})", text, flags=re.M)
    assert lines, module
    step = get_step("prune")
    for line in lines:
        params = yaml.safe_load(line.split("#")[0])["prune"]
        step.config_cls.from_dict(params)  # raises ConfigError naming the key when a doc is wrong
