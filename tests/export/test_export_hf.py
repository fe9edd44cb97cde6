"""Pruned HF transformers models: save_pretrained with updated config sizes, from_pretrained gives identical outputs."""
import warnings

import pytest
import torch

import prunekit
from prunekit import export
from prunekit.errors import ExportError

tf = pytest.importorskip("transformers")


class Logits(torch.nn.Module):
    """The HF model returning its logits tensor (what the engine traces)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, ids):
        return self.model(input_ids=ids, use_cache=False).logits if self.model.config.model_type != "bert" else \
            self.model(input_ids=ids).logits


COMMON = dict(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)


def _build(kind):
    torch.manual_seed(0)
    if kind == "llama":
        hf = tf.LlamaForCausalLM(tf.LlamaConfig(**COMMON, num_key_value_heads=2, max_position_embeddings=32))
    elif kind == "qwen2":
        hf = tf.Qwen2ForCausalLM(tf.Qwen2Config(**COMMON, num_key_value_heads=2, max_position_embeddings=32))
    else:
        hf = tf.BertForSequenceClassification(tf.BertConfig(**COMMON, num_labels=3))
    return Logits(hf.eval()).eval(), torch.randint(0, 100, (1, 12), generator=torch.Generator().manual_seed(0))


def _plan(model, ids):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        names = dict(model.named_modules())
        heads = [h for h in ("model.lm_head", "model.classifier") if h in names]   # the outputs keep their size
        return prunekit.plan(model, ids, ratio=0.5, ignored_layers=heads)


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_gqa_decoder_round_trips_through_from_pretrained(kind, tmp_path):
    model, ids = _build(kind)
    plan = _plan(model, ids)
    small = plan.apply(model)
    out = export.hf_save_pretrained(small, tmp_path / "pruned", example_inputs=ids, plan=plan)
    assert (out / "config.json").is_file() and (out / "prunekit_plan.json").is_file()
    re = tf.AutoModelForCausalLM.from_pretrained(str(out)).eval()
    c = re.config
    # one of the 2 KV heads goes with its 2 query heads (GQA groups stay whole), head_dim stays
    assert (c.hidden_size, c.intermediate_size, c.num_attention_heads, c.num_key_value_heads, c.head_dim) == \
        (32, 64, 2, 1, 16)
    x = torch.randint(0, 100, (2, 9))
    with torch.no_grad():
        assert torch.equal(re(input_ids=x, use_cache=False).logits, small(x))


def test_bert_keeps_its_hidden_size_and_prunes_the_mlp(tmp_path):
    model, ids = _build("bert")
    plan = _plan(model, ids)
    # at one ratio the heads (2 of 4, of 16) and the hidden size (32) shrink alike: the config states both
    full = export.hf_save_pretrained(plan.apply(model), tmp_path / "all", example_inputs=ids)
    re = tf.AutoModelForSequenceClassification.from_pretrained(str(full)).eval()
    assert (re.config.hidden_size, re.config.intermediate_size, re.config.num_attention_heads) == (32, 64, 2)
    # attention kept whole while the hidden size shrinks: BERT's config cannot state that
    d = plan.to_dict()
    for g in d["groups"]:
        if any(m["param"].endswith("attention.self.query.weight") and m["dim"] == 0 for m in g["members"]):
            g["removed"] = []
    with pytest.raises(ExportError, match=r"derives its attention width from hidden_size.*hf_compatible"):
        export.hf_save_pretrained(prunekit.PruningPlan.from_dict(d).apply(model), tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    small = export.hf_compatible(plan, model).apply(model)
    out = export.hf_save_pretrained(small, tmp_path / "bert", example_inputs=ids)
    re = tf.AutoModelForSequenceClassification.from_pretrained(str(out)).eval()
    assert (re.config.hidden_size, re.config.intermediate_size, re.config.num_attention_heads) == (64, 64, 4)
    x = torch.randint(0, 100, (3, 7))
    with torch.no_grad():
        assert torch.equal(re(input_ids=x).logits, small(x))


def test_layers_pruned_to_different_widths_are_refused(tmp_path):
    model, ids = _build("llama")
    d = _plan(model, ids).to_dict()
    mlp1 = next(g for g in d["groups"] if any("layers.1.mlp.up_proj" in m["param"] and m["dim"] == 0
                                              for m in g["members"]))
    mlp1["removed"] = mlp1["removed"][:-1]   # layer 1 keeps one more MLP channel than layer 0
    small = prunekit.PruningPlan.from_dict(d).apply(model)
    with pytest.raises(ExportError, match=r"intermediate_size \[64, 65\] across its layers.*one ratio"):
        export.hf_save_pretrained(small, tmp_path / "x")
    hidden = next(g for g in d["groups"] if any(m["param"] == "model.model.embed_tokens.weight"
                                                for m in g["members"]))
    mlp1["removed"] = mlp1["removed"] + [c for c in range(128) if c not in mlp1["removed"]][:1]
    hidden["removed"] = hidden["removed"][:-1]   # hidden size 33: not a multiple of the 4 heads
    with pytest.raises(ExportError, match=r"config refuses the pruned sizes .*'hidden_size': 33.*round_to"):
        export.hf_save_pretrained(prunekit.PruningPlan.from_dict(d).apply(model), tmp_path / "x")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "f").write_text("mine")
    with pytest.raises(ExportError, match="already exists"):
        export.hf_save_pretrained(_plan(model, ids).apply(model), tmp_path / "taken")
    with pytest.raises(ExportError, match="not an HF transformers model"):
        export.hf_config_for(torch.nn.Linear(2, 2))


def test_pruned_hf_model_exports_to_pt2_and_runs_without_prunekit(tmp_path):
    from export_helpers import run_isolated

    model, ids = _build("llama")
    small = _plan(model, ids).apply(model)
    r = export.export(small, ids, tmp_path / "llama.pt2", format="pt2", options=export.ExportOptions(seeds=2))
    assert r.ok
    (got,) = run_isolated("pt2", r.path, (ids,), tmp_path, blocked=("prunekit", "transformers"))
    with torch.no_grad():
        assert float((got - small(ids)).abs().max()) <= r.tolerance
