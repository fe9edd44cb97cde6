"""Model builders of the coverage sweep (bench/coverage.py): timm without torchvision, HF transformers small configs.

timm imports torchvision at import time (``FrozenBatchNorm2d`` and the data
transforms) although building models never uses it; there is no CPU build of
torchvision on the registry, so when it is absent a stub module stands in for
it (:func:`install_torchvision_stub`). prunekit itself never imports torchvision.
"""
from __future__ import annotations

import sys


# ----------------------------------------------------------------------------- timm without torchvision


def install_torchvision_stub() -> bool:
    """Make ``import torchvision...`` succeed with inert stand-ins when torchvision is not installed.

    Returns True when the stub was installed. Any attribute of a stub module is a
    placeholder class; calling it raises, so code that really needs torchvision
    fails loudly instead of silently doing nothing.
    """
    import importlib.abc
    import importlib.machinery
    import importlib.util
    import types

    if "torchvision" in sys.modules or importlib.util.find_spec("torchvision") is not None:
        return False

    class _Placeholder(type):
        def __getattr__(cls, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return _Placeholder(name, (), {})

        def __call__(cls, *a, **k):
            raise RuntimeError(f"torchvision is not installed ({cls.__name__} is a stub)")

    class _StubModule(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return _Placeholder(name, (), {})

    class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        prunekit_stub = True

        def find_spec(self, fullname, path, target=None):
            if fullname == "torchvision" or fullname.startswith("torchvision."):
                return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
            return None

        def create_module(self, spec):
            m = _StubModule(spec.name)
            m.__path__ = []
            return m

        def exec_module(self, module):
            pass

    sys.meta_path.append(_Finder())
    return True


def remove_torchvision_stub() -> None:
    """Undo :func:`install_torchvision_stub` (transformers reads torchvision's version when it looks importable)."""
    sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "prunekit_stub", False)]
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        if type(sys.modules[name]).__name__ == "_StubModule":
            del sys.modules[name]


def import_timm():
    """``timm``, or None when it is not installed."""
    try:
        import timm  # noqa: F401
    except ModuleNotFoundError as e:
        if e.name != "torchvision":
            return None
        install_torchvision_stub()
    try:
        import timm
    except ModuleNotFoundError:
        return None
    return timm


def timm_family(timm, name: str) -> str:
    """The timm module an architecture is defined in (its family: ``resnet``, ``vision_transformer``...)."""
    from timm.models import get_arch_name, model_entrypoint

    try:
        return model_entrypoint(name).__module__.rpartition(".")[2]
    except Exception:  # noqa: BLE001 - family is only used for sampling
        return get_arch_name(name)


# ----------------------------------------------------------------------------- HF transformers


HF_MODELS = ("hf_bert", "hf_vit", "hf_gpt2", "hf_llama_gqa", "hf_qwen2_gqa", "hf_t5")


def build_hf(name: str):
    """A small-config HF transformers model wrapped to return its logits, with its example input and head."""
    import torch

    remove_torchvision_stub()  # timm models are built already; transformers must not see a fake torchvision
    import transformers as tf

    torch.manual_seed(0)
    ids = torch.randint(0, 100, (1, 12))
    common = dict(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
    if name == "hf_bert":
        model = tf.BertForSequenceClassification(tf.BertConfig(**common, num_labels=3))
        head, x = "model.classifier", ids
    elif name == "hf_vit":
        cfg = tf.ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                           image_size=32, patch_size=8, num_labels=3)
        model = tf.ViTForImageClassification(cfg)
        head, x = "model.classifier", torch.randn(1, 3, 32, 32)
    elif name == "hf_gpt2":
        cfg = tf.GPT2Config(vocab_size=100, n_embd=64, n_layer=2, n_head=4, n_positions=32, num_labels=3,
                            pad_token_id=0)
        model = tf.GPT2ForSequenceClassification(cfg)
        head, x = "model.score", ids
    elif name == "hf_llama_gqa":
        model = tf.LlamaForCausalLM(tf.LlamaConfig(**common, num_key_value_heads=2, max_position_embeddings=32))
        head, x = "model.lm_head", ids
    elif name == "hf_qwen2_gqa":
        model = tf.Qwen2ForCausalLM(tf.Qwen2Config(**common, num_key_value_heads=2, max_position_embeddings=32))
        head, x = "model.lm_head", ids
    elif name == "hf_t5":
        cfg = tf.T5Config(vocab_size=100, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4,
                          decoder_start_token_id=0)
        model = tf.T5ForConditionalGeneration(cfg)
        head, x = "model.lm_head", (ids, torch.zeros(1, 4, dtype=torch.long))
    else:
        raise ValueError(f"unknown HF model {name!r}; choose from {HF_MODELS}")
    wrapped = _make_logits()(model.eval()).eval()
    return wrapped, x, [head]


def _make_logits():
    import torch.nn as nn

    class Logits(nn.Module):
        """A HF model returning its logits tensor (the engine and Torch-Pruning want tensors out)."""

        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x, decoder_input_ids=None):
            if decoder_input_ids is not None:
                return self.model(input_ids=x, decoder_input_ids=decoder_input_ids, use_cache=False).logits
            if x.is_floating_point():
                return self.model(pixel_values=x).logits
            return self.model(input_ids=x, use_cache=False).logits  # no KV cache: one forward pass

    return Logits
