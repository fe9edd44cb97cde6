"""``prunekit run RECIPE.yaml``: run a whole pipeline described in YAML."""
from __future__ import annotations

import json


def add_parser(subparsers):
    """Register the ``run`` sub-command."""
    from prunekit.recipe import step_names

    p = subparsers.add_parser(
        "run", help="run a YAML recipe (train, prune, fine-tune, sparsify, compress, binarize, eval)",
        description="Run the steps of a YAML recipe in order and write the final model, the recipe, "
                    "report.json and report.md into the recipe's 'out' directory. "
                    f"Steps: {', '.join(step_names())}. See README.md, section 'Recipes'.")
    p.add_argument("recipe", help="path of the YAML recipe")
    p.add_argument("--overwrite", action="store_true",
                   help="reuse an output directory that already holds files (the previous run's outputs are removed)")
    p.add_argument("--check", action="store_true", help="only validate the recipe and print its steps")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--json", action="store_true", help="print the final records as one JSON object")
    from prunekit.cli.trust import add_trust_flag

    add_trust_flag(p)
    return p


def run(args) -> int:
    """Validate, then run, the recipe."""
    from prunekit.recipe import Recipe, run_recipe
    from prunekit.runs import command_line

    recipe = Recipe.from_yaml(args.recipe)
    if args.check:
        print(json.dumps(recipe.to_dict(), indent=2))
        return 0
    from prunekit.cli.trust import trusted

    state = run_recipe(recipe, overwrite=args.overwrite, progress=not args.no_progress,
                       provenance={"command": command_line(args)}, trusted_factories=trusted(args))
    if args.json:
        print(json.dumps({"out": str(state.out_dir), "records": state.records}))
    else:
        print(f"done: {state.out_dir}/model.pt, report in {state.out_dir}/report.md")
    return 0
