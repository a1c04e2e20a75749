"""The one progress bar: redrawn a few times a second on a terminal, whole lines now and then in a log."""

from __future__ import annotations

import io

import pixelprior.progress as progress
from pixelprior.progress import LogProgress, progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _demo_like_run(stream, steps: int = 6000) -> str:
    bar = progress_bar(total=steps, desc="train", unit="step", file=stream)
    for step in range(steps):  # as the trainer does: the postfix without a redraw, then the update
        bar.set_postfix(loss=f"{0.1 + step / 1e5:.4f}", bpd="0.1300", img_s="270", refresh=False)
        bar.update(1)
        if step == steps // 2:
            bar.write(f"step {step}: test bits/dim 0.1300", file=stream)
    bar.close()
    return stream.getvalue()


def test_a_log_gets_a_line_every_few_percent_and_no_carriage_returns():
    log = _demo_like_run(io.StringIO())
    lines = log.splitlines()
    assert "\r" not in log and len(log) < 5_000, len(log)  # the demo's 6,000 steps wrote 963 KB before
    assert len(lines) == 1 + 20 + 1  # the start, every 5%, and the evaluation line
    assert lines[0].startswith("train:   0%") and lines[-1].startswith("train: 100%|##########| 6000/6000")
    assert "loss=" in lines[-1]


def test_a_slow_log_gets_a_line_every_tens_of_seconds(monkeypatch):
    clock = iter(range(0, 10_000, 7))  # 7 s per update: the time rule (30 s) comes before the 5% one (of 1000)
    monkeypatch.setattr(progress.time, "monotonic", lambda: float(next(clock)))
    stream = io.StringIO()
    bar = LogProgress(total=1000, desc="train", file=stream)
    for _ in range(40):
        bar.update(1)
    bar.close()
    assert 7 <= stream.getvalue().count("\n") <= 10  # ~280 s: one line per 30 s, and the last one


def test_a_terminal_gets_a_redrawn_bar():
    screen = _demo_like_run(Terminal(), steps=2000)
    assert "\r" in screen and screen.count("\r") < 200  # redrawn at most 4 times a second, not once per step
    assert "step 1000: test bits/dim 0.1300\n" in screen


def test_a_disabled_bar_writes_nothing():
    stream = io.StringIO()
    for _ in progress_bar(range(5), desc="sampling", disable=True, file=stream):
        pass
    assert stream.getvalue() == ""
