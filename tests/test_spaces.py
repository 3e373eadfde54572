"""Search spaces as data: loading, errors, the sampler, and how invalid points are kept out."""

import ast
import dataclasses
import inspect
import textwrap

import keras_tuner as kt
import pytest

from resnet.spec import ResNetSpec, max_halvings
from search_spaces import Sampler, SpaceError, TrainConfig, list_spaces, load_space, loader, named_spaces, parse_space
from search_spaces.loader import OPTIMIZER_USES, SCHEDULE_USES
from tuning.engine.oracle import ResNetOracle

FIVE_HALVINGS = textwrap.dedent(
    """
    description = "allows 5 halvings"
    [defaults]
    dataset = "digits"
    [hyperband]
    max_epochs = 2
    factor = 2
    [architecture]
    stem = "cifar"
    depth = [2, 6]
    stages = [1, 2, 3, 4, 5, 6]
    base_filters = [4, 8]
    block = ["basic", "bottleneck"]
    expansion = 1
    preact = [false, true]
    shortcut = ["A", "B"]
    [training]
    optimizer = ["sgd", "adam"]
    schedule = ["cosine", "plateau"]
    batch_size = 64
    [training.sgd]
    learning_rate = 0.05
    momentum = 0.9
    [training.adam]
    learning_rate = 0.003
    """
)


def test_named_spaces_load_and_list():
    names = set(named_spaces())
    assert {"small", "cifar", "imagenet"} <= names
    listed = dict(list_spaces())
    assert set(listed) == names and all(listed.values())
    small = load_space("small")
    assert small.dataset == "digits" and small.max_epochs >= 1
    cifar = load_space("cifar")
    assert cifar.dataset == "cifar10" and cifar.augment == "pad_crop_flip"
    assert cifar.arch["stem"].values == ("cifar",) and cifar.arch["stages"].values == (3,)
    assert set(cifar.arch["shortcut"].values) == {"A", "B"}
    imagenet = load_space("imagenet")
    assert imagenet.arch["stem"].values == ("imagenet",) and imagenet.arch["stages"].values == (4,)
    assert set(imagenet.arch["block"].values) == {"basic", "bottleneck"}


def test_user_file_loads_like_a_named_one(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(FIVE_HALVINGS)
    space = load_space(str(path))
    assert space.name == "mine" and space.max_epochs == 2


def test_notebook_layout_is_a_point_of_the_imagenet_space():
    space = load_space("imagenet")
    sampler = Sampler(space, (224, 224, 3), 1000)
    assert (4, 8, 14) in sampler.position_sets(16, 4)


@pytest.mark.parametrize(
    "text, needles",
    [
        ("[architecture\n", ["not valid TOML"]),
        ("colour = 1\n[architecture]\ndepth=2\nstages=1", ["unknown top-level key", "colour"]),
        ("[architecture]\ndepth = 2\nstages = 1\nblock = 'wide'", ["[architecture] block", "'wide'", "basic"]),
        ("[architecture]\ndepth = [2, 0]\nstages = 1", ["[architecture] depth", "positive integers"]),
        ("[architecture]\ndepth = 2\nstages = 1\n[training]\nlearning_rate = {min = 0.1, max = 0.01}",
         ["[training] learning_rate", "greater than max"]),
        ("[architecture]\ndepth = 2\nstages = 1\n[training]\nweight_decay = {min = 0, max = 0.1, log = true}",
         ["log range needs min > 0"]),
        ("[architecture]\ndepth = 2\nstages = 1\n[training.adam]\nmomentum = 0.9", ["[training.adam]", "momentum"]),
        ("[architecture]\ndepth = 2\nstages = 1\n[hyperband]\nfactor = 1", ["[hyperband] factor", ">= 2"]),
        ("[architecture]\nstages = 1", ["exactly one of depth"]),
        ("[architecture]\ndepth = 40\nstages = 4", ["9139 possible downsample_at sets"]),
        ("[architecture]\ndepth = 2\nstages = 1\nwidth = 3", ["unknown key", "width"]),
    ],
)
def test_malformed_space_names_file_and_key(tmp_path, text, needles):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(SpaceError) as err:
        load_space(str(path))
    msg = str(err.value)
    assert str(path) in msg
    for needle in needles:
        assert needle in msg


def test_unknown_space_lists_named_ones():
    with pytest.raises(SpaceError, match="small") as err:
        load_space("tiny")
    assert "unknown space 'tiny'" in str(err.value)


def test_conditional_hyperparameters_only_where_they_apply():
    sampler = Sampler(load_space("small"), (8, 8, 1), 10)
    hp = kt.HyperParameters()
    sampler.declare(hp)
    by_name = {}
    for h in hp.space:
        by_name.setdefault(sampler.aliases.get(h.name, h.name), []).append(h)
    # momentum and nesterov exist only under SGD; warm-up only under the cosine schedule.
    for name in ("momentum", "nesterov"):
        assert all([(c.name, c.values) for c in h.conditions] == [("optimizer", ["sgd"])] for h in by_name[name])
    assert all(c.name == "schedule" and c.values == ["cosine"] for h in by_name["warmup_epochs"]
               for c in h.conditions)
    # learning rate: one domain for SGD, another for Adam/AdamW.
    assert len(by_name["learning_rate"]) == 2
    # downsample positions are declared per (depth, stages) and always fit that depth.
    for h in by_name["downsample_at"]:
        cond = {c.name.split("_")[0]: c.values[0] for c in h.conditions}
        values = [h.value] if hasattr(h, "value") else h.values
        for v in values:
            positions = [] if v == "none" else [int(p) for p in v.split(",")]
            assert all(2 <= p <= cond["depth"] for p in positions)


def _oracle(sampler, seed=0):
    oracle = ResNetOracle(objective=kt.Objective("val_accuracy", "max"), max_epochs=4, factor=2, seed=seed,
                          check=sampler.check)
    hp = kt.HyperParameters()
    sampler.declare(hp)
    oracle.update_space(hp)
    return oracle


@pytest.mark.parametrize(
    "space_name, size",
    [(s, n) for s in ("small", "five") for n in (1, 2, 5, 8, 13, 32)]
    + [("cifar", n) for n in (8, 32, 64)] + [("imagenet", n) for n in (8, 32, 64, 224)],
)
def test_sampler_never_yields_an_invalid_spec(tmp_path, space_name, size):
    if space_name == "five":
        path = tmp_path / "five.toml"
        path.write_text(FIVE_HALVINGS)
        space = load_space(str(path))
    else:
        space = load_space(space_name)
    shape = (size, size, 3)
    try:
        sampler = Sampler(space, shape, 10)
    except SpaceError as e:
        assert "too small for every configuration" in str(e)
        assert (space_name == "imagenet" and size < 32) or size == 1
        return
    oracle = _oracle(sampler)
    for _ in range(150):
        values = oracle._random_values()
        assert values is not None
        spec, cfg, cost = sampler.resolve(values)  # raises if invalid
        spec.validate(shape)
        assert spec.halvings <= max_halvings(size)
        if space.max_params:
            assert cost.params <= space.max_params
        if space.max_flops:
            assert cost.flops <= space.max_flops
        if cfg.optimizer != "sgd":
            assert cfg.momentum == 0.0 and not cfg.nesterov


def test_eight_by_eight_restricts_a_space_with_five_halvings(tmp_path):
    path = tmp_path / "five.toml"
    path.write_text(FIVE_HALVINGS)
    sampler = Sampler(load_space(str(path)), (8, 8, 1), 10)
    assert sampler.stage_options == [1, 2, 3, 4] and sampler.dropped_stages == [5, 6]
    assert "fits at most 4" in sampler.note
    hp = kt.HyperParameters()
    sampler.declare(hp)
    stage_values = {v for h in hp.space if sampler.aliases.get(h.name) == "stages" or h.name == "stages"
                    for v in getattr(h, "values", [getattr(h, "value", None)])}
    assert max(stage_values) == 4


def test_cost_limits_are_resampled_not_failed(tmp_path):
    path = tmp_path / "limited.toml"
    path.write_text(FIVE_HALVINGS.replace("[architecture]", "[limits]\nmax_params = 3000\n[architecture]"))
    sampler = Sampler(load_space(str(path)), (8, 8, 1), 10)
    oracle = _oracle(sampler, seed=3)
    for _ in range(100):
        _, _, cost = sampler.resolve(oracle._random_values())
        assert cost.params <= 3000
    assert oracle.rejected > 0


def test_too_small_images_for_every_configuration():
    with pytest.raises(SpaceError) as err:
        Sampler(load_space("imagenet"), (8, 8, 3), 10)
    msg = str(err.value)
    assert "8x8" in msg and "allows 3" in msg and "--image-size" in msg


def test_same_seed_same_draws():
    sampler = Sampler(load_space("small"), (8, 8, 1), 10)
    a, b = _oracle(sampler, seed=7), _oracle(sampler, seed=7)
    draws_a = [a._random_values() for _ in range(20)]
    assert draws_a == [b._random_values() for _ in range(20)]
    c = _oracle(sampler, seed=8)
    assert draws_a != [c._random_values() for _ in range(20)]


def test_space_defaults_are_the_dataclass_defaults_not_a_copy():
    spec_defaults = {f.name: f.default for f in dataclasses.fields(ResNetSpec)}
    assert loader.ARCH_DEFAULTS == {k: spec_defaults[k] for k in loader.ARCH_KEYS if k in spec_defaults}
    assert set(loader.ARCH_KEYS) - set(loader.ARCH_DEFAULTS) == {"depth", "stages", "blocks_per_stage"}
    assert loader.TRAIN_DEFAULTS == dataclasses.asdict(TrainConfig())
    assert set(loader.TRAIN_DEFAULTS) == set(loader.TRAIN_KEYS)
    # Derived, not restated: no literal value is assigned to either mapping.
    for node in ast.walk(ast.parse(inspect.getsource(loader))):
        if isinstance(node, ast.Assign) and {getattr(t, "id", None) for t in node.targets} & {
                "ARCH_DEFAULTS", "TRAIN_DEFAULTS"}:
            assert not isinstance(node.value, ast.Dict), ast.unparse(node)
    # A space that leaves every key out gets exactly those defaults, as fixed values.
    space = parse_space("[architecture]\ndepth = 2\nstages = 1\n", "bare.toml")
    assert {k: p.values for k, p in space.train.items()} == {k: (v,) for k, v in loader.TRAIN_DEFAULTS.items()}
    assert {k: p.values for k, p in space.arch.items() if k in loader.ARCH_DEFAULTS} == {
        k: (v,) for k, v in loader.ARCH_DEFAULTS.items()}


# What a trial has always recorded (best.json, the model card) for a training key its optimiser or
# schedule does not use; recorded from the code before the defaults were unified.
RECORDED_WHEN_UNUSED = {"momentum": 0.0, "nesterov": False, "weight_decay": 0.0, "warmup_epochs": 0,
                        "plateau_factor": 0.1, "plateau_patience": 5}
ALWAYS_USED = {"optimizer", "schedule", "batch_size", "label_smoothing"}


@pytest.mark.parametrize("space_name, shape", [("small", (8, 8, 1)), ("cifar", (32, 32, 3)),
                                               ("imagenet", (64, 64, 3))])
def test_train_config_is_the_sampled_values_plus_the_recorded_unused_values(space_name, shape):
    sampler = Sampler(load_space(space_name), shape, 10)
    oracle = _oracle(sampler, seed=5)
    seen = set()
    for _ in range(30):
        values = sampler.canonical(oracle._random_values())
        _, cfg, _ = sampler.resolve(values)
        recorded = dataclasses.asdict(cfg)
        used = ALWAYS_USED | set(OPTIMIZER_USES[cfg.optimizer]) | set(SCHEDULE_USES[cfg.schedule])
        # The sampler declares exactly the keys the configuration uses, and they are recorded as sampled.
        assert used == set(values) & set(recorded)
        assert {k: recorded[k] for k in used} == {k: values[k] for k in used}
        assert {k: recorded[k] for k in set(recorded) - used} == {
            k: RECORDED_WHEN_UNUSED[k] for k in set(recorded) - used}
        seen.add((cfg.optimizer, cfg.schedule))
    space = sampler.space
    assert {o for o, _ in seen} == set(space.train["optimizer"].options)
    assert {s for _, s in seen} == set(space.train["schedule"].options)
