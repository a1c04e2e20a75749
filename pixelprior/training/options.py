"""Typed options: a dataclass field that carries its help, its check and its command-line form.

A configuration dataclass (:class:`~pixelprior.training.TrainConfig`) declares each option once, with
:func:`option`; the dataclass checks its values with :func:`check_options` and ``pixelprior train`` derives its
flags from the same fields (:func:`pixelprior.cli.arguments.add_options`), as ``transformers.HfArgumentParser``
derives flags from dataclasses. A default, a type, a range or a list of choices is thus written in one place.

The value types an option may have: ``bool``, ``int``, ``float``, ``str``, ``dict[str, Any]`` (a JSON object on the
command line), ``tuple[str, ...]`` (comma-separated on the command line), each optionally ``| None``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

# What a dataclass option's metadata holds (dataclasses.field(metadata=...)): keys of this module only.
_META = "pixelprior"


@dataclass(frozen=True)
class Check:
    """A check of an option's value: ``ok(value)``, and what was expected in words ("a positive integer").

    ``what`` may be a function, for expectations known only at run time (the registered model names).
    """

    ok: Callable[[Any], bool]
    what: str | Callable[[], str]

    def describe(self) -> str:
        return self.what() if callable(self.what) else self.what


def _finite(value: float) -> bool:
    return math.isfinite(value)


POSITIVE_INT = Check(lambda v: v >= 1, "a positive integer")
NONNEGATIVE_INT = Check(lambda v: v >= 0, "an integer >= 0")
POSITIVE_NUMBER = Check(lambda v: _finite(v) and v > 0, "a positive number")


def in_range(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Check:
    """The numbers between ``low`` and ``high``, each end included unless ``*_open``."""

    def ok(value: float) -> bool:
        above = value > low if low_open else value >= low
        below = value < high if high_open else value <= high
        return _finite(value) and above and below

    return Check(ok, f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}")


@dataclass(frozen=True)
class Alias:
    """Another flag for an option, whose text ``convert`` turns into the option's value (another project's flag
    with its own meaning, e.g. diffusers' ``--dataset_name NAME`` for ``--dataset hf:NAME``)."""

    flag: str
    convert: Callable[[str], Any]
    help: str


@dataclass(frozen=True)
class OptionInfo:
    """The metadata of one option (see :func:`option`)."""

    help: str
    group: str
    check: Check | None = None
    choices: tuple[str, ...] | None = None
    aliases: tuple[str | Alias, ...] = ()
    resume: str = "match"
    secret: bool = False


RESUME_RULES = ("match", "free")


def option(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    group: str,
    check: Check | None = None,
    choices: Sequence[str] | None = None,
    aliases: Sequence[str | Alias] = (),
    resume: str = "match",
    secret: bool = False,
    default_factory: Callable[[], Any] | Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field that is an option: its value is checked, and it is the command-line flag ``--NAME``.

    Args:
        default: the default value (none: the option is required).
        help: one line for ``--help`` (the default is appended there).
        group: the ``--help`` section the flag is listed in.
        check: a range check of the value (the type comes from the annotation).
        choices: the allowed values of a ``str`` option.
        aliases: more flag names, e.g. ``("--train_batch_size",)`` (diffusers' name) for ``batch_size``; an
            :class:`Alias` converts its text first.
        resume: ``"match"`` when a resumed run must have the checkpoint's value (it shapes the trained weights or
            the reported figures), ``"free"`` when it cannot change them (where logs and checkpoints go, how often).
        secret: never recorded (a token): :func:`options_as_json` leaves it out of checkpoints, logs and results,
            and a resume does not compare it.
        default_factory: as in :func:`dataclasses.field`, for mutable defaults.
    """
    if resume not in RESUME_RULES:
        raise ValueError(f"Expected resume to be one of {list(RESUME_RULES)}, got {resume!r}.")
    if secret:
        resume = "free"
    choices = tuple(choices) if choices is not None else None
    info = OptionInfo(help, group, check, choices, tuple(aliases), resume, secret)
    return dataclasses.field(default=default, default_factory=default_factory, metadata={_META: info})


def option_info(field: dataclasses.Field) -> OptionInfo:
    """The :class:`OptionInfo` of a field made by :func:`option`."""
    if _META not in field.metadata:
        raise ValueError(f"Expected field {field.name!r} to be made with option(), got a plain field.")
    return field.metadata[_META]


@dataclass(frozen=True)
class OptionType:
    """A field's value type, read from its annotation: ``base`` is one of bool, int, float, str, dict, tuple."""

    base: type
    optional: bool


_BASES = (bool, int, float, str, dict, tuple)


@functools.cache
def option_type(cls: type, name: str) -> OptionType:
    """The :class:`OptionType` of field ``name`` of the dataclass ``cls``."""
    hint = typing.get_type_hints(cls)[name]
    args = typing.get_args(hint)
    optional = type(None) in args
    if optional:
        (hint,) = [a for a in args if a is not type(None)]
    base = typing.get_origin(hint) or hint
    if base not in _BASES:
        raise ValueError(f"Expected option {name!r} to have one of the types {_BASES}, got {hint!r}.")
    return OptionType(base, optional)


def _type_ok(value: Any, base: type) -> bool:
    if base is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):  # True is an int to Python, not to an option
        return False
    if base is float:
        return isinstance(value, (int, float))
    if base is tuple:
        return isinstance(value, (tuple, list)) and all(isinstance(v, str) for v in value)
    return isinstance(value, base)


def _type_words(kind: OptionType) -> str:
    words = {bool: "a bool", int: "an int", float: "a number", str: "a string", dict: "a dict"}
    words[tuple] = "a list of strings"
    return words[kind.base] + (" or None" if kind.optional else "")


def check_value(cls: type, name: str, value: Any) -> None:
    """Raise a ``ValueError`` saying what was expected when ``value`` is not a valid value of option ``name``."""
    info, kind = option_info(cls.__dataclass_fields__[name]), option_type(cls, name)
    if value is None and kind.optional:
        return
    if not _type_ok(value, kind.base):
        raise ValueError(f"Expected {name} to be {_type_words(kind)}, got {value!r}.")
    if info.choices is not None and value not in info.choices:
        raise ValueError(f"Expected {name} to be one of {list(info.choices)}, got {value!r}.")
    if info.check is not None and not info.check.ok(value):
        raise ValueError(f"Expected {name} to be {info.check.describe()}, got {value!r}.")


def check_options(instance: Any) -> None:
    """Check every option of a dataclass instance (its ``__post_init__`` calls this)."""
    for field in dataclasses.fields(instance):
        check_value(type(instance), field.name, getattr(instance, field.name))


def options_as_json(instance: Any) -> dict[str, Any]:
    """The options of a dataclass instance as plain JSON values (tuples become lists), to record or compare;
    ``secret`` options are left out."""
    values = json.loads(json.dumps(dataclasses.asdict(instance)))
    return {f.name: values[f.name] for f in dataclasses.fields(instance) if not option_info(f).secret}


def describe_options(cls: type) -> str:
    """An ``Args:`` docstring section listing every option of ``cls`` with its help, from the fields themselves."""
    lines = ["Args:"]
    for field in dataclasses.fields(cls):
        info = option_info(field)
        lines.append(f"    {field.name}: {info.help}")
    return "\n".join(lines)
