"""Output paths checked before any work: one home for "can this file be written?" (training, sampling, encoding)."""

from __future__ import annotations

import os


def file_above(path: str) -> str | None:
    """The nearest existing ancestor of ``path`` when it is not a folder (``path`` cannot be made under it)."""
    above = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(above):
        above = os.path.dirname(above)
    return None if os.path.isdir(above) else above


def check_writable_file(path: str, flag: str) -> None:
    """Check before any work that ``path`` can be written: not a folder, its folder creatable and writable.

    Raises:
        ValueError: naming ``flag`` and the path, with the reason.
    """
    if os.path.isdir(path):
        raise ValueError(f"Expected {flag} to be a file name, got {path!r}, which is a folder.")
    if file_above(path) is not None:
        raise ValueError(f"Expected {flag} to be a writable path, got {path!r}, under the file {file_above(path)!r}.")
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, f".tmp-{os.getpid()}-probe")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as error:
        raise ValueError(
            f"Expected {flag} to be a writable path, got {path!r}: {error.strerror} ({folder})."
        ) from None
