"""Architecture rules of src/prunekit, checked on the source with ``ast`` (nothing is imported).

The rules (README, "Architecture"; issue 13):

(a) no module replaces its own class (``sys.modules[__name__].__class__ = ...``): public entry points are
    plain functions, not callable modules;
(b) no import of an underscore-named module or name from another top-level package of prunekit
    (``prunekit.cli`` importing ``prunekit.measure._utils``); inside one package it is fine;
(c) no import cycle between top-level units of prunekit (a subpackage such as ``models/``, or a top-level
    module such as ``checkpoint.py``), counting imports inside functions too: a lazy import still couples
    the two units both ways;
(d) every third-party module imported anywhere is a declared dependency in pyproject.toml (a required one,
    or an optional extra, which may only be imported inside functions so that ``import prunekit.x`` works
    without the extra);
and progress bars all go through ``prunekit.utils.progress`` (no carriage-return frames in log files).

``ALLOWED`` lists the violations that remain in files other helpers are changing in the same refactor. Each
entry names its owner; the coordinator deletes an entry when that work is merged, and the test then keeps the
rule. Nothing else may be added there: fix the code instead.
"""
from __future__ import annotations

import ast
import functools
import re
import sys
import tomllib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "prunekit"

# ---- the allow-list: known violations in files that other helpers own right now -----------------------------
# (rule, file relative to src/prunekit, what): every entry must still match something, so a fixed violation
# cannot linger here unnoticed (see test_allow_list_is_not_stale).
ALLOWED = {
}

# distribution name in pyproject.toml -> the import names it provides (where they differ from the name)
IMPORT_NAMES = {"scikit-learn": {"sklearn"}, "pillow": {"PIL"}, "pyyaml": {"yaml"}}


@dataclass(frozen=True)
class Import:
    file: str          # path relative to src/prunekit
    importer: str      # the importing module (``prunekit.cli.cmd_eval``)
    line: int
    module: str        # absolute module imported (``prunekit.measure._utils``, ``numpy``)
    names: tuple       # names imported from it (``from m import a, b``), empty for ``import m``
    lazy: bool         # inside a function (or method) body


def _module_name(path: Path, src: Path) -> str:
    rel = path.relative_to(src.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, src: Path) -> list[Import]:
    tree = ast.parse(path.read_text(), filename=str(path))
    me = _module_name(path, src)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    rel = str(path.relative_to(src))
    out: list[Import] = []

    def visit(node, lazy: bool):
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                out.extend(Import(rel, me, child.lineno, a.name, (), lazy) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - child.level + 1]
                    module = ".".join(base + ([child.module] if child.module else []))
                else:
                    module = child.module or ""
                out.append(Import(rel, me, child.lineno, module, tuple(a.name for a in child.names), lazy))
            visit(child, inner)

    visit(tree, False)
    return out


def _files(src: Path) -> list[Path]:
    return sorted(p for p in src.rglob("*.py") if "__pycache__" not in p.parts)


def _unit(module: str) -> str:
    """The top-level unit of a prunekit module: ``prunekit.measure._utils`` -> ``prunekit.measure``."""
    return ".".join(module.split(".")[:2])


def _private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def _found() -> tuple[dict[tuple, list[str]], list[Import]]:
    """Violations of rules (a) and (b) as ``(rule, file, what) -> [where, ...]``, and every import."""
    return _scan(SRC)


@functools.lru_cache(maxsize=None)  # the tree is parsed once per session, not once per test
def _scan(src: Path) -> tuple[dict[tuple, list[str]], list[Import]]:
    found: dict[tuple, list[str]] = defaultdict(list)
    all_imports = []
    for path in _files(src):
        rel = str(path.relative_to(src))
        tree = ast.parse(path.read_text(), filename=str(path))
        # (a) sys.modules[...].__class__ = ...
        for node in ast.walk(tree):
            if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    if (isinstance(t, ast.Attribute) and t.attr == "__class__"
                            and "sys.modules" in ast.unparse(t.value)):
                        found[("a", rel, "self-replacing module")].append(f"{rel}:{node.lineno}")
        all_imports += _imports(path, src)

    for imp in all_imports:
        if not (imp.module == "prunekit" or imp.module.startswith("prunekit.")):
            continue
        # (b) a private module, or a private name, from another top-level unit
        me = _unit(imp.importer)
        module_private = any(_private(p) for p in imp.module.split(".")[1:])
        if module_private and _unit(imp.module) != me:
            found[("b", imp.file, imp.module)].append(f"{imp.file}:{imp.line}")
        for name in imp.names:
            target = f"{imp.module}.{name}"
            if not module_private and _private(name) and _unit(target) != me:
                found[("b", imp.file, target)].append(f"{imp.file}:{imp.line}")
    return dict(found), all_imports


def _unit_edges(all_imports) -> dict[tuple[str, str], list[Import]]:
    """(importer unit, imported unit) -> the imports that make the edge; the package root is left out."""
    edges: dict[tuple[str, str], list[Import]] = defaultdict(list)
    for imp in all_imports:
        if not imp.module.startswith("prunekit."):
            if imp.module == "prunekit":  # ``from prunekit import checkpoint``: each name is a unit
                for n in imp.names:
                    if not n.startswith("__"):
                        src, dst = _unit(imp.importer), f"prunekit.{n}"
                        if src != dst and src != "prunekit":
                            edges[(src, dst)].append(imp)
            continue
        src, dst = _unit(imp.importer), _unit(imp.module)
        if src != dst and src != "prunekit":
            edges[(src, dst)].append(imp)
    return edges


def _cycles(edges) -> list[list[str]]:
    """Strongly connected components with more than one unit (Tarjan), each sorted."""
    graph = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
    index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in sorted(set(graph) | {b for bs in graph.values() for b in bs}):
        if v not in index:
            strong(v)
    return comps


def _allowed_edge(imp: Import) -> bool:
    return ("c", imp.file, imp.module) in ALLOWED or any(
        ("c", imp.file, f"{imp.module}.{n}") in ALLOWED for n in imp.names)


def _declared() -> tuple[set[str], set[str]]:
    """Import names of the required dependencies and of the optional extras in pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(reqs):
        out = set()
        for r in reqs:
            dist = re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].strip().lower()
            out |= IMPORT_NAMES.get(dist, {dist.replace("-", "_")})
        return out

    required = names(project.get("dependencies", []))
    extras = set()
    for reqs in project.get("optional-dependencies", {}).values():
        extras |= names(reqs)
    return required, extras - required


# ---- the tests ------------------------------------------------------------------------------------------------


def _report(violations: dict, rule: str) -> list[str]:
    return [f"{what} ({', '.join(where)})" for (r, f, what), where in sorted(violations.items())
            if r == rule and (r, f, what) not in ALLOWED]


def test_a_no_module_replaces_its_own_class():
    found, _ = _found()
    assert _report(found, "a") == [], "callable-module trick; export plain functions instead"


def test_b_no_private_imports_across_packages():
    found, _ = _found()
    bad = _report(found, "b")
    assert bad == [], "give what other packages need a public name:\n" + "\n".join(bad)


def test_c_no_import_cycles_between_packages():
    _, all_imports = _found()
    edges = {k: [i for i in v if not _allowed_edge(i)] for k, v in _unit_edges(all_imports).items()}
    edges = {k: v for k, v in edges.items() if v}
    cycles = _cycles(edges)
    detail = []
    for comp in cycles:
        for (a, b), imps in sorted(edges.items()):
            if a in comp and b in comp:
                detail.append(f"{a} -> {b}: " + ", ".join(f"{i.file}:{i.line}" for i in imps))
    assert cycles == [], "import cycles between top-level units:\n" + "\n".join(detail)


def test_d_third_party_imports_are_declared_dependencies():
    required, extras = _declared()
    _, all_imports = _found()
    stdlib = set(sys.stdlib_module_names)
    bad = []
    for imp in all_imports:
        top = imp.module.split(".")[0]
        if not top or top == "prunekit" or top in stdlib or top == "__future__":
            continue
        if ("d", imp.file, top) in ALLOWED:
            continue
        if top in required:
            continue
        if top in extras and imp.lazy:
            continue
        why = "an optional extra imported at module level" if top in extras else "not declared in pyproject.toml"
        bad.append(f"{imp.file}:{imp.line}: {imp.module} ({why})")
    assert bad == [], "\n".join(bad)


def test_progress_bars_go_through_one_helper():
    """tqdm is imported only by utils/progress.py, which keeps bars off when stderr is not a terminal."""
    _, all_imports = _found()
    bad = [f"{i.file}:{i.line}" for i in all_imports
           if i.module.split(".")[0] == "tqdm" and i.file != "utils/progress.py"]
    assert bad == [], "use prunekit.utils.progress.progress_bar: " + ", ".join(bad)


def test_allow_list_is_not_stale():
    """Every ALLOWED entry still matches a violation (delete it once its owner's work is merged)."""
    found, all_imports = _found()
    stale = []
    for (rule, file, what), owner in ALLOWED.items():
        if rule in ("a", "b"):
            hit = (rule, file, what) in found
        elif rule == "c":
            hit = any(i.file == file and (i.module == what or any(f"{i.module}.{n}" == what for n in i.names))
                      for i in all_imports)
        else:
            hit = any(i.file == file and i.module.split(".")[0] == what for i in all_imports)
        if not hit:
            stale.append(f"{rule} {file} {what} (owner: {owner})")
    assert stale == [], "allow-list entries that no longer match anything; delete them:\n" + "\n".join(stale)


# ---- the checks themselves catch what they claim to (on small sources, not the tree) ------------------------


def test_checks_catch_examples(tmp_path, monkeypatch):
    pkg = tmp_path / "prunekit"
    for rel, text in {
        "__init__.py": "",
        "a/__init__.py": "",
        "a/_private.py": "x = 1\n",
        "a/mod.py": "from prunekit.a._private import x\nfrom prunekit.b import thing\n",  # same package: fine
        "b/__init__.py": "import sys\nsys.modules[__name__].__class__ = type\n",
        "b/use.py": "def f():\n    from prunekit.a._private import x\n    import onnx\n    import scipy\n",
        "c.py": "import onnxruntime\nfrom prunekit.b import use\n",
    }.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "SRC", pkg)
    found, all_imports = _found()
    assert ("a", "b/__init__.py", "self-replacing module") in found
    assert [k for k in found if k[0] == "b"] == [("b", "b/use.py", "prunekit.a._private")]
    assert _cycles(_unit_edges(all_imports)) == [["prunekit.a", "prunekit.b"]]  # a/mod.py -> b, b/use.py -> a
    lazy = {i.module: i.lazy for i in all_imports}
    assert lazy["onnx"] is True and lazy["onnxruntime"] is False and lazy["scipy"] is True
