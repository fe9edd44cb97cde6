"""Pruned HF transformers models saved with ``save_pretrained``, reloadable with ``from_pretrained``.

prunekit's engine prunes an HF model's tensors (the hidden size shared by every
layer, each layer's MLP width, attention heads); an HF config holds one number per
size for all layers. :func:`hf_config_for` reads the sizes back from the pruned
tensors into a copy of the config (``hidden_size``, ``intermediate_size``,
``num_attention_heads``, ``num_key_value_heads``, ``head_dim``), and refuses with a
clear message when the model's sizes cannot be written there:

* layers pruned to different widths (a global ranking or a MACs/params target): prune
  with one ratio for every group (``prunekit.plan(model, x, ratio=0.3)``), which keeps
  the layers alike;
* BERT-like models (``bert``, ``roberta``, ...) whose code derives the attention width
  from ``hidden_size``: a pruned hidden size cannot be expressed, so keep it
  (:func:`hf_compatible` keeps the removals the config can state: for BERT, the MLP widths).

:func:`hf_save_pretrained` then builds a fresh model of the same class from the new
config, loads the pruned weights strictly, checks that its outputs equal the pruned
model's, and saves it (atomically: a folder beside ``directory``, then renamed).

Supported families: Llama-style decoders (``llama``, ``qwen2``, ``mistral``, ``qwen3``:
``q/k/v/o_proj``, ``gate/up/down_proj``) and BERT-style encoders (``bert``,
``roberta``).

Example:
    >>> small = prunekit.plan(model, ids, ratio=0.5).apply(model)                 # doctest: +SKIP
    >>> hf_save_pretrained(small, "pruned-llama", example_inputs=ids)              # doctest: +SKIP
    >>> AutoModelForCausalLM.from_pretrained("pruned-llama").config.hidden_size    # doctest: +SKIP
    32
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from prunekit.errors import ExportError

__all__ = ["hf_compatible", "hf_config_for", "hf_save_pretrained"]

LLAMA_LIKE = ("llama", "qwen2", "qwen3", "mistral")
BERT_LIKE = ("bert", "roberta")


def _pretrained(model):
    """``model`` if it is an HF ``PreTrainedModel``, else its one such submodule (e.g. inside a logits wrapper)."""
    if hasattr(model, "save_pretrained") and hasattr(model, "config"):
        return model
    found = [m for m in model.modules() if hasattr(m, "save_pretrained") and hasattr(m, "config")]
    if not found:
        raise ExportError(f"{type(model).__name__} is not an HF transformers model (no save_pretrained/config)")
    return found[0]   # modules() lists the outermost first


def _one(name: str, values: list, hint: str):
    if len(set(values)) != 1:
        raise ExportError(f"the pruned model has {name} {values} across its layers, but an HF config holds one "
                          f"{name} for every layer; {hint}")
    return values[0]


def _layers(hf, kind: str) -> list:
    base = getattr(hf, hf.base_model_prefix, hf)
    if kind == "llama":
        return list(base.layers)
    return list(base.encoder.layer)


def hf_config_for(model):
    """A copy of the HF model's config with the sizes of its (pruned) tensors.

    Raises:
        ExportError: an unsupported family, per-layer sizes that differ, or sizes the
            family's config cannot express (see the module doc).
    """
    hf = _pretrained(model)
    mtype = getattr(hf.config, "model_type", "")
    new = {}
    uniform = "prune with one ratio for every group (prunekit.plan(model, x, ratio=R), no global ranking or targets)"
    hidden = int(hf.get_input_embeddings().weight.shape[1])
    if mtype in LLAMA_LIKE:
        layers = _layers(hf, "llama")
        head_dim = _one("head_dim", [int(layer.self_attn.head_dim) for layer in layers], uniform)
        q = [int(layer.self_attn.q_proj.out_features) for layer in layers]
        k = [int(layer.self_attn.k_proj.out_features) for layer in layers]
        if any(x % head_dim for x in q + k):
            raise ExportError(f"the pruned attention widths {q} / {k} are not whole heads of {head_dim}")
        new["num_attention_heads"] = _one("num_attention_heads", [x // head_dim for x in q], uniform)
        new["num_key_value_heads"] = _one("num_key_value_heads", [x // head_dim for x in k], uniform)
        new["intermediate_size"] = _one("intermediate_size", [int(layer.mlp.up_proj.out_features) for layer in layers],
                                     uniform)
        new["head_dim"] = head_dim   # no longer hidden_size // heads once the hidden size is pruned
    elif mtype in BERT_LIKE:
        layers = _layers(hf, "bert")
        widths = [int(layer.attention.self.query.out_features) for layer in layers]
        if any(w != hidden for w in widths):
            raise ExportError(f"{mtype} derives its attention width from hidden_size, so a pruned hidden size "
                              f"({hidden}, attention width {widths[0]}) cannot be written in its config; apply "
                              "prunekit.export.hf_compatible(plan, model) instead of the plan (it keeps the hidden "
                              "size)")
        head = _one("attention head size", [int(layer.attention.self.attention_head_size) for layer in layers],
                    uniform)
        new["num_attention_heads"] = hidden // head
        new["intermediate_size"] = _one("intermediate_size",
                                     [int(layer.intermediate.dense.out_features) for layer in layers], uniform)
    else:
        raise ExportError(f"HF model type {mtype!r} is not supported by hf_save_pretrained (supported: "
                          f"{', '.join(LLAMA_LIKE + BERT_LIKE)})")
    new["hidden_size"] = hidden
    try:
        return hf.config.__class__.from_dict({**hf.config.to_dict(), **new})
    except Exception as e:  # noqa: BLE001 - the config validators raise huggingface_hub types, not ValueError
        first = (str(e).strip().splitlines() or [type(e).__name__])[-1].strip()[:300]
        raise ExportError(f"HF's {mtype} config refuses the pruned sizes {new}: {first}; prune to widths it "
                          f"accepts (e.g. round_to=<number of heads> for the hidden size)") from None


def hf_compatible(plan, model):
    """A copy of ``plan`` that removes channels only from sizes the model's HF config can state.

    Llama-style: the hidden size, the MLP width, whole attention heads; BERT-style: the MLP width
    only (its code derives the attention width and the pooler from ``hidden_size``). Every other
    group of the plan keeps all its channels. Apply the result, then :func:`hf_save_pretrained`.
    """
    from prunekit.engine import PruningPlan

    hf = _pretrained(model)
    mtype = getattr(hf.config, "model_type", "")
    emb = hf.get_input_embeddings()
    emb_name = next((f"{n}.weight" for n, m in model.named_modules() if m is emb), None)
    if mtype in LLAMA_LIKE:
        def stated(param, dim):
            return (param == emb_name and dim == 1) or (dim == 0 and param.endswith(
                (".mlp.up_proj.weight", ".self_attn.q_proj.weight", ".self_attn.k_proj.weight")))
    elif mtype in BERT_LIKE:
        def stated(param, dim):
            return dim == 0 and param.endswith(".intermediate.dense.weight")
    else:
        raise ExportError(f"HF model type {mtype!r} is not supported (supported: {', '.join(LLAMA_LIKE + BERT_LIKE)})")
    d = plan.to_dict()
    for g in d["groups"]:
        if not any(stated(m["param"], m["dim"]) for m in g["members"]):
            g["removed"] = []
    return PruningPlan.from_dict(d)


def _equal_outputs(a, b, inputs) -> float:
    import torch

    from prunekit.export.api import flatten_outputs

    import inspect

    # a KV cache object is not an output to compare (and is not a tensor)
    kw = {"use_cache": False} if "use_cache" in inspect.signature(a.forward).parameters else {}
    with torch.no_grad():
        ra, rb = flatten_outputs(a(*inputs, **kw)), flatten_outputs(b(*inputs, **kw))
    if len(ra) != len(rb) or any(x.shape != y.shape for x, y in zip(ra, rb)):
        raise ExportError("the model rebuilt from the updated config returns other output shapes")
    return max(float((x.double() - y.double()).abs().max()) for x, y in zip(ra, rb))


def hf_save_pretrained(model, directory: str | os.PathLike, *, example_inputs=None, plan=None,
                       overwrite: bool = False, atol: float = 1e-6) -> Path:
    """Save a pruned HF model with ``save_pretrained``, its config sizes updated; returns the folder.

    Args:
        model: the pruned HF ``PreTrainedModel`` (or a wrapper holding one).
        directory: the folder to write (refused if it holds files, unless ``overwrite``).
        example_inputs: token ids ``[batch, seq]`` (or a tuple of the HF model's positional inputs) to
            compare outputs on; default random ids of the vocabulary, shape ``[2, 8]``.
        plan: the :class:`~prunekit.engine.PruningPlan` applied, stored as ``prunekit_plan.json``.
        overwrite: replace an existing folder.
        atol: the largest output difference allowed between the pruned model and the one rebuilt from
            the config (they run the same code on the same weights: 0 in practice).

    Raises:
        ExportError: see :func:`hf_config_for`; or the rebuilt model's weights or outputs differ.
    """
    import torch

    hf = _pretrained(model)
    target = Path(directory)
    if target.exists() and (not target.is_dir() or any(target.iterdir())) and not overwrite:
        raise ExportError(f"{target} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
    cfg = hf_config_for(hf)
    fresh = hf.__class__(cfg)
    try:
        fresh.load_state_dict(hf.state_dict(), strict=True)
    except RuntimeError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        raise ExportError(f"the pruned weights do not fit a {cfg.model_type} built from the updated config: "
                          f"{lines[1] if len(lines) > 1 else lines[0]}") from None
    fresh.eval()
    if example_inputs is None:
        example_inputs = torch.randint(0, int(cfg.vocab_size), (2, 8), generator=torch.Generator().manual_seed(0))
    inputs = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    was_training = hf.training
    hf.eval()
    try:
        diff = _equal_outputs(hf, fresh, inputs)
    finally:
        hf.train(was_training)
    if diff > atol:
        raise ExportError(f"the model rebuilt from the updated config differs from the pruned model by {diff:.3g}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        fresh.save_pretrained(str(tmp))
        if plan is not None:
            plan.save(tmp / "prunekit_plan.json")
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
