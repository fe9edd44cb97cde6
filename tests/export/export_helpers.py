"""Run an exported file in a fresh interpreter that cannot import prunekit or the model's class."""
import json
import subprocess
import sys

import torch

CHILD = r"""
import importlib.abc, json, sys
BLOCKED = set(json.loads(sys.argv[3]))

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked: the exported file must run without it")
        return None

sys.meta_path.insert(0, Block())
import torch
fmt, path = sys.argv[1], sys.argv[2]
inputs = torch.load(sys.argv[4], weights_only=True)
if fmt == "onnx":
    import onnxruntime as ort
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    outs = [torch.from_numpy(o) for o in sess.run(None, {n: t.numpy() for n, t in zip(names, inputs)})]
else:
    module = torch.export.load(path).module()
    with torch.no_grad():
        out = module(*inputs)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
assert not any(m.split(".")[0] in BLOCKED for m in sys.modules), "a blocked module was imported"
torch.save([o.detach() for o in outs], sys.argv[5])
"""


def run_isolated(fmt, path, inputs, tmp_path, blocked=("prunekit",)):
    """Outputs of the exported file at ``path`` on ``inputs``, computed by ``python -I`` with ``blocked`` unimportable."""
    inp, out = tmp_path / "iso_inputs.pt", tmp_path / "iso_outputs.pt"
    torch.save(list(inputs), inp)
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}   # no PYTHONPATH: prunekit's sources are not on it
    proc = subprocess.run([sys.executable, "-I", "-c", CHILD, fmt, str(path), json.dumps(list(blocked)), str(inp),
                           str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return torch.load(out, weights_only=True)
