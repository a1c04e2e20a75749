"""Where the training metrics go: JSON lines, TensorBoard (through Accelerate's tracker), or nowhere."""

from __future__ import annotations

import json
import os
from typing import Any

from accelerate import Accelerator

from .run_folder import replace_atomically, writing

METRICS_FILE = os.path.join("logs", "metrics.jsonl")


class MetricsLogger:
    """Log dicts of scalars at a step, from the main process only.

    Args:
        kind: ``"jsonl"`` (one JSON object per line in ``output_dir/logs/metrics.jsonl``, each with its ``step``),
            ``"tensorboard"`` (``output_dir/logs/``; needs the ``tensorboard`` package) or ``"none"``.
        output_dir: the run's folder.
        accelerator: the run's accelerator (it owns the TensorBoard tracker).
        hparams: the run's configuration, recorded by TensorBoard.
        resume_step: the run's first step: the JSON lines an interrupted run wrote after it are dropped, so the file
            reads as one uninterrupted run (a new run passes 0).

    ``history`` holds what was logged (main process, every kind), with the kept lines of a resumed JSON-lines file
    first: the learning curve is drawn from it (:mod:`pixelprior.training.curve`).
    """

    def __init__(
        self,
        kind: str,
        output_dir: str,
        accelerator: Accelerator,
        hparams: dict[str, Any] | None = None,
        resume_step: int | None = None,
    ) -> None:
        self.kind, self.accelerator = kind, accelerator
        self.path = os.path.join(output_dir, METRICS_FILE)
        self.history: list[dict[str, Any]] = []
        if kind == "tensorboard":
            flat = {
                k: v if isinstance(v, (int, float, str, bool)) else json.dumps(v) for k, v in (hparams or {}).items()
            }
            accelerator.init_trackers("pixelprior", config=flat)
        elif kind == "jsonl" and accelerator.is_main_process:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            if resume_step is not None and os.path.exists(self.path):
                self._keep_until(resume_step)
        elif kind not in ("jsonl", "none"):
            raise ValueError(f"Expected logger to be one of ['jsonl', 'tensorboard', 'none'], got {kind!r}.")

    def _keep_until(self, step: int) -> None:
        """Drop the lines after ``step`` (and a line a killed run left half-written), rewriting the file atomically."""
        kept = []
        with open(self.path) as f:
            for line in f:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict) and record.get("step", 0) <= step:
                    kept.append(record)
        with writing(self.path, "the metrics log"), replace_atomically(self.path) as tmp, open(tmp, "w") as f:
            f.writelines(json.dumps(record) + "\n" for record in kept)
        self.history = kept

    def event(self, name: str, details: dict[str, Any], step: int) -> None:
        """Record a non-scalar event at ``step`` (a resume's changed flags, a failure): a JSON line, or TensorBoard
        text."""
        if self.kind == "tensorboard":
            self.accelerator.log({f"event/{name}": json.dumps(details)}, step=step)
        elif self.kind == "jsonl" and self.accelerator.is_main_process:
            with open(self.path, "a") as f:
                f.write(json.dumps({"step": step, "event": name, **details}) + "\n")

    def log(self, values: dict[str, float], step: int) -> None:
        """Record ``values`` at ``step`` (called on every process; only the main one writes)."""
        if self.accelerator.is_main_process:
            self.history.append({"step": step, **values})
        if self.kind == "tensorboard":
            self.accelerator.log(values, step=step)
        elif self.kind == "jsonl" and self.accelerator.is_main_process:
            with open(self.path, "a") as f:
                f.write(json.dumps({"step": step, **values}) + "\n")

    def close(self) -> None:
        if self.kind == "tensorboard":
            self.accelerator.end_training()


def check_logger_available(kind: str) -> None:
    """Raise a ValueError saying what to install when the ``kind`` logger's package is missing."""
    if kind == "tensorboard":
        from accelerate.utils import is_tensorboard_available

        if not is_tensorboard_available():
            raise ValueError(
                "Expected the tensorboard package for --logger tensorboard, got none installed: "
                "pip install tensorboard (or pass --logger jsonl)."
            )
