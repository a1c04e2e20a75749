"""``logs/curve.png``: the logged train and test bits/dim against the step, a resumed run's earlier steps included."""

from __future__ import annotations

import json
import math

from accelerate import Accelerator
from PIL import Image

from pixelprior.training.curve import LearningCurve
from pixelprior.training.loggers import MetricsLogger


def test_the_curve_holds_the_finite_logged_bits_per_dim_and_draws_a_png(tmp_path):
    records = [
        {"step": 2, "train/loss": 0.9, "train/lr": 1e-3},
        {"step": 4, "train/loss": math.nan},  # a skipped step: not drawn
        {"step": 4, "test/bits_per_dim": 0.8},
        {"event": "resume", "step": 4},  # not a metric
        {"step": 6, "train/loss": 0.7, "train/bits_per_dim": 0.72, "test/bits_per_dim": 0.75},
    ]
    curve = LearningCurve.from_records(records)
    assert (curve.train_batches.steps, curve.train_batches.values) == ([2, 6], [0.9, 0.7])
    assert (curve.test.steps, curve.test.values) == ([4, 6], [0.8, 0.75])
    assert (curve.train_exact.steps, curve.train_exact.values) == ([6], [0.72])
    path = curve.plot(str(tmp_path / "logs" / "curve.png"), "a run", evaluated="EMA weights")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (768, 480)
    assert LearningCurve.from_records([{"step": 1, "train/lr": 0.1}]).is_empty()


def test_a_resumed_run_draws_the_steps_before_its_checkpoint(tmp_path):
    (tmp_path / "logs").mkdir()
    lines = [{"step": 1, "train/loss": 1.0}, {"step": 2, "train/loss": 0.9}, {"step": 3, "train/loss": 0.8}]
    (tmp_path / "logs" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    logger = MetricsLogger("jsonl", str(tmp_path), Accelerator(cpu=True), resume_step=2)  # step 3 was not saved
    logger.log({"train/loss": 0.85}, 3)
    assert LearningCurve.from_records(logger.history).train_batches.values == [1.0, 0.9, 0.85]
