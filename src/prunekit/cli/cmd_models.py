"""``prunekit models``: list the model zoo."""
from __future__ import annotations

import json


def add_parser(subparsers):
    """Register the ``models`` sub-command."""
    p = subparsers.add_parser(
        "models", help="list the registered model architectures",
        description="List the model zoo: registry name, intended input size, smallest input, paper. "
                    "Build one with prunekit.models.create(NAME, num_classes=..., in_channels=...).")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return p


def run(args) -> int:
    """List the registry."""
    from prunekit import models

    rows = []
    for name in models.list_models():
        info = models.model_info(name)
        rows.append({"name": name, "input_size": list(info.input_size),
                     "min_input_size": list(info.min_input_size), "paper": info.paper,
                     "tags": list(info.tags)})
    if args.json:
        print(json.dumps({"models": rows}))
        return 0
    width = max(len(r["name"]) for r in rows) if rows else 4
    print(f"{'name':<{width}}  {'input':>9}  {'min':>7}  paper")
    for r in rows:
        inp = "x".join(map(str, r["input_size"]))
        mn = "x".join(map(str, r["min_input_size"]))
        print(f"{r['name']:<{width}}  {inp:>9}  {mn:>7}  {r['paper']}")
    return 0
