"""The learning curve of a run: train and test bits/dim against the step, drawn into ``logs/curve.png``.

The points are the metrics the run logged (:class:`~pixelprior.training.loggers.MetricsLogger` keeps them): every
``log_steps`` the mean bits/dim of the step's training batch (``train/loss``, the raw weights), every ``eval_steps``
and at the end the exact test bits/dim over the whole test split (``test/bits_per_dim``, the weights the run
evaluates: the EMA's when it has one), and at the end the exact train bits/dim over the whole train split
(``train/bits_per_dim``). A resumed run's curve starts at step 1 when its metrics file holds the earlier steps
(``--logger jsonl``, the default), else at the resumed step.

Drawn with matplotlib's object API on the Agg canvas: no display, no global pyplot state.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

TRAIN_LOSS, TRAIN_BPD, TEST_BPD = "train/loss", "train/bits_per_dim", "test/bits_per_dim"
CURVE_FILE = os.path.join("logs", "curve.png")  # in the output folder


@dataclass
class Series:
    """One line of the plot: values at steps."""

    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    def add(self, step: int, value: float) -> None:
        self.steps.append(step)
        self.values.append(value)


@dataclass
class LearningCurve:
    """The three series of the plot (see the module)."""

    train_batches: Series = field(default_factory=Series)
    train_exact: Series = field(default_factory=Series)
    test: Series = field(default_factory=Series)

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]]) -> LearningCurve:
        """The curve of logged records ``{"step": k, "train/loss": ..., ...}`` (other keys and records ignored)."""
        curve = cls()
        for record in records:
            step = record.get("step")
            if not isinstance(step, int):
                continue
            for key, series in ((TRAIN_LOSS, curve.train_batches), (TRAIN_BPD, curve.train_exact)):
                if _finite(record.get(key)):
                    series.add(step, float(record[key]))
            if _finite(record.get(TEST_BPD)):
                curve.test.add(step, float(record[TEST_BPD]))
        return curve

    def is_empty(self) -> bool:
        return not (self.train_batches.steps or self.train_exact.steps or self.test.steps)

    def plot(self, path: str, title: str, evaluated: str = "weights") -> str:
        """Draw the curve into the PNG ``path`` (its folder is made); returns ``path``. ``evaluated`` names the
        weights of the whole-split evaluations ("EMA weights")."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        figure = Figure(figsize=(6.4, 4.0), dpi=120)
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        batches, exact, test = self.train_batches, self.train_exact, self.test
        window = max(1, len(batches.steps) // 25)  # a running mean over ~4% of the points, when there are many
        if batches.steps:
            alpha = 0.35 if window > 1 else 1.0
            axes.plot(batches.steps, batches.values, color="tab:blue", alpha=alpha, lw=0.8, label="train (batch)")
        if window > 1:
            smooth = _running_mean(batches.values, window)
            axes.plot(batches.steps, smooth, color="tab:blue", lw=1.6, label=f"train (batch, mean of {window})")
        if exact.steps:
            label = f"train (whole split, {evaluated})"
            axes.plot(exact.steps, exact.values, "s", color="tab:blue", ms=6, label=label)
        if test.steps:
            label = f"test (whole split, {evaluated})"
            axes.plot(test.steps, test.values, "o-", color="tab:orange", ms=4, lw=1.4, label=label)
        axes.set_xlabel("step")
        axes.set_ylabel("bits/dim")
        axes.set_title(title, fontsize=10)
        axes.grid(alpha=0.3)
        if not self.is_empty():
            axes.legend(fontsize=8)
        figure.tight_layout()
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        figure.savefig(path, format="png")
        return path


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _running_mean(values: list[float], window: int) -> list[float]:
    """The mean of each value and the ``window - 1`` before it (fewer at the start)."""
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out
