"""Checkpoint folders: atomic writes, the newest complete one, recovery after a crash, and the total limit.

A checkpoint is ``OUTPUT_DIR/checkpoint-STEP`` (its files: :mod:`.resume`). It is written into
``OUTPUT_DIR/.tmp-checkpoint-STEP`` and renamed to its final name only once complete (a rename is atomic), so a
crash mid-write — ``kill -9`` included — leaves at most a ``.tmp-`` folder, which :func:`latest_checkpoint` never
picks and the next start removes.

Re-saving a step that already has a checkpoint (a run resumed from an earlier one) moves the old copy to
``.tmp-old-checkpoint-STEP``, renames the new copy into place, and only then removes the old one. A crash between
the two renames leaves no ``checkpoint-STEP``: :func:`recover_checkpoints` (at the next start) renames the old copy
back. No step ever loses its only complete copy.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field

from .run_folder import fsync_dir, fsync_tree

CHECKPOINT_PREFIX = "checkpoint-"
TMP_PREFIX = ".tmp-"
_NAME = re.compile(r"^checkpoint-(\d+)$")
_OLD = re.compile(r"^\.tmp-old-checkpoint-(\d+)$")
_LEFTOVER = re.compile(r"^\.tmp-(removed-)?checkpoint-\d+$|^\.tmp-\d+-")  # crashed saves, removals, atomic writes


def checkpoint_dir(output_dir: str, step: int) -> str:
    """``output_dir/checkpoint-STEP``."""
    return os.path.join(output_dir, f"{CHECKPOINT_PREFIX}{step}")


def tmp_checkpoint_dir(output_dir: str, step: int) -> str:
    """``output_dir/.tmp-checkpoint-STEP``: where checkpoint ``STEP`` is written before its rename."""
    return os.path.join(output_dir, f"{TMP_PREFIX}{CHECKPOINT_PREFIX}{step}")


def _old_copy(output_dir: str, step: int) -> str:
    return os.path.join(output_dir, f"{TMP_PREFIX}old-{CHECKPOINT_PREFIX}{step}")


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


def begin_checkpoint(output_dir: str, step: int) -> str:
    """Make an empty ``output_dir/.tmp-checkpoint-STEP`` (removing a leftover of a crashed save) and return it."""
    tmp = tmp_checkpoint_dir(output_dir, step)
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    return tmp


def commit_checkpoint(tmp: str, output_dir: str, step: int) -> str:
    """Publish the complete folder ``tmp`` as ``output_dir/checkpoint-STEP`` by an atomic rename.

    An existing checkpoint of the same step is renamed away first and removed only after the new copy is in place.
    """
    final = checkpoint_dir(output_dir, step)
    fsync_tree(tmp)
    old = _old_copy(output_dir, step)
    replacing = os.path.exists(final)
    if replacing:
        if os.path.exists(old):  # a leftover of an earlier crash; `final` is complete
            shutil.rmtree(old)
        os.rename(final, old)
    os.rename(tmp, final)
    fsync_dir(output_dir)
    if replacing:
        shutil.rmtree(old)
    return final


@dataclass
class Recovery:
    """What :func:`recover_checkpoints` did: the checkpoints it renamed back, the leftovers it removed."""

    restored: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def recover_checkpoints(output_dir: str) -> Recovery:
    """Repair what a crash left in ``output_dir`` (call under the run's lock, before anything else).

    An old copy whose step has no checkpoint (a crash between the two renames of a re-save) is renamed back; an old
    copy whose new one is in place, partial ``.tmp-checkpoint-STEP`` folders, half-removed checkpoints (pruned: they
    were being deleted) and temporary files of interrupted atomic writes are removed.
    """
    recovery = Recovery()
    if not os.path.isdir(output_dir):
        return recovery
    for name in sorted(os.listdir(output_dir)):
        path = os.path.join(output_dir, name)
        old = _OLD.match(name)
        if old and not os.path.exists(checkpoint_dir(output_dir, int(old.group(1)))):
            os.rename(path, checkpoint_dir(output_dir, int(old.group(1))))
            recovery.restored.append(checkpoint_dir(output_dir, int(old.group(1))))
        elif old or _LEFTOVER.match(name):
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
            recovery.removed.append(path)
    fsync_dir(output_dir)
    return recovery


def remove_leftovers(output_dir: str) -> list[str]:
    """:func:`recover_checkpoints`; returns the removed leftovers."""
    return recover_checkpoints(output_dir).removed


def prune_checkpoints(
    output_dir: str,
    total_limit: int | None,
    owned: Callable[[str], bool] = lambda path: True,
    log: Callable[[str], None] = print,
) -> list[str]:
    """Remove the oldest checkpoints beyond ``total_limit``, counting and removing only ``owned`` ones (the run's
    own: a run never deletes a checkpoint it did not write); returns the removed paths.

    Each is first renamed to a ``.tmp-removed-`` name, so a crash mid-removal never leaves a partial ``checkpoint-*``.
    """
    if total_limit is None:
        return []
    removed = []
    found = [(step, path) for step, path in list_checkpoints(output_dir) if owned(path)]
    for step, path in found[: max(0, len(found) - total_limit)]:
        doomed = os.path.join(output_dir, f"{TMP_PREFIX}removed-{CHECKPOINT_PREFIX}{step}")
        if os.path.exists(doomed):
            shutil.rmtree(doomed)
        os.rename(path, doomed)
        shutil.rmtree(doomed)
        removed.append(path)
        log(f"Removed {path} (--checkpoints_total_limit {total_limit}).")
    return removed


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
