"""Argument types shared by the ``pixelprior`` subcommands, and flags derived from a dataclass of options.

Every type says what it expected and what it got. :func:`add_options` makes one flag per field of an options
dataclass (:class:`~pixelprior.training.TrainConfig`): the flag's type, default, choices, check, help and group
are the field's, so the command line cannot drift from the library.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable, Iterable
from typing import Any

from ..training.options import NONNEGATIVE_INT, POSITIVE_INT, POSITIVE_NUMBER, Check, option_info, option_type


def checked(convert: Callable[[str], Any], check: Check | None, what: str | None = None) -> Callable[[str], Any]:
    """An argparse ``type``: ``convert(text)``, accepted when it passes ``check``; else "expected WHAT, got TEXT"."""

    def parse(text: str) -> Any:
        expected = what or (check.describe() if check is not None else getattr(convert, "__name__", "a value"))
        try:
            value = convert(text)
        except (ValueError, argparse.ArgumentTypeError):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if check is not None and not check.ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


positive_int = checked(int, POSITIVE_INT)
positive_float = checked(float, POSITIVE_NUMBER)
nonnegative_int = checked(int, NONNEGATIVE_INT)


def json_object(text: str) -> dict[str, Any]:
    """An argparse ``type``: a JSON object such as ``'{"num_layers": 2}'``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(
            f"expected a JSON object such as '{{\"num_layers\": 2}}', got {text!r} ({error})"
        ) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"num_layers\": 2}}', got {text!r}")
    return value


def comma_list(text: str) -> tuple[str, ...]:
    """An argparse ``type``: comma-separated names, e.g. ``learning_rate,max_steps`` (the names are checked by the
    options dataclass)."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


class NegatableFlag(argparse.Action):
    """A bool option on by default: ``--NAME`` sets it (accepted, as scripts pass it) and ``--no_NAME`` clears it."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string: str | None = None) -> None:
        setattr(namespace, self.dest, not option_string.startswith("--no_"))


_CONVERT: dict[type, Callable[[str], Any]] = {int: int, float: float, str: str}
_WORDS = {int: "an integer", float: "a number", str: "a string"}


def _flag_type(cls: type, field: dataclasses.Field) -> dict[str, Any]:
    """The ``add_argument`` keywords that parse and check the value of ``field``."""
    info, kind = option_info(field), option_type(cls, field.name)
    if kind.base is bool:
        return {"action": NegatableFlag if field.default is True else "store_true"}
    if kind.base is dict:
        return {"type": json_object, "metavar": "JSON"}
    if kind.base is tuple:
        return {"type": comma_list, "metavar": "NAME[,NAME...]"}
    if info.choices is not None:
        return {"choices": info.choices}
    return {"type": checked(_CONVERT[kind.base], info.check, info.check.describe() if info.check else None)}


def _default(field: dataclasses.Field) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None if field.default is dataclasses.MISSING else field.default


def add_options(parser: argparse.ArgumentParser, cls: type, order: Iterable[str] = ()) -> None:
    """Add one flag ``--NAME`` (and its aliases) per field of the options dataclass ``cls``, in ``--help`` groups.

    A field without a default is a required flag, unless its type admits None (then the flag's default is None and
    the dataclass's own check decides). Groups appear in the order of ``order`` first, then of first use.
    """
    groups: dict[str, argparse._ArgumentGroup] = {name: parser.add_argument_group(name) for name in order}
    for field in dataclasses.fields(cls):
        info, kind = option_info(field), option_type(cls, field.name)
        if info.group not in groups:
            groups[info.group] = parser.add_argument_group(info.group)
        default = _default(field)
        required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        required = required and not kind.optional
        shown = "" if default in (None, False, {}, ()) else f" (default: {default})"
        flags = [a for a in info.aliases if isinstance(a, str)]
        negation = [f"--no_{field.name}"] if kind.base is bool and default is True else []
        groups[info.group].add_argument(
            f"--{field.name}",
            *negation,
            *flags,
            dest=field.name,
            default=default,
            required=required,
            help=(info.help + shown).replace("%", "%%"),  # argparse formats help with %
            **_flag_type(cls, field),
        )
        for alias in info.aliases:
            if not isinstance(alias, str):  # its own flag, converted into this field (its default is the field's)
                groups[info.group].add_argument(
                    alias.flag, dest=field.name, type=alias.convert, default=argparse.SUPPRESS, help=alias.help
                )
