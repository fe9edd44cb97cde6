import json
import subprocess
import sys

import pytest

from prunekit.errors import PrunekitError
from prunekit.utils.io import atomic_write, check_overwrite


def test_atomic_write_replaces_only_on_success(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target, "w") as f:
            f.write("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]  # no temp file left behind
    with atomic_write(target, "w") as f:
        json.dump({"a": 1}, f)
    assert json.loads(target.read_text()) == {"a": 1}


def test_check_overwrite(tmp_path):
    p = tmp_path / "x"
    assert check_overwrite(p, False) == p
    p.write_text("mine")
    with pytest.raises(PrunekitError, match="already exists"):
        check_overwrite(p, False)
    assert check_overwrite(p, True) == p


def test_import_prunekit_is_light():
    code = ("import sys, prunekit; heavy = [m for m in ('torch', 'sklearn', 'matplotlib', 'mlxtend', "
            "'onnxruntime', 'PIL') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_atomic_write_gives_normal_permissions(tmp_path):
    import os

    umask = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "f.txt", "w") as f:
            f.write("x")
    finally:
        os.umask(umask)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o644
