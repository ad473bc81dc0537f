"""Model configs: the shared field types accept what YAML gives and reject the rest with one line
naming the field, the value and what is allowed; ``describe`` reports each field's kind, bounds
and choices as declared; a variant config changes defaults only."""

import math
from typing import Literal

import pytest
from pydantic import Field, ValidationError

from mmbench.config import (
    Activation,
    Bounds,
    ConfigError,
    FieldDoc,
    Flag,
    Fraction,
    Layers,
    ModelConfig,
    NonNegativeReal,
    PositiveInt,
    PositiveReal,
    Probability,
    Real,
    build_config,
    choice_or_number,
    describe,
    per_modality,
    with_defaults,
)
from mmbench.registry import available_models, builtin_models, config_class

Variance = choice_or_number(Literal["input", "shared"], PositiveReal)


class Example(ModelConfig):
    """One field of every shared type."""

    size: PositiveInt = Field(3, description="a size")
    weight: Real = Field(-0.5, description="any real")
    omega: Probability = Field(0.5, description="a probability")
    dropout: Fraction = Field(0.0, description="a rate")
    scale: PositiveReal | None = Field(None, description="a scale or nothing")
    hidden: Layers = Field((4, 5), description="layer sizes")
    activation: Activation = Field("relu", description="an activation")
    variance: Variance = Field("input", description="a variance")
    weights: per_modality(NonNegativeReal) | None = Field(None, description="per modality")
    flag: Flag = Field(True, description="a switch")


def rejected(**params) -> str:
    with pytest.raises(ConfigError) as error:
        build_config(Example, params, "example")
    return str(error.value)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"size": True}, "example: size: Input should be a valid integer, got True"),
        ({"size": 4.5}, "example: size: Input should be a valid integer, got 4.5"),
        ({"size": 4.0}, "example: size: Input should be a valid integer, got 4.0"),
        ({"size": "4"}, "example: size: Input should be a valid integer, got '4'"),
        ({"size": 0}, "example: size: Input should be greater than or equal to 1, got 0"),
        ({"weight": "high"}, "example: weight: Input should be a number, got 'high'"),
        ({"weight": True}, "example: weight: Input should be a number, got True"),
        ({"weight": math.inf}, "example: weight: Input should be a finite number, got inf"),
        ({"omega": 1.5}, "example: omega: Input should be less than or equal to 1, got 1.5"),
        ({"dropout": 1.0}, "example: dropout: Input should be less than 1, got 1.0"),
        ({"scale": 0}, "example: scale: Input should be greater than 0, got 0"),
        (
            {"hidden": [8, 0]},
            "example: hidden.1: Input should be greater than or equal to 1, got 0",
        ),
        ({"hidden": 8}, "example: hidden: Input should be a valid tuple, got 8"),
        (
            {"activation": "gelu"},
            "example: activation: Input should be 'relu', 'softplus', 'tanh', "
            "'elu', 'sigmoid' or 'silu', got 'gelu'",
        ),
        (
            {"variance": "learned"},
            "example: variance: Input should be 'input' or 'shared' or a number > 0, got 'learned'",
        ),
        (
            {"variance": -1.0},
            "example: variance: Input should be 'input' or 'shared' or a number > 0, got -1.0",
        ),
        (
            {"weights": {"x1": -1}},
            "example: weights: x1: Input should be greater than or equal to 0, got {'x1': -1}",
        ),
        ({"flag": 1}, "example: flag: Input should be a valid boolean, got 1"),
        (
            {"sise": 3},
            "example: sise: unknown field; allowed: ['activation', 'dropout', 'flag', "
            "'hidden', 'omega', 'scale', 'size', 'variance', 'weight', 'weights']",
        ),
    ],
)
def test_a_bad_value_is_one_line_naming_the_field_the_value_and_what_is_allowed(params, message):
    assert rejected(**params) == message


def test_values_from_yaml_are_taken_as_declared():
    # PyYAML reads 1e-4 (no dot) as a string; lists come for tuples; ints for reals
    config = Example(
        weight="1e-4",
        scale="2.5E+1",
        hidden=[8, 6],
        omega=1,
        variance="0.01",
        weights={"x1": 2, "x2": "3e0"},
    )
    assert config.weight == 1e-4 and config.scale == 25.0 and config.hidden == (8, 6)
    assert config.omega == 1.0 and isinstance(config.omega, float)
    assert config.variance == 0.01 and Example(variance="shared").variance == "shared"
    assert config.weights == {"x1": 2.0, "x2": 3.0} and Example(weights=0.5).weights == 0.5
    assert config.model_dump(mode="json")["hidden"] == [8, 6]


def test_a_config_is_frozen():
    config = Example()
    with pytest.raises(ValidationError, match="frozen"):
        config.size = 4


def test_describe_reports_each_field_as_declared():
    fields = {f.name: f for f in describe(Example)}
    assert list(fields) == list(Example.model_fields)
    assert fields["size"] == FieldDoc("size", "int", 3, "a size", Bounds(1))
    assert fields["weight"] == FieldDoc("weight", "real", -0.5, "any real", Bounds())
    assert fields["omega"].bounds == Bounds(0, 1) and fields["omega"].allowed == "real [0, 1]"
    assert fields["dropout"].bounds == Bounds(0, 1, high_open=True)
    assert fields["dropout"].allowed == "real [0, 1)"
    assert fields["scale"] == FieldDoc(
        "scale", "real", None, "a scale or nothing", Bounds(0, low_open=True), optional=True
    )
    assert fields["scale"].allowed == "real > 0 or None"
    assert fields["hidden"] == FieldDoc("hidden", "layers", (4, 5), "layer sizes", Bounds(1))
    assert fields["activation"].kind == "choice"
    assert fields["activation"].choices == ("relu", "softplus", "tanh", "elu", "sigmoid", "silu")
    assert fields["variance"] == FieldDoc(
        "variance", "choice", "input", "a variance", Bounds(0, low_open=True), ("input", "shared")
    )
    assert fields["variance"].allowed == "'input' or 'shared' or a number > 0"
    assert fields["weights"].kind == "real" and fields["weights"].per_modality
    assert fields["weights"].optional and fields["weights"].bounds == Bounds(0)
    assert fields["flag"].kind == "bool" and not fields["flag"].numeric
    assert fields["size"].numeric and fields["omega"].numeric


def test_bounds_contain_what_their_ends_allow():
    half_open = Bounds(0, 1, high_open=True)
    assert 0 in half_open and 0.999 in half_open and 1 not in half_open and -0.1 not in half_open
    assert 0 not in Bounds(0, low_open=True) and 5 in Bounds(0, low_open=True)
    assert str(Bounds(0, 1, low_open=True)) == "(0, 1]" and str(Bounds(high=2)) == "<= 2"


@pytest.mark.parametrize("name", available_models())
def test_every_field_of_a_builtin_model_has_a_known_kind(name):
    """A tuning search space can tell for each field whether it is numeric, a choice, ..."""
    if name not in builtin_models():
        pytest.skip(f"{name} is a plug-in")
    for field in describe(config_class(name)):
        assert field.kind != "other", f"{name}: {field.name}"
        assert field.doc and "  " not in field.doc


def test_a_variant_changes_defaults_and_keeps_types_ranges_and_docs():
    Small = with_defaults(Example, "Small", "Example with smaller defaults.", size=1, hidden=(2,))
    assert (Small().size, Small().hidden, Small().omega) == (1, (2,), 0.5)
    assert issubclass(Small, Example) and Small.__doc__ == "Example with smaller defaults."
    assert describe(Small)[0] == FieldDoc("size", "int", 1, "a size", Bounds(1))
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        Small(size=0)
    with pytest.raises(TypeError, match=r"Example has no field\(s\) \['sise'\]"):
        with_defaults(Example, "Bad", "", sise=1)
    with pytest.raises(ValidationError, match="less than or equal to 1"):
        with_defaults(Example, "Bad", "", omega=2.0)
