"""Checkpoint folders survive a crash at every file-system operation of a commit, a re-save and a removal.

A crash is simulated by an exception raised instead of the k-th ``os.rename`` / ``os.replace`` /
``shutil.rmtree`` call (nothing after it runs, as after ``kill -9``); the next start's recovery must then find every
step complete (its old or its new copy), never lost and never partial. ``test_processes.py`` kills real processes.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager

import pytest

from pixelprior.training import checkpoint as ckpt


class Crash(Exception):
    pass


@contextmanager
def crash_at(k: int):
    """Raise :class:`Crash` instead of the ``k``-th renaming or removing call (0-based); count them all."""
    calls = {"n": 0}
    originals = {"rename": os.rename, "replace": os.replace, "rmtree": shutil.rmtree}

    def wrap(name, function):
        def call(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] - 1 == k:
                raise Crash(f"{name} #{k}")
            return function(*args, **kwargs)

        return call

    os.rename, os.replace = wrap("rename", originals["rename"]), wrap("replace", originals["replace"])
    shutil.rmtree = wrap("rmtree", originals["rmtree"])
    try:
        yield calls
    finally:
        os.rename, os.replace, shutil.rmtree = originals["rename"], originals["replace"], originals["rmtree"]


def _save(out, step: int, content: str) -> None:
    tmp = ckpt.begin_checkpoint(str(out), step)
    with open(os.path.join(tmp, "state.txt"), "w") as f:
        f.write(content)
    ckpt.commit_checkpoint(tmp, str(out), step)


def _content(out, step: int) -> str | None:
    path = os.path.join(ckpt.checkpoint_dir(str(out), step), "state.txt")
    return open(path).read() if os.path.exists(path) else None


@pytest.mark.parametrize("k", range(6))
def test_a_resave_interrupted_anywhere_keeps_a_complete_copy(tmp_path, k):
    _save(tmp_path, 5, "old")
    tmp = ckpt.begin_checkpoint(str(tmp_path), 5)
    with open(os.path.join(tmp, "state.txt"), "w") as f:
        f.write("new")
    # The commit's operations: rename the old copy away, rename the new one in, remove the old one.
    with crash_at(k) as calls:
        try:
            ckpt.commit_checkpoint(tmp, str(tmp_path), 5)
        except Crash:
            pass
    assert calls["n"] == min(k + 1, 3)
    ckpt.recover_checkpoints(str(tmp_path))
    # k = 1 is the crash between the two renames: no checkpoint-5 until the recovery renamed the old copy back.
    assert _content(tmp_path, 5) == ("old" if k < 2 else "new")  # never lost, never partial
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-5"]  # and nothing left behind


@pytest.mark.parametrize("k", range(4))
def test_a_prune_interrupted_anywhere_removes_only_what_it_was_removing(tmp_path, k):
    for step in (1, 2, 3):
        _save(tmp_path, step, f"s{step}")
    with crash_at(k):
        try:
            ckpt.prune_checkpoints(str(tmp_path), 1, log=lambda _: None)
        except Crash:
            pass
    ckpt.recover_checkpoints(str(tmp_path))
    kept = [step for step, _ in ckpt.list_checkpoints(str(tmp_path))]
    assert kept[-1] == 3 and set(kept) <= {1, 2, 3}
    assert all(_content(tmp_path, step) == f"s{step}" for step in kept)
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")]


def test_prune_counts_and_removes_only_the_runs_own_checkpoints(tmp_path):
    for step in (1, 2, 3, 4):
        _save(tmp_path, step, "mine" if step != 2 else "theirs")
    removed = ckpt.prune_checkpoints(
        str(tmp_path), 1, owned=lambda path: _content(tmp_path, ckpt.checkpoint_step(path)) == "mine", log=print
    )
    assert [ckpt.checkpoint_step(p) for p in removed] == [1, 3]
    assert [s for s, _ in ckpt.list_checkpoints(str(tmp_path))] == [2, 4]


def test_recovery_renames_back_the_only_copy_and_removes_leftovers(tmp_path):
    _save(tmp_path, 7, "only")
    os.rename(tmp_path / "checkpoint-7", tmp_path / ".tmp-old-checkpoint-7")  # killed between a re-save's renames
    os.makedirs(tmp_path / ".tmp-checkpoint-7")  # ... whose new copy was not complete
    os.makedirs(tmp_path / ".tmp-removed-checkpoint-3")  # a removal that was under way
    (tmp_path / ".tmp-123-train_results.json").write_text("{")  # an atomic write that was under way
    recovery = ckpt.recover_checkpoints(str(tmp_path))
    assert recovery.restored == [str(tmp_path / "checkpoint-7")] and _content(tmp_path, 7) == "only"
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-7"] and len(recovery.removed) == 3
