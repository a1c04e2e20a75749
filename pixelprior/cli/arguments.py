"""Argument types shared by the ``pixelprior`` subcommands: each says what it expected and what it got."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any


def checked(convert: Callable[[str], Any], ok: Callable[[Any], bool], what: str) -> Callable[[str], Any]:
    """An argparse ``type``: ``convert(text)``, accepted when ``ok``; else "expected WHAT, got TEXT"."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


positive_int = checked(int, lambda value: value >= 1, "a positive integer")
positive_float = checked(float, lambda value: value > 0, "a positive number")
nonnegative_int = checked(int, lambda value: value >= 0, "an integer >= 0")


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
