"""utils.lazy.lazy_exports: the one PEP 562 helper of the lazily-exporting packages."""
import subprocess
import sys
import types

import pytest

from prunekit.utils.lazy import lazy_exports


def test_imports_on_first_use_and_names_the_package(monkeypatch):
    pkg = types.ModuleType("fakepkg")
    monkeypatch.setitem(sys.modules, "fakepkg", pkg)
    table = {"dumps": "json"}
    pkg.__getattr__, pkg.__dir__ = lazy_exports("fakepkg", table)
    table["loads"] = "json"  # later changes to the caller's dict do not leak in
    assert pkg.dumps([1]) == "[1]"
    with pytest.raises(AttributeError, match=r"^module 'fakepkg' has no attribute 'loads'$"):
        pkg.loads
    assert "dumps" in dir(pkg) and "loads" not in dir(pkg)


def test_packages_stay_lazy():
    code = ("import sys, prunekit.search, prunekit.compress; "
            "print(sorted(m for m in ('prunekit.search.api', 'prunekit.compress.pipeline', 'matplotlib') "
            "if m in sys.modules)); print(prunekit.search.SearchConfig.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[]", "prunekit.search.api"]
