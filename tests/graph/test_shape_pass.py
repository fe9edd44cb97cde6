"""The shape pass (graph/shape_pass.py): meta and fake tensors record exactly what the real forward records.

Every test compares, node by node, the summaries (shape, dtype, Python values)
recorded by the cheap passes with a plain recording of the real forward on the
same graph and inputs, and checks which pass the capture used and why.
"""
import pytest
import torch
from torch import nn

from prunekit.graph import analyze, ops
from prunekit.graph.capture import capture
from prunekit.graph.shape_pass import ShapeRecord, record_shapes
from prunekit.graph.shapes import NoShapeRule, meta_module_call
from prunekit.models import create, model_info
from tests.graph.arch_models import CONSTRUCTS
from tests.graph.breadth_models import BREADTH
from tests.graph.helpers import make_inputs

ZOO = ["lenet5", "resnet20", "mobilenet_v2", "shufflenet_v1", "squeezenet1_1", "vgg11"]
# layers without a shape rule (Embedding, PReLU, ConvTranspose2d, InstanceNorm2d, LayerNorm in attention
# blocks, nn.MultiheadAttention), channels-last blocks, window attention, concatenation
TESTS = ["tied_embedding", "shared_module", "transpose_upsample", "norms", "convnext", "vit", "vit_sdpa",
         "torch_mha", "swin", "densenet", "inception", "channel_shuffle", "split_chunk"]


def _zoo(name):
    torch.manual_seed(0)
    return create(name, num_classes=10, in_channels=3).eval(), (torch.randn(1, 3, *model_info(name).input_size),)


def _test_model(name):
    fn, shapes, _ = {**CONSTRUCTS, **BREADTH}[name]
    torch.manual_seed(0)
    return fn().eval(), make_inputs(shapes)


def _by_name(meta: dict) -> dict:
    return {n.name: v for n, v in meta.items()}


def _check_meta_equals_real(model, inputs):
    cap = capture(model, inputs, ops.is_handled_module)
    real = capture(model, inputs, ops.is_handled_module, shapes="real")
    assert cap.shape_pass == "meta", cap.shape_pass
    assert real.shape_pass == "real"
    got, want = _by_name(cap.meta), _by_name(real.meta)
    assert got.keys() == want.keys()
    for name, value in want.items():
        assert got[name] == value, name
    return cap


@pytest.mark.parametrize("name", ZOO)
def test_meta_pass_equals_real_forward_on_zoo_models(name):
    _check_meta_equals_real(*_zoo(name))


@pytest.mark.parametrize("name", TESTS)
def test_meta_pass_equals_real_forward_on_test_architectures(name):
    _check_meta_equals_real(*_test_model(name))


@pytest.mark.parametrize("name", ["vit", "norms", "tied_embedding"])
def test_fake_pass_equals_real_forward(name):
    model, inputs = _test_model(name)
    cap = capture(model, inputs, ops.is_handled_module)
    with torch.no_grad():
        fake = record_shapes(cap.gm, inputs, passes=("fake",))
        real = record_shapes(cap.gm, inputs, passes=("real",))
    assert fake.how == "fake" and fake.why == ""
    assert _by_name(fake.meta) == _by_name(real.meta)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_data_dependent_graph_runs_for_real_and_says_why():
    model, inputs = _test_model("data_dependent")
    cap = capture(model, inputs, ops.is_handled_module)
    # the opaque user module has no rule and must not run on meta tensors
    assert cap.shape_pass == "real (meta: node gate (Gate): NoShapeRule: Gate)"
    assert _by_name(cap.meta) == _by_name(capture(model, inputs, ops.is_handled_module, shapes="real").meta)
    assert analyze(model, inputs).shape_pass == cap.shape_pass


def test_a_failing_pass_names_the_node_and_the_next_one_runs():
    class Masked(nn.Module):
        def forward(self, x):
            return x[x > 0].sum(0, keepdim=True) + x.mean()  # a data-dependent size

    gm = torch.fx.symbolic_trace(Masked())
    x = torch.tensor([1.0, -2.0, 3.0])
    rec = record_shapes(gm, (x,))
    assert isinstance(rec, ShapeRecord) and rec.how == "real"
    assert rec.why.startswith("meta: node getitem (getitem): ")
    assert rec.describe() == f"real ({rec.why})"
    out = [v for n, v in rec.meta.items() if n.name == "getitem"]
    assert out == [("tensor", (2,), torch.float32)]  # two positive entries: only real data says so
    with pytest.raises(ValueError, match="passes"):
        record_shapes(gm, (x,), passes=("meta", "guess"))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_fake_pass_is_not_used_on_graphs_with_user_modules_kept_whole():
    model, inputs = _test_model("data_dependent")
    cap = capture(model, inputs, ops.is_handled_module)
    with torch.no_grad():
        rec = record_shapes(cap.gm, inputs, passes=("fake", "real"))
    assert rec.how == "real"
    assert rec.why.startswith("fake: node gate calls a tests.graph.arch_models module kept whole")


@pytest.mark.parametrize("layer, x", [
    (nn.Embedding(10, 4), torch.randint(0, 10, (2, 3))),
    (nn.PReLU(6), torch.randn(2, 6, 3, 3)),
    (nn.ConvTranspose2d(6, 4, 3, stride=2, padding=1, output_padding=1), torch.randn(1, 6, 5, 7)),
    (nn.InstanceNorm2d(6, affine=True), torch.randn(2, 6, 4, 4)),
    (nn.LayerNorm(7), torch.randn(2, 5, 7)),
    (nn.GroupNorm(2, 6), torch.randn(2, 6, 3)),
])
def test_torch_nn_layers_without_rules_run_on_meta_weights(layer, x):
    layer.eval()
    real = layer(x)
    out = meta_module_call(layer, (x.to("meta"),), {})
    assert out.device.type == "meta" and out.shape == real.shape and out.dtype == real.dtype
    assert all(p.device.type == "cpu" for p in layer.parameters())  # the layer itself is untouched


def test_user_modules_never_run_on_meta_weights():
    class Mine(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 3)

        def forward(self, x):
            return self.lin(x)

    with pytest.raises(NoShapeRule):
        meta_module_call(Mine(), (torch.empty(1, 3, device="meta"),), {})
    with pytest.raises(NoShapeRule):  # a layer whose forward fails on these inputs: the real forward decides
        meta_module_call(nn.LayerNorm(4), (torch.empty(1, 3, device="meta"),), {})


def test_capture_rejects_unknown_shapes_option():
    with pytest.raises(ValueError, match="shapes"):
        capture(nn.Linear(2, 2), (torch.randn(1, 2),), ops.is_handled_module, shapes="fake")


# timm blocks (attention with literal sizes, channels-last LayerNorm, GroupNorm, pooling tokens):
# the harness of the coverage sweep builds them at random init on a small input
TIMM_ARCHS = ["vit_tiny_patch16_224", "convnext_atto", "levit_128s", "poolformer_s12", "pit_ti_224"]


@pytest.mark.parametrize("arch", TIMM_ARCHS)
def test_meta_pass_equals_real_forward_on_timm_models(arch):
    from tests.graph.test_timm_slice import HARNESS, TIMM

    if TIMM is None:
        pytest.skip("timm is not installed")
    model, x, _ = HARNESS.build_timm(arch)
    _check_meta_equals_real(model, (x,))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_fake_pass_alone_refuses_graphs_with_user_modules_kept_whole():
    from prunekit.errors import UnsupportedModelError

    model, inputs = _test_model("data_dependent")
    cap = capture(model, inputs, ops.is_handled_module)
    with pytest.raises(UnsupportedModelError, match="fake shape pass"):
        record_shapes(cap.gm, inputs, passes=("fake",))
