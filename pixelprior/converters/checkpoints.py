"""Reading other projects' weight files safely, and checking them against the layout a converter expects.

* :func:`read_state_dict`: a ``.safetensors`` file through safetensors, anything else through
  ``torch.load(weights_only=True)`` (PyTorch's allow-list unpickler: tensors and plain containers only, no code
  runs). A file that either refuses becomes one ``ValueError`` line naming the file and the reason.
* :func:`check_layout`: the keys and shapes a converter expects against those found; a mismatch is one
  ``ValueError`` listing the missing and the unexpected keys (or the wrong shapes).
* :func:`write_pipeline`: save a converted pipeline into a new or empty folder, never over a user's files.
"""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile
from collections.abc import Mapping
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

MAX_LISTED = 12  # keys listed per kind in an error message; the rest are counted


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_LISTED])
    return shown + (f", ... ({len(keys) - MAX_LISTED} more)" if len(keys) > MAX_LISTED else "")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a weight file: safetensors, or a ``torch.save``'d state dict read with ``weights_only=True``.

    Raises:
        ValueError: the file is missing, unreadable, refused by the ``weights_only`` unpickler (it holds objects other
            than tensors and plain containers), or not a flat mapping of names to tensors.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"Expected a weight file, got {path!r} (no such file).")
    try:
        if path.endswith(".safetensors"):
            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, SafetensorError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"Expected a state dict of tensors readable with torch.load(weights_only=True) or safetensors, got "
            f"{path!r}, which was refused: {reason}"
        ) from None
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        got = type(state).__name__
        if isinstance(state, Mapping):
            got += " with non-tensor entries " + _listing(
                sorted(str(k) for k, v in state.items() if not isinstance(v, torch.Tensor))
            )
        raise ValueError(f"Expected a flat state dict (parameter name -> tensor) in {path!r}, got a {got}.")
    return dict(state)


def strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """``state`` without ``prefix`` when every key carries it (``module.``: a model saved inside DataParallel)."""
    if state and all(key.startswith(prefix) for key in state):
        return {key[len(prefix) :]: value for key, value in state.items()}
    return state


def check_layout(
    state: Mapping[str, torch.Tensor],
    expected: Mapping[str, tuple[int, ...]],
    what: str,
    ignored: frozenset[str] = frozenset(),
) -> None:
    """Raise unless ``state`` holds exactly the ``expected`` keys (plus ``ignored`` ones) with the expected shapes.

    Args:
        state: the loaded tensors.
        expected: key -> shape of the layout the converter reads.
        what: the layout's name, for the message ("transformers' ImageGPTForCausalImageModeling", ...).
        ignored: keys that may be present and carry nothing the conversion needs (old causal-mask buffers).
    """
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected) - set(ignored))
    if missing or unexpected:
        raise ValueError(
            f"Expected the state dict layout of {what}, got {len(missing)} missing keys [{_listing(missing)}] and "
            f"{len(unexpected)} unexpected keys [{_listing(unexpected)}]."
        )
    wrong = sorted(
        f"{key}: expected {tuple(shape)}, got {tuple(state[key].shape)}"
        for key, shape in expected.items()
        if tuple(state[key].shape) != tuple(shape)
    )
    if wrong:
        raise ValueError(f"Expected the tensor shapes of {what}, got {len(wrong)} wrong: {_listing(wrong)}.")


def as_dtype(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """``model`` in ``dtype`` (a freshly built model is float32: cast only when another dtype is asked for)."""
    if not dtype.is_floating_point:
        raise ValueError(f"Expected a floating-point dtype for the converted model, got {dtype}.")
    return model if dtype == torch.float32 else model.to(dtype)


def check_output_dir(output_dir: str | os.PathLike) -> str:
    """``output_dir`` as an absolute path; raises unless it is a new or an empty folder (nothing is overwritten)."""
    output_dir = os.path.abspath(os.fspath(output_dir))
    if os.path.exists(output_dir) and (not os.path.isdir(output_dir) or os.listdir(output_dir)):
        raise ValueError(
            f"Expected --output_dir to be a new or empty folder, got {output_dir!r}, which "
            f"{'is not a folder' if not os.path.isdir(output_dir) else 'holds files'} (nothing is overwritten)."
        )
    return output_dir


def write_pipeline(pipeline: Any, output_dir: str | os.PathLike) -> str:
    """Save ``pipeline`` (safetensors) into ``output_dir``, which must not exist or be an empty folder.

    The pipeline is written into a temporary folder beside ``output_dir`` and renamed into place when complete, so
    an interrupted conversion leaves no half-written pipeline folder, and nothing already there is overwritten.

    Returns:
        ``output_dir`` as a string.
    """
    output_dir = check_output_dir(output_dir)
    parent = os.path.dirname(output_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".tmp-{os.path.basename(output_dir)}-", dir=parent)
    try:
        pipeline.save_pretrained(tmp, safe_serialization=True)
        if os.path.isdir(output_dir):
            os.rmdir(output_dir)  # empty (checked above); rmdir refuses if a file appeared since
        os.rename(tmp, output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return output_dir
