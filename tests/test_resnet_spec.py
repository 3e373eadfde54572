"""ResNetSpec: both block-layout forms, validation messages, JSON round trips."""

import ast
import json
import pathlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resnet import (
    ZOO,
    ResNetSpec,
    build_resnet,
    count_cost,
    depths_to_positions,
    max_halvings,
    positions_to_depths,
    zoo_spec,
)


def test_notebook_layout_is_resnet34():
    # 16 basic blocks halving at blocks 4, 8 and 14: the paper's ResNet-34.
    assert positions_to_depths(16, [4, 8, 14]) == (3, 4, 6, 3)
    assert depths_to_positions((3, 4, 6, 3)) == (16, (4, 8, 14))
    spec = ResNetSpec.from_positions(16, [4, 8, 14], stem="imagenet", base_filters=64)
    assert spec.stage_depths == zoo_spec("resnet34").stage_depths
    assert spec.depth == 16 and spec.downsample_at == (4, 8, 14)
    assert spec.num_layers == 34
    assert zoo_spec("resnet152").num_layers == 152
    assert zoo_spec("cifar_resnet56").num_layers == 56


@given(st.lists(st.integers(1, 6), min_size=1, max_size=6))
def test_layout_forms_convert_both_ways(depths):
    depth, positions = depths_to_positions(depths)
    assert positions_to_depths(depth, positions) == tuple(depths)


@pytest.mark.parametrize(
    "depth, positions, needle",
    [(0, [], "depth=0"), (5, [1], "2..5"), (5, [6], "2..5"), (8, [4, 3], "strictly increasing")],
)
def test_bad_positions(depth, positions, needle):
    with pytest.raises(ValueError, match=needle):
        positions_to_depths(depth, positions)


def test_max_halvings():
    assert [max_halvings(s) for s in (1, 2, 3, 4, 7, 8, 9, 32, 224)] == [0, 1, 2, 2, 3, 3, 4, 5, 8]


def test_eight_by_eight_allows_three_halvings():
    ok = ResNetSpec(stem="cifar", stage_depths=(1, 1, 1, 1))
    ok.validate((8, 8, 1))
    too_deep = ResNetSpec(stem="cifar", stage_depths=(1, 1, 1, 1, 1))
    with pytest.raises(ValueError) as err:
        too_deep.validate((8, 8, 1))
    msg = str(err.value)
    assert "8x8 input allows at most 3 halvings" in msg
    assert "stage_depths=(1, 1, 1, 1, 1)" in msg and "halves the feature map 4 times" in msg
    assert "at most 4 stages" in msg
    # build_resnet and count_cost refuse it too, before building anything.
    with pytest.raises(ValueError, match="at most 3 halvings"):
        build_resnet(too_deep, (8, 8, 1), 10)
    with pytest.raises(ValueError, match="at most 3 halvings"):
        count_cost(too_deep, (8, 8, 1), 10)


def test_imagenet_stem_counts_its_own_halvings():
    spec = ResNetSpec(stem="imagenet", stage_depths=(1, 1))
    spec.validate((8, 8, 3))  # 2 stem halvings + 1 = 3
    with pytest.raises(ValueError, match="2 in the stem"):
        ResNetSpec(stem="imagenet", stage_depths=(1, 1, 1)).validate((8, 8, 3))
    with pytest.raises(ValueError, match="use the 'cifar' stem"):
        ResNetSpec(stem="imagenet", stage_depths=(1,)).validate((2, 2, 3))


def test_non_square_input_uses_shorter_side():
    spec = ResNetSpec(stage_depths=(1, 1, 1, 1))
    spec.validate((64, 8, 3))
    with pytest.raises(ValueError, match="64x4 input allows at most 2 halvings"):
        spec.validate((64, 4, 3))


@pytest.mark.parametrize(
    "fields, needles",
    [
        ({"block": "wide"}, ["block='wide'", "'basic'", "'bottleneck'"]),
        ({"stem": "vgg"}, ["stem='vgg'", "'imagenet'", "'cifar'"]),
        ({"shortcut": "D"}, ["shortcut='D'", "'A'", "'B'", "'C'"]),
        ({"stage_depths": (2, 0, 2)}, ["stage_depths=(2, 0, 2)", "positive integers"]),
        ({"stage_depths": ()}, ["stage_depths=()", "non-empty"]),
        ({"base_filters": 0}, ["base_filters=0", "positive integer"]),
        ({"base_filters": 8.5}, ["base_filters=8.5"]),
        ({"growth": -1.0}, ["growth=-1.0", "positive"]),
        ({"width_multiplier": 0}, ["width_multiplier=0"]),
        ({"bottleneck_stride": "2x2"}, ["bottleneck_stride='2x2'", "'3x3'", "'1x1'"]),
        ({"expansion": 0}, ["expansion=0"]),
        ({"bn_momentum": 1.0}, ["bn_momentum=1.0", "[0, 1)"]),
        ({"bn_epsilon": 0.0}, ["bn_epsilon=0.0"]),
        ({"preact": "yes"}, ["preact='yes'"]),
        ({"shortcut": "A", "growth": 0.5}, ["shortcut='A'", "narrows", "use shortcut 'B'"]),
    ],
)
def test_bad_fields_name_field_value_and_fix(fields, needles):
    spec = ResNetSpec(**fields)
    with pytest.raises(ValueError) as err:
        spec.validate()
    for needle in needles:
        assert needle in str(err.value)
    with pytest.raises(ValueError):
        build_resnet(spec, (16, 16, 3), 4)


@pytest.mark.parametrize("shape", [(8, 8), (0, 8, 3), (8.0, 8, 3), (8, 8, -1)])
def test_bad_input_shape(shape):
    with pytest.raises(ValueError, match="input_shape"):
        ResNetSpec().validate(shape)


def test_bad_num_classes():
    with pytest.raises(ValueError, match="num_classes=0"):
        build_resnet(ResNetSpec(stage_depths=(1,)), (8, 8, 1), 0)
    with pytest.raises(ValueError, match="num_classes=0"):
        count_cost(ResNetSpec(stage_depths=(1,)), (8, 8, 1), 0)


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_json_round_trip(name):
    spec = zoo_spec(name)
    again = ResNetSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and hash(again) == hash(spec)


specs = st.builds(
    ResNetSpec,
    stem=st.sampled_from(["imagenet", "cifar"]),
    stage_depths=st.lists(st.integers(1, 5), min_size=1, max_size=5).map(tuple),
    block=st.sampled_from(["basic", "bottleneck"]),
    base_filters=st.integers(1, 128),
    growth=st.sampled_from([1.0, 1.5, 2.0, 3.0]),
    width_multiplier=st.sampled_from([0.25, 0.5, 1.0, 1.75]),
    preact=st.booleans(),
    shortcut=st.sampled_from(["A", "B", "C"]),
    bottleneck_stride=st.sampled_from(["3x3", "1x1"]),
    expansion=st.integers(1, 6),
    bn_momentum=st.floats(0.0, 0.999),
    bn_epsilon=st.floats(1e-6, 1e-2),
)


@settings(max_examples=200)
@given(specs)
def test_json_round_trip_property(spec):
    text = json.dumps(spec.to_dict())
    assert ResNetSpec.from_dict(json.loads(text)) == spec


def test_from_dict_accepts_positions_form_and_rejects_unknown_keys():
    spec = ResNetSpec.from_dict({"depth": 16, "downsample_at": [4, 8, 14], "stem": "imagenet"})
    assert spec.stage_depths == (3, 4, 6, 3)
    with pytest.raises(ValueError, match="unknown ResNetSpec field"):
        ResNetSpec.from_dict({"stage_depths": [1], "blocks": "basic"})
    with pytest.raises(ValueError, match="not both"):
        ResNetSpec.from_dict({"stage_depths": [1], "depth": 1, "downsample_at": []})


def test_zoo_unknown_name_lists_known():
    with pytest.raises(ValueError, match="resnet50"):
        zoo_spec("resnet51")


def test_library_imports_keras_only():
    """resnet/ must run on JAX and PyTorch too: no tensorflow or keras_tuner imports."""
    root = pathlib.Path(__file__).resolve().parents[1] / "resnet"
    files = sorted(root.glob("*.py"))
    assert files
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            for name in names:
                top = name.split(".")[0]
                assert top not in {"tensorflow", "keras_tuner", "tf_keras", "torch", "jax"}, (path, name)
