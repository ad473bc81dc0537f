"""Model configurations and training settings: every hyper-parameter declared once, with its
type, default, allowed values and a one-line doc (torch-free).

A model's config is a frozen pydantic class that declares its fields with the types below::

    class MyConfig(ModelConfig):
        latent_dim: PositiveInt = Field(20, description="size of z")
        dropout: Fraction = Field(0.2, description="dropout on every hidden layer")

Validation happens once, when the config is built (``MyModel(**params)`` builds it); a bad value
is a :class:`ConfigError` with one line per problem naming the field, the value and what is
allowed. :func:`describe` lists a config's fields for ``mmbench models NAME`` and for tools that
check a search space against the declarations.

Numbers come from YAML: PyYAML reads ``1e-4`` (no dot) as a string, so a :data:`Real` accepts a
string that spells a number; it rejects booleans and other strings. An int field is strict: 4.5,
4.0, True and "4" are errors, not silently converted.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, replace
from typing import Annotated, Any, ClassVar, Literal, TypeVar, Union

import annotated_types
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    Strict,
    TypeAdapter,
    ValidationError,
    create_model,
)
from pydantic.fields import FieldInfo


def _real(value: Any) -> Any:
    """A number, or a string that spells one (YAML 1.1's ``1e-4``), as a float; bools and other
    strings are errors."""
    if isinstance(value, bool):
        raise ValueError("Input should be a number")
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ValueError("Input should be a number") from None
    return value


Real = Annotated[float, BeforeValidator(_real), Strict(), Field(allow_inf_nan=False)]
"""A finite real number (an int is taken as a float)."""
PositiveReal = Annotated[Real, Field(gt=0)]
NonNegativeReal = Annotated[Real, Field(ge=0)]
Probability = Annotated[Real, Field(ge=0, le=1)]
Fraction = Annotated[Real, Field(ge=0, lt=1)]
"""A share in [0, 1), e.g. a dropout rate."""
PositiveInt = Annotated[int, Strict(), Field(ge=1)]
NonNegativeInt = Annotated[int, Strict(), Field(ge=0)]
Flag = Annotated[bool, Strict()]
Layers = tuple[PositiveInt, ...]
"""Sizes of hidden layers (a list in YAML); may be empty."""
Activation = Literal["relu", "softplus", "tanh", "elu", "sigmoid", "silu"]


@dataclass(frozen=True)
class Alternatives:
    """Marks a field that takes one of ``choices`` or a value of type ``number``."""

    choices: tuple[str, ...]
    number: Any


def choice_or_number(choices: Any, number: Any) -> Any:
    """The type of a field that takes one of the strings of the Literal ``choices`` or a value of
    the type ``number`` (e.g. a variance: "input", "shared" or a positive number), with one error
    that names both (a plain union would report each alternative's failure)."""
    allowed = typing.get_args(choices)
    number_type = TypeAdapter(number)
    expected = f"{' or '.join(map(repr, allowed))} or a number {_describe_type(number).bounds}"

    def validate(value: Any) -> Any:
        if isinstance(value, str) and value in allowed:
            return value
        try:
            return number_type.validate_python(value)
        except ValidationError:
            raise ValueError(f"Input should be {expected}") from None

    return Annotated[choices | number, PlainValidator(validate), Alternatives(allowed, number)]


@dataclass(frozen=True)
class PerModality:
    """Marks a field that takes a value of type ``value`` for every modality, or a mapping
    modality name -> such a value."""

    value: Any


def per_modality(value: Any) -> Any:
    """The type of a field set for all modalities at once or per modality name, e.g.
    ``0.01`` or ``{x1: 1.0, x2: 0.01}``; which names exist is checked against the data when the
    network is built."""
    value_type = TypeAdapter(value)

    def validate(setting: Any) -> Any:
        if not isinstance(setting, dict):
            return _validated(value_type, setting, "")
        return {name: _validated(value_type, v, f"{name}: ") for name, v in setting.items()}

    return Annotated[value | dict[str, value], PlainValidator(validate), PerModality(value)]


def _validated(adapter: TypeAdapter, value: Any, prefix: str) -> Any:
    try:
        return adapter.validate_python(value)
    except ValidationError as error:
        raise ValueError(prefix + _message(error.errors()[0])) from None


class ModelConfig(BaseModel):
    """The hyper-parameters of a model: frozen, no unknown names, defaults validated too.

    test_params: values small enough for the model to train in seconds; the contract test trains
    every registered model with them (empty: the defaults are small enough).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
    test_params: ClassVar[dict[str, Any]] = {}


Config = TypeVar("Config", bound=ModelConfig)


def with_defaults(
    base: type[Config],
    name: str,
    doc: str,
    *,
    test_params: dict[str, Any] | None = None,
    **defaults: Any,
) -> type[Config]:
    """A config class with the fields of ``base`` and other defaults for some of them (a variant
    of a model, e.g. MMVAE with the IWAE bound); their types, ranges and docs stay ``base``'s.
    ``test_params``: the variant's own (default: ``base``'s)."""
    unknown = sorted(set(defaults) - set(base.model_fields))
    if unknown:
        raise TypeError(f"{base.__name__} has no field(s) {unknown}")
    fields: dict[str, Any] = {
        field: (
            base.model_fields[field].annotation,
            FieldInfo.merge_field_infos(base.model_fields[field], default=value),
        )
        for field, value in defaults.items()
    }
    variant = create_model(name, __base__=base, __doc__=doc, __module__=base.__module__, **fields)
    if test_params is not None:
        variant.test_params = test_params
    variant()  # the new defaults are valid
    return variant


# ---------------------------------------------------------------------------------------------
# Errors


@dataclass(frozen=True)
class Problem:
    """One rejected value: the field path (e.g. "hidden.0"; "" for the whole config) and what is
    wrong, naming the value and what is allowed."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class ConfigError(ValueError):
    """Hyper-parameters that a model's config rejects; one line per problem."""

    def __init__(self, owner: str, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(f"{owner}: {problem}" for problem in problems))


def build_config(
    config_class: type[ModelConfig], params: dict[str, Any], owner: str
) -> ModelConfig:
    """``config_class(**params)``; a :class:`ConfigError` naming ``owner`` when it fails."""
    try:
        return config_class(**params)
    except ValidationError as error:
        raise ConfigError(owner, problems(error, config_class)) from None


def problems(error: ValidationError, schema: type[BaseModel]) -> list[Problem]:
    """The problems of a failed validation of ``schema`` (e.g. a config class), one per error."""
    found = []
    for detail in error.errors():
        field = ".".join(map(str, detail["loc"]))
        if detail["type"] == "extra_forbidden":
            message = f"unknown field; allowed: {sorted(schema.model_fields)}"
        else:
            message = f"{_message(detail)}, got {detail['input']!r}"
        found.append(Problem(field, message))
    return found


def _message(detail: Any) -> str:
    return detail["msg"].removeprefix("Value error, ")


# ---------------------------------------------------------------------------------------------
# Describing a config


@dataclass(frozen=True)
class Bounds:
    """An interval of numbers; None: unbounded on that side; ``*_open``: the end is excluded."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            return (
                f"{'(' if self.low_open else '['}{self.low:g}, "
                f"{self.high:g}{')' if self.high_open else ']'}"
            )
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        return "any"


Kind = Literal["int", "real", "bool", "choice", "layers", "other"]


@dataclass(frozen=True)
class FieldDoc:
    """One field of a config, as a user and a search-space checker need it.

    kind: "int", "real", "bool", "choice" (one of ``choices``; with ``bounds`` when a number is
        allowed instead), "layers" (a tuple of sizes, each within ``bounds``) or "other".
    bounds: the allowed numbers of an int / real (or of each layer size); None for other kinds.
    optional: None is allowed too. per_modality: a mapping modality name -> value is allowed too.
    """

    name: str
    kind: Kind
    default: Any = None
    doc: str = ""
    bounds: Bounds | None = None
    choices: tuple[Any, ...] = ()
    optional: bool = False
    per_modality: bool = False

    @property
    def numeric(self) -> bool:
        return self.kind in ("int", "real")

    @property
    def allowed(self) -> str:
        """What is allowed, in words: "real [0, 1)", "'paper' or 'official'", ..."""
        if self.kind == "choice":
            text = " or ".join(map(repr, self.choices))
            if self.bounds is not None:
                text += f" or a number {self.bounds}"
        elif self.kind == "layers":
            text = f"layer sizes {self.bounds}"
        elif self.numeric:
            text = f"{self.kind} {self.bounds}"
        else:
            text = self.kind
        if self.optional:
            text += " or None"
        if self.per_modality:
            text += ", for all modalities or per modality name"
        return text


def describe(config_class: type[BaseModel]) -> list[FieldDoc]:
    """The fields of ``config_class`` (a model's config, or :class:`TrainSettings`) in declaration
    order: kind, default, allowed values, doc."""
    return [
        replace(
            _describe_type(info.annotation, info.metadata),
            name=name,
            default=info.get_default(call_default_factory=True),
            doc=info.description or "",
        )
        for name, info in config_class.model_fields.items()
    ]


def _describe_type(annotation: Any, metadata: list[Any] | None = None) -> FieldDoc:
    """What a type allows, as a :class:`FieldDoc` without name, default and doc."""
    metadata = list(metadata or [])
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return _describe_type(args[0], [*metadata, *annotation.__metadata__])
    for marker in metadata:
        if isinstance(marker, Alternatives):
            return FieldDoc(
                "", "choice", bounds=_describe_type(marker.number).bounds, choices=marker.choices
            )
        if isinstance(marker, PerModality):
            return replace(_describe_type(marker.value), per_modality=True)
    if origin in (Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return replace(_describe_type(options[0], metadata), optional=True)
        return FieldDoc("", "other")
    if origin is Literal:
        return FieldDoc("", "choice", choices=args)
    if annotation is bool:
        return FieldDoc("", "bool")
    if annotation in (int, float):
        return FieldDoc("", "int" if annotation is int else "real", bounds=_bounds(metadata))
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        size = _describe_type(args[0])
        if size.kind == "int":
            return FieldDoc("", "layers", bounds=size.bounds)
    return FieldDoc("", "other")


def _bounds(metadata: list[Any]) -> Bounds:
    """The interval that the ``annotated_types`` constraints in ``metadata`` allow."""
    constraints: list[Any] = []
    for item in metadata:
        constraints.extend(item.metadata if isinstance(item, FieldInfo) else [item])
    low: float | None = None
    high: float | None = None
    low_open = high_open = False
    for c in constraints:
        if isinstance(c, (annotated_types.Ge, annotated_types.Gt)):
            value = _number(c.ge if isinstance(c, annotated_types.Ge) else c.gt)
            if low is None or value >= low:
                low, low_open = value, isinstance(c, annotated_types.Gt)
        elif isinstance(c, (annotated_types.Le, annotated_types.Lt)):
            value = _number(c.le if isinstance(c, annotated_types.Le) else c.lt)
            if high is None or value <= high:
                high, high_open = value, isinstance(c, annotated_types.Lt)
    return Bounds(low, high, low_open, high_open)


def _number(bound: object) -> float:
    """An ``annotated_types`` bound of a config field: always an int or a float here."""
    assert isinstance(bound, (int, float)), f"bound {bound!r} is not a number"
    return bound


class TrainSettings(BaseModel):
    """How a model is trained: the settings a suite's ``train`` block may set."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    epochs: PositiveInt = Field(100, description="maximum passes over the training split")
    batch_size: PositiveInt = Field(100, description="samples per optimisation step")
    lr: PositiveReal = Field(1e-4, description="Adam's learning rate")
    amsgrad: Flag = Field(False, description="Adam's AMSGrad variant (MMVAE's authors use it)")
    patience: PositiveInt | None = Field(
        20,
        description="stop after this many epochs without a better validation loss and "
        "restore the best epoch's parameters (None: never stop early)",
    )
    max_seconds: PositiveReal | None = Field(
        None, description="wall-clock budget for training in seconds (None: unlimited)"
    )
    eval_batch_size: PositiveInt = Field(
        4096, description="samples per forward pass when evaluating (no autograd)"
    )
    precision: Literal["float32", "bfloat16"] = Field(
        "float32",
        description='the training steps\' forward and loss: "float32", or "bfloat16" under '
        "torch.autocast (parameters and Adam stay float32; changes results, so it enters the "
        "run id)",
    )
    compile: Flag = Field(
        False,
        description="torch.compile the training steps' forward and loss (same results within "
        "float tolerance, so not in the run id; the record's environment says so)",
    )


class TrainConfig(TrainSettings):
    """The training settings of one run: a suite's, and where and from which seed the runner
    trains."""

    device: str = Field("cpu", description='"cpu", "cuda" or "cuda:N"')
    seed: NonNegativeInt = Field(0, description="seeds torch's generators for the whole fit")


# ---------------------------------------------------------------------------------------------
# Field types several models share: the type and its one-line doc, declared once; the default
# stays in each model's config, e.g. ``dropout: HiddenDropout = 0.0``.

LatentDim = Annotated[PositiveInt, Field(description="size of z")]
EncoderHidden = Annotated[Layers, Field(description="hidden layers of every encoder")]
DecoderHidden = Annotated[
    Layers | None, Field(description="hidden layers of every decoder (None: hidden reversed)")
]
HiddenActivation = Annotated[Activation, Field(description="activation of every hidden layer")]
HiddenDropout = Annotated[Fraction, Field(description="dropout rate of every hidden layer")]

if typing.TYPE_CHECKING:  # mypy cannot evaluate the calls below: the values they validate to
    DecoderVariance: typing.TypeAlias = Literal["input", "shared"] | float
    LikelihoodWeights: typing.TypeAlias = float | dict[str, float]
else:
    DecoderVariance = choice_or_number(Literal["input", "shared"], PositiveReal)
    """The variance of a Gaussian decoder: learned ("input": a function of its input;
    "shared": one per feature) or a fixed positive number."""
    LikelihoodWeights = per_modality(NonNegativeReal)
    """lambda_m, the weight of each modality's log-likelihood: one for all, or per name."""

GaussianModalityVariance = Annotated[
    DecoderVariance,
    Field(
        description='variance of Gaussian modalities: "shared" (one learned per '
        'feature), "input" (a function of z) or a fixed variance'
    ),
]
ModalityWeights = Annotated[
    LikelihoodWeights | None,
    Field(description="lambda_m, the weight of each modality's log-likelihood (None: 1)"),
]
LikelihoodFamily = Annotated[
    Literal["laplace", "modality"],
    Field(
        description='"laplace" (the authors\') or "modality" (each modality\'s own '
        "family with the fixed scale likelihood_scale)"
    ),
]
"""The decoders of the mixture-of-experts VAEs: the MMVAE authors' Laplace, or each modality's
own family (:func:`mmbench.nn.fixed_scale_likelihood`)."""
FixedLikelihoodScale = Annotated[
    PositiveReal, Field(description="the likelihoods' fixed scale (the authors': 0.75)")
]
