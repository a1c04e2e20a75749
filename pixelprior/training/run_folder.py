"""The run's output folder: one run owns it (a lock), nothing is lost in it, every file appears whole.

* **One run owns its folder.** :class:`RunLock` holds an exclusive ``fcntl.flock`` on ``OUTPUT_DIR/.pixelprior.lock``
  for the whole run; the kernel releases it when the process ends, ``kill -9`` included, so a stale lock cannot
  exist. The file holds the holder's PID, so that a second run can name it.
* **Nothing is overwritten that the run did not make.** :func:`earlier_outputs` lists what another run left (its
  checkpoints, pipeline, logs, samples); a new run refuses such a folder, or with ``--overwrite_output_dir`` moves
  them into ``OUTPUT_DIR/overwritten-TIME/`` (:func:`move_aside`): nothing is deleted.
* **Every file appears whole.** :func:`replace_atomically` writes a file under a temporary name and renames it into
  place (a rename is atomic); :func:`publish_folder` moves a complete folder's files into place one rename each, and
  is finished by the next start (:func:`finish_publishing`) if the process dies half-way, so a saved pipeline is
  never a mixture of a partial write and an old one.
* **Write failures name the path.** :func:`writing` turns a full disk or an unwritable path into one
  :class:`OutputError` line naming the file.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..paths import file_above

LOCK_FILE = ".pixelprior.lock"
PUBLISHING = ".tmp-publish"  # a folder being moved into place: its files, then the marker COMPLETE
COMPLETE = ".complete"
OVERWRITTEN_PREFIX = "overwritten-"
# What a pixelprior run writes at the top of its folder besides checkpoint-STEP folders: the pipeline's files (with
# its component folders) and the logs.
PIPELINE_FILES = ("model_index.json", "train_results.json", "README.md")
LOGS = ("logs", "samples")


class OutputError(OSError):
    """A file of the run could not be written (a full disk, a read-only or vanished folder); the message names it."""


@contextmanager
def writing(path: str, what: str) -> Iterator[None]:
    """Turn a failure to write ``path`` into one :class:`OutputError` line naming it (a safetensors write error, such
    as a full disk, included)."""
    from safetensors import SafetensorError

    try:
        yield
    except OutputError:
        raise
    except (OSError, SafetensorError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        code = error.errno if isinstance(error, OSError) else None
        hint = " (the disk is full)" if code == errno.ENOSPC or "StorageFull" in str(error) else ""
        raise OutputError(f"Could not write {what} {path}: {reason}{hint}.") from error


def fsync_dir(path: str) -> None:
    """Flush a folder's entries (renames, new files) to disk, where the platform allows it."""
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


def fsync_tree(path: str) -> None:
    """Flush every file under ``path`` to disk, so that a rename publishes data that survives a power cut too."""
    for root, _, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


@contextmanager
def replace_atomically(path: str) -> Iterator[str]:
    """Yield a temporary path beside ``path`` to write; on success it is flushed and renamed to ``path``.

    A reader (or a process killed mid-write) sees the old file or the new one, never a part. On an error the
    temporary file is removed and the old file is left as it was.
    """
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".tmp-{os.getpid()}-{name}")
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.remove(tmp)
        raise
    fsync_dir(folder)


def write_json(path: str, value: Any, what: str = "file") -> None:
    """Write ``value`` as JSON to ``path`` atomically; a failure is an :class:`OutputError` naming ``path``."""
    with writing(path, what), replace_atomically(path) as tmp, open(tmp, "w") as f:
        json.dump(value, f, indent=2)
        f.write("\n")


class RunLock:
    """An exclusive lock on a run folder for the life of this object's process (``fcntl.flock``).

    Args:
        folder: the run's folder (it must exist).

    Raises:
        ValueError: another process holds the lock (its PID is named), or the folder is not writable.
    """

    def __init__(self, folder: str) -> None:
        self.path = os.path.join(folder, LOCK_FILE)
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise ValueError(
                f"Expected --output_dir {folder!r} to be a writable folder, got {error.strerror} for {self.path}."
            ) from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(self._fd)
            raise ValueError(
                f"Expected --output_dir {folder!r} to be free, got a run holding its lock {self.path} (PID {holder}): "
                "wait for it to end, or use another --output_dir."
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        """Release the lock (also released by the kernel when the process ends)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def prepare_output_dir(folder: str) -> None:
    """Create the run's folder; a path under a file or on a read-only file system is a ``ValueError`` naming it."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ValueError(f"Expected --output_dir to be a folder, got {folder!r}, which is a file.")
    if file_above(folder) is not None:
        raise ValueError(
            f"Expected --output_dir to be a folder that can be created, got {folder!r}, under the file "
            f"{file_above(folder)!r}."
        )
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise ValueError(
            f"Expected --output_dir to be a folder that can be created, got {folder!r}: {error}"
        ) from None


def pipeline_components(folder: str) -> list[str]:
    """The component folders a saved pipeline's ``model_index.json`` names (``prior``, ``vqvae``...)."""
    try:
        with open(os.path.join(folder, "model_index.json")) as f:
            index = json.load(f)
    except (OSError, ValueError):
        return []
    if not isinstance(index, dict):
        return []
    return [name for name in index if not name.startswith("_") and os.path.isdir(os.path.join(folder, name))]


def pipeline_outputs(folder: str) -> list[str]:
    """The names of a saved pipeline in ``folder`` (``model_index.json``, its components, the results and the card
    written with it), or [] when it holds none."""
    if not os.path.exists(os.path.join(folder, "model_index.json")):
        return []
    names = [*pipeline_components(folder), *PIPELINE_FILES]
    return sorted(name for name in set(names) if os.path.lexists(os.path.join(folder, name)))


def earlier_outputs(folder: str, checkpoints: list[str]) -> list[str]:
    """The names in ``folder`` that an earlier run wrote, when it left checkpoints (``checkpoints``: their folder
    names) or a pipeline: those, the pipeline's, and its logs and samples."""
    pipeline = pipeline_outputs(folder)
    if not pipeline and not checkpoints:
        return []
    names = [*checkpoints, *pipeline, *(name for name in LOGS if os.path.lexists(os.path.join(folder, name)))]
    return sorted(set(names))


def move_aside(folder: str, names: list[str]) -> str:
    """Move ``names`` of ``folder`` into a new ``folder/overwritten-TIME/`` (renames: nothing is copied or deleted)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = os.path.join(folder, f"{OVERWRITTEN_PREFIX}{stamp}")
    suffix = 1
    while os.path.exists(aside):
        suffix += 1
        aside = os.path.join(folder, f"{OVERWRITTEN_PREFIX}{stamp}-{suffix}")
    os.makedirs(aside)
    for name in names:
        os.rename(os.path.join(folder, name), os.path.join(aside, name))
    fsync_dir(folder)
    return aside


def _relative_files(root: str) -> list[str]:
    found = []
    for where, _, files in os.walk(root):
        found += [os.path.relpath(os.path.join(where, name), root) for name in files if name != COMPLETE]
    return sorted(found)


def begin_publishing(folder: str) -> str:
    """An empty ``folder/.tmp-publish`` to save a complete folder (a pipeline) into before :func:`publish_folder`."""
    tmp = os.path.join(folder, PUBLISHING)
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    return tmp


def publish_folder(folder: str) -> None:
    """Move every file of the complete ``folder/.tmp-publish`` to the same place in ``folder``, each by one rename.

    The marker written first makes the move resumable: if the process dies half-way, :func:`finish_publishing` at
    the next start completes it (every rename replaces a file whole), so the published files are never a mixture.
    """
    tmp = os.path.join(folder, PUBLISHING)
    try:
        fsync_tree(tmp)
        with open(os.path.join(tmp, COMPLETE), "w"):
            pass
        fsync_dir(tmp)
    except BaseException:  # not marked complete: nothing was published yet
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _move_published(folder)


@contextmanager
def publishing(folder: str) -> Iterator[str]:
    """Yield an empty ``folder/.tmp-publish`` to write a complete set of files into; on success they are published
    (:func:`publish_folder`), on an error before that the partial folder is removed (the old files stay)."""
    tmp = begin_publishing(folder)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    publish_folder(folder)


def _move_published(folder: str) -> None:
    tmp = os.path.join(folder, PUBLISHING)
    for rel in _relative_files(tmp):
        target = os.path.join(folder, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(os.path.join(tmp, rel), target)
    fsync_dir(folder)
    shutil.rmtree(tmp)


def finish_publishing(folder: str) -> str | None:
    """At start-up: complete a publication that a killed process left (its marker is there), or remove a partial
    one (no marker: the folder was not complete, the published files are still the old ones). Returns what was done.
    """
    tmp = os.path.join(folder, PUBLISHING)
    if not os.path.isdir(tmp):
        return None
    if os.path.exists(os.path.join(tmp, COMPLETE)):
        _move_published(folder)
        return "completed"
    shutil.rmtree(tmp)
    return "removed"
