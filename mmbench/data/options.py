"""Data-set options: declared once, in the loader's signature, and checked before any file is read.

A loader declares each option as a keyword parameter whose annotation carries its type, its range
or choices and a one-line doc, e.g.::

    fold: Annotated[int, Field(ge=1, le=4, description="held-out speaker pair")] = 1

:func:`check` turns that signature into a strict pydantic model: an integer must be an int (not
a bool, a float or the string "1"), a number must be finite, ranges and choices hold, and a list
stays a list. Rules that tie several options together (``valid_fraction + test_fraction < 1``)
are functions given to ``register_dataset``; each returns a problem or None.
"""

from __future__ import annotations

import inspect
import os
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Literal, Union

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from mmbench.data.errors import DataError

INJECTED = ("data_dir", "base_dir")  # set by mmbench (--data-dir, the suite's folder), not a suite
Rule = Callable[[dict[str, Any]], str | None]
_BOUNDS = (
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Ge, "ge", ">="),
    (annotated_types.Lt, "lt", "<"),
    (annotated_types.Le, "le", "<="),
)
_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


Seed = Annotated[int, Field(ge=0, description="seed of every random draw of the loader")]
Fraction = Annotated[float, Field(gt=0, lt=1)]
Count = Annotated[int, Field(ge=1)]


def training_rows_left(options: dict[str, Any]) -> str | None:
    """Rule of the loaders that split rows into train / valid / test by ``valid_fraction`` and
    ``test_fraction``: together they must leave rows for training."""
    valid, test = options["valid_fraction"], options["test_fraction"]
    if valid + test >= 1:
        return (
            f"valid_fraction + test_fraction = {valid} + {test} = {valid + test:g} leaves "
            "no rows for training; their sum must be < 1"
        )
    return None


class OptionError(DataError, TypeError):
    """A data-set option with an unknown name, a wrong type or a value out of range.

    Also a TypeError, as Python raises for a wrong keyword argument."""


@dataclass(frozen=True)
class OptionSpec:
    """One option of a data set: its default (None when ``required``), what values are allowed
    (in words) and what it does."""

    name: str
    default: Any
    required: bool
    allowed: str
    doc: str


@cache
def options_model(loader: Callable) -> type[BaseModel]:
    """The strict pydantic model of the options of ``loader`` (every keyword parameter but the
    ``INJECTED`` ones), read from its annotated signature."""
    hints = typing.get_type_hints(loader, include_extras=True)
    fields: dict[str, tuple[Any, Any]] = {}  # option name -> (annotation, default)
    for parameter in inspect.signature(loader).parameters.values():
        if parameter.name in INJECTED:
            continue
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[parameter.name] = (hints.get(parameter.name, Any), default)
    config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)
    return create_model(  # type: ignore[call-overload]  # mypy matches **fields to __module__
        f"{loader.__name__}_options", __config__=config, **fields
    )


def check(
    name: str, loader: Callable, rules: tuple[Rule, ...], options: dict[str, Any]
) -> dict[str, Any]:
    """``options`` with lists as tuples and paths as strings, or an :class:`OptionError` that
    names every wrong option, its value and what is allowed."""
    given = {key: _plain(value) for key, value in options.items()}
    model = options_model(loader)
    try:
        values = model(**given)
    except ValidationError as error:
        problems, seen = [], set()
        for problem in error.errors():
            if problem["loc"][0] not in seen:  # one problem per option (unions report several)
                seen.add(problem["loc"][0])
                problems.append(_explain(model, problem))
        raise OptionError(f"data set {name!r}: " + "; ".join(problems)) from None
    problems = [broken for rule in rules if (broken := rule(dict(values)))]
    if problems:
        raise OptionError(f"data set {name!r}: " + "; ".join(problems))
    return given


def describe(loader: Callable) -> list[OptionSpec]:
    """Every option of ``loader`` with its default, allowed values and doc."""
    return [
        OptionSpec(
            option,
            None if field.is_required() else field.default,
            field.is_required(),
            allowed(field),
            field.description or "",
        )
        for option, field in options_model(loader).model_fields.items()
    ]


def allowed(field: FieldInfo) -> str:
    """The values ``field`` accepts, in words: "a number > 0 and < 1", "one of 'a', 'b'"."""
    return _describe_type(field.annotation, field.metadata)


def _plain(value: Any) -> Any:
    """A suite's list (YAML, JSON) as the tuple a loader declares; a path as its string."""
    if isinstance(value, list):
        return tuple(_plain(item) for item in value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def _explain(model: type[BaseModel], problem: ErrorDetails) -> str:
    option, *inner = problem["loc"]
    assert isinstance(option, str)  # a model's errors start at a field's name
    fields = model.model_fields
    if problem["type"] == "extra_forbidden":
        return f"no option {option!r}; the options are {', '.join(fields)}"
    field = fields[option]
    doc = f" ({field.description})" if field.description else ""
    if problem["type"] == "missing":
        return f"the option {option} is required{doc}"
    where = option + "".join(f"[{i}]" for i in inner if isinstance(i, int))
    reason = problem["msg"][0].lower() + problem["msg"][1:]
    return (
        f"{where}={problem['input']!r} is not allowed ({reason}); {option} must be "
        f"{allowed(field)}{doc}"
    )


def _describe_type(annotation: Any, metadata: list | tuple = ()) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        inner, *extras = args
        unpacked = [
            m
            for extra in extras
            for m in (extra.metadata if isinstance(extra, FieldInfo) else [extra])
        ]
        return _describe_type(inner, unpacked)
    if origin in (Union, types.UnionType):
        kinds = " or ".join(_describe_type(a) for a in args if a is not type(None))
        return kinds + (", or null" if type(None) in args else "")
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is tuple:
        shortest = [m.min_length for m in metadata if isinstance(m, annotated_types.MinLen)]
        length = f" (at least {shortest[0]})" if shortest else ""
        return f"a list{length} whose items are each {_describe_type(args[0])}"
    text = _TYPE_NAMES.get(annotation, getattr(annotation, "__name__", str(annotation)))
    bounds = [
        f"{symbol} {getattr(m, attribute)}"
        for m in metadata
        for kind, attribute, symbol in _BOUNDS
        if isinstance(m, kind)
    ]
    return " ".join([text, " and ".join(bounds)]) if bounds else text
