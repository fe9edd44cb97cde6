"""README's "Python API" snippet runs as written (with 1 training epoch and a short timing limit)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def python_api_snippet() -> str:
    text = README.read_text()
    section = text[text.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)


@pytest.mark.slow  # about a minute: trains ResNet-20 for an epoch on mnist5k (run with -m slow)
def test_readme_python_api_snippet_runs(tmp_path, cli_env):
    code = python_api_snippet()
    # the only changes: train 1 epoch instead of 5, and time at most 2 s instead of 30
    for old, new in (("TrainConfig(epochs=5)", "TrainConfig(epochs=1, progress=False)"),
                     ("max_time_s=30", "max_time_s=2")):
        assert code.count(old) == 1, old
        code = code.replace(old, new)
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=cli_env,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout
    assert "latency after/before: median of per-round ratios of interleaved runs" in out
    assert re.search(r"latency bs=32: (\d\.\d\dx latency \[\d\.\d\d, \d\.\d\d\] \(95% CI, \d+ rounds, batch 32, "
                     r"1 thread\)|latency not measurable on this machine right now: )", out)
    last = out.strip().splitlines()[-1]
    assert re.fullmatch(r"\d\.\d\dx latency \[\d\.\d\d, \d\.\d\d\] \(95% CI, \d+ rounds, batch 32, 1 thread\)|"
                        r"latency not measurable on this machine right now: .*", last), last
    assert (tmp_path / "small.pt").is_file() and (tmp_path / "plan.json").is_file()
