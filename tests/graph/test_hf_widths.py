"""HF transformers models on the torch.export path: GPT-2's Conv1D, GQA head groups, layer options.

Tiny configs (hidden 64, 4 heads of 16, 2 layers); the exact checks prune only
widths no LayerNorm/RMSNorm normalises over (heads, MLP hidden), where removing
and masking must agree.
"""
from __future__ import annotations

import warnings

import pytest
import torch

import prunekit
from prunekit import measure
from tests.graph.helpers import rel_err

tf = pytest.importorskip("transformers")


class Logits(torch.nn.Module):
    """The HF model returning its logits tensor."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, ids):
        return self.model(input_ids=ids, use_cache=False).logits


IDS = torch.randint(0, 100, (1, 12), generator=torch.Generator().manual_seed(0))


def _gpt2():
    torch.manual_seed(0)
    cfg = tf.GPT2Config(vocab_size=100, n_embd=64, n_layer=2, n_head=4, n_positions=32, num_labels=3, pad_token_id=0)
    return Logits(tf.GPT2ForSequenceClassification(cfg).eval()).eval()


def _llama():
    torch.manual_seed(0)
    cfg = tf.LlamaConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=128, num_key_value_heads=2, max_position_embeddings=32)
    return Logits(tf.LlamaForCausalLM(cfg).eval()).eval()


def _plan(model, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return prunekit.plan(model, IDS, **kw)


def _exact(model, plan):
    small, masked = plan.apply(model), plan.apply_masks(model)
    with torch.no_grad():
        a, b, ref = small(IDS), masked(IDS), model(IDS)
    assert a.shape == ref.shape
    assert rel_err(a, b) < 1e-5
    assert rel_err(ref, b) > 1e-4
    return small


def test_gpt2_conv1d_heads_prune_whole_with_split_size():
    """Conv1D keeps its weight as [in, out]: c_attn loses output *columns* (2 of 4 heads = 96 of 192),
    c_proj input *rows*; ``split(self.split_size)`` follows (64 -> 32)."""
    model = _gpt2()
    plan = _plan(model, ratios={"model.transformer.h.0.attn.c_attn": 0.5})
    assert plan.frozen == []  # attention-mask building on int/bool tensors freezes nothing
    small = _exact(model, plan)
    attn = small.model.transformer.h[0].attn
    assert tuple(attn.c_attn.weight.shape) == (64, 96) and tuple(attn.c_attn.bias.shape) == (96,)
    assert tuple(attn.c_proj.weight.shape) == (32, 64)
    assert attn.split_size == 32
    assert tuple(small.model.transformer.h[1].attn.c_attn.weight.shape) == (64, 192)  # other layer untouched
    # the kept columns are 2 whole heads, the same ones in q, k and v
    ref = model.model.transformer.h[0].attn.c_attn.weight.detach()
    matches = [(a, b) for a in range(4) for b in range(a + 1, 4)
               if torch.equal(attn.c_attn.weight.detach(),
                              ref[:, [p * 64 + h * 16 + k for p in range(3) for h in (a, b) for k in range(16)]])]
    assert len(matches) == 1


def test_gpt2_conv1d_mlp_and_macs():
    """The MLP hidden width of Conv1D layers prunes (nf follows) and the plan's MACs estimate counts
    the functional addmm layers exactly as the profiler does."""
    model = _gpt2()
    plan = _plan(model, ratios={"model.transformer.h.1.mlp.c_fc": 0.5})
    small = _exact(model, plan)
    mlp = small.model.transformer.h[1].mlp
    assert tuple(mlp.c_fc.weight.shape) == (64, 128) and mlp.c_fc.nf == 128
    assert tuple(mlp.c_proj.weight.shape) == (128, 64)
    assert plan.info["macs_before"] == measure.count_macs(model, IDS).total
    assert plan.info["macs_after"] == measure.count_macs(small, IDS).total


def test_gpt2_uniform_ratio_really_prunes():
    model = _gpt2()
    plan = _plan(model, ratio=0.5, ignored_layers=["model.score"])
    small = plan.apply(model)
    assert measure.count_macs(small, IDS).total <= 0.6 * measure.count_macs(model, IDS).total
    with torch.no_grad():
        assert small(IDS).shape == model(IDS).shape


def test_gqa_kv_head_goes_with_its_query_heads():
    """Llama with 4 query heads on 2 KV heads: removing KV head j removes query heads 2j and 2j+1
    (HF's repeat_kv maps query head h to KV head h // 2); num_heads divisibility stays."""
    model = _llama()
    plan = _plan(model, ratios={"model.model.layers.0.self_attn.q_proj": 0.5})
    (g,) = [g for g in plan.groups if g.removed]
    assert g.size == 2 and len(g.removed) == 1
    small = _exact(model, plan)
    attn = small.model.model.layers[0].self_attn
    assert tuple(attn.q_proj.weight.shape) == (32, 64) and tuple(attn.k_proj.weight.shape) == (16, 64)
    assert tuple(attn.v_proj.weight.shape) == (16, 64) and tuple(attn.o_proj.weight.shape) == (64, 32)
    j = g.removed[0]
    kept_q = [h for h in range(4) if h // 2 != j]
    ref = model.model.model.layers[0].self_attn.q_proj.weight.detach()
    expect = torch.cat([ref[16 * h:16 * h + 16] for h in kept_q])
    assert torch.equal(attn.q_proj.weight.detach(), expect)


def test_ignored_layers_take_effect_on_export_graphs():
    """Roles of export-graph parameters are known, so ignoring a decoder layer keeps every tensor in it."""
    model = _llama()
    plan = _plan(model, ratio=0.5, ignored_layers=["model.lm_head", "model.model.layers.0"])
    before = dict(model.named_parameters())
    shapes = {p: s for p, s in plan.new_shapes().items() if list(before[p].shape) != s}
    assert not [p for p in shapes if p.startswith("model.model.layers.0.")]
    assert shapes["model.model.layers.1.mlp.up_proj.weight"] == [64, 64]
    _exact(model, plan)
