"""Checkpoint folders: atomic writes, the newest complete one, and the total limit.

A checkpoint is ``OUTPUT_DIR/checkpoint-STEP``: the Accelerate state (``model.safetensors``; the optimizer, the
learning-rate scheduler and each process's RNG states in Accelerate's own ``torch.save`` files), plus
``ema.safetensors`` (the averaged weights, with ``--use_ema``) and ``trainer_state.json`` (the step, from which the
data position follows, and the counters). It is written into ``OUTPUT_DIR/.tmp-checkpoint-STEP`` and renamed to its
final name only once complete (a rename is atomic), so a crash mid-write — ``kill -9`` included — leaves at most a
``.tmp-`` folder, which :func:`latest_checkpoint` never picks and the next save removes.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable

CHECKPOINT_PREFIX = "checkpoint-"
TMP_PREFIX = ".tmp-"
_NAME = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_dir(output_dir: str, step: int) -> str:
    """``output_dir/checkpoint-STEP``."""
    return os.path.join(output_dir, f"{CHECKPOINT_PREFIX}{step}")


def tmp_checkpoint_dir(output_dir: str, step: int) -> str:
    """``output_dir/.tmp-checkpoint-STEP``: where checkpoint ``STEP`` is written before its rename."""
    return os.path.join(output_dir, f"{TMP_PREFIX}{CHECKPOINT_PREFIX}{step}")


def list_checkpoints(output_dir: str) -> list[tuple[int, str]]:
    """The complete checkpoints of ``output_dir`` as ``(step, path)``, oldest first (``.tmp-`` folders excluded)."""
    if not os.path.isdir(output_dir):
        return []
    found = []
    for name in os.listdir(output_dir):
        match = _NAME.match(name)
        path = os.path.join(output_dir, name)
        if match and os.path.isdir(path):
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(output_dir: str) -> str | None:
    """The newest complete checkpoint of ``output_dir``, or None when it has none."""
    found = list_checkpoints(output_dir)
    return found[-1][1] if found else None


def _fsync_tree(path: str) -> None:
    """Flush every file under ``path`` to disk, so that the rename publishes data that survives a power cut too."""
    for root, _, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def begin_checkpoint(output_dir: str, step: int) -> str:
    """Make an empty ``output_dir/.tmp-checkpoint-STEP`` (removing a leftover of a crashed save) and return it."""
    tmp = tmp_checkpoint_dir(output_dir, step)
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    return tmp


def commit_checkpoint(tmp: str, output_dir: str, step: int) -> str:
    """Publish the complete folder ``tmp`` as ``output_dir/checkpoint-STEP`` by one atomic rename."""
    final = checkpoint_dir(output_dir, step)
    _fsync_tree(tmp)
    if os.path.exists(final):  # an earlier run's checkpoint of the same step: move it away first
        stale = os.path.join(output_dir, f"{TMP_PREFIX}old-{CHECKPOINT_PREFIX}{step}")
        shutil.rmtree(stale, ignore_errors=True)
        os.replace(final, stale)
        shutil.rmtree(stale)
    os.replace(tmp, final)
    _fsync_dir(output_dir)
    return final


def prune_checkpoints(output_dir: str, total_limit: int | None, log: Callable[[str], None] = print) -> list[str]:
    """Remove the oldest checkpoints beyond ``total_limit``; returns the removed paths.

    Each is first renamed to a ``.tmp-`` name, so a crash mid-removal never leaves a partial ``checkpoint-*``.
    """
    if total_limit is None:
        return []
    removed = []
    found = list_checkpoints(output_dir)
    for step, path in found[: max(0, len(found) - total_limit)]:
        doomed = os.path.join(output_dir, f"{TMP_PREFIX}removed-{CHECKPOINT_PREFIX}{step}")
        shutil.rmtree(doomed, ignore_errors=True)
        os.replace(path, doomed)
        shutil.rmtree(doomed)
        removed.append(path)
        log(f"Removed {path} (--checkpoints_total_limit {total_limit}).")
    return removed


def remove_leftovers(output_dir: str) -> list[str]:
    """Remove the ``.tmp-`` folders that crashed saves or removals left in ``output_dir``."""
    if not os.path.isdir(output_dir):
        return []
    leftovers = [
        os.path.join(output_dir, n)
        for n in os.listdir(output_dir)
        if n.startswith(TMP_PREFIX) and CHECKPOINT_PREFIX in n
    ]
    for path in leftovers:
        shutil.rmtree(path, ignore_errors=True)
    return leftovers


def resolve_resume(output_dir: str, resume_from_checkpoint: str | None) -> str | None:
    """The checkpoint folder to resume from: ``"latest"`` -> the newest in ``output_dir`` (None if none), a path ->
    that folder (a ``ValueError`` if it is not a complete checkpoint)."""
    if resume_from_checkpoint is None:
        return None
    if resume_from_checkpoint == "latest":
        return latest_checkpoint(output_dir)
    path = resume_from_checkpoint
    if not os.path.isdir(path) or not _NAME.match(os.path.basename(os.path.normpath(path))):
        raise ValueError(
            f"Expected --resume_from_checkpoint to be 'latest' or a checkpoint-STEP folder, got {path!r}."
        )
    return path


def checkpoint_step(path: str) -> int:
    """The step of a ``checkpoint-STEP`` folder."""
    match = _NAME.match(os.path.basename(os.path.normpath(path)))
    if match is None:
        raise ValueError(f"Expected a checkpoint-STEP folder, got {path!r}.")
    return int(match.group(1))
