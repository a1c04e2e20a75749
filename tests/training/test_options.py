"""Options declared once: their checks, their record (secrets left out) and their docstring."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from pixelprior.training import TrainConfig
from pixelprior.training.options import (
    POSITIVE_INT,
    check_options,
    describe_options,
    in_range,
    option,
    options_as_json,
)


@dataclass
class Options:
    steps: int = option(3, help="how many", group="g", check=POSITIVE_INT)
    rate: float | None = option(None, help="how fast", group="g", check=in_range(0, 1, low_open=True))
    names: tuple[str, ...] = option(default_factory=tuple, help="which", group="g")
    token: str | None = option(None, help="a Hub token", group="g", secret=True)

    def __post_init__(self) -> None:
        check_options(self)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"steps": 0}, "Expected steps to be a positive integer, got 0."),
        ({"steps": True}, "Expected steps to be an int, got True."),
        ({"steps": 2.0}, "Expected steps to be an int, got 2.0."),
        ({"rate": 0.0}, r"Expected rate to be a number in \(0, 1\], got 0.0."),
        ({"rate": float("nan")}, r"Expected rate to be a number in \(0, 1\], got nan."),
        ({"rate": "0.5"}, "Expected rate to be a number or None, got '0.5'."),
        ({"names": ["a", 1]}, r"Expected names to be a list of strings, got \['a', 1\]."),
    ],
)
def test_a_bad_value_says_what_was_expected(bad, message):
    with pytest.raises(ValueError, match=message):
        Options(**bad)


def test_secrets_are_never_recorded_and_the_docstring_lists_every_option():
    assert options_as_json(Options(names=("a",), token="hf_secret")) == {"steps": 3, "rate": None, "names": ["a"]}
    assert describe_options(Options).splitlines()[1:] == [
        "    steps: how many",
        "    rate: how fast",
        "    names: which",
        "    token: a Hub token",
    ]
    assert "    learning_rate: Adam's base learning rate" in TrainConfig.__doc__
