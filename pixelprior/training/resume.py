"""What a checkpoint holds, and reading it back: exactly, or refused with the reason, and no code from its files.

A ``checkpoint-STEP`` folder holds

* ``trainer_state.json`` (:class:`RunRecord`): the step (the data position and the learning rate are functions of
  it), the run's whole configuration as JSON, its id, the number of processes, the counters, and the history of
  accepted flag changes and inexact resumes;
* ``model.safetensors`` (the prior's weights) and ``ema.safetensors`` (the average, with ``--use_ema``);
* ``optimizer.bin`` (Adam's state) and ``random_states_RANK.pkl`` (each process's Python, NumPy and torch RNG
  states), ``torch.save`` files read back with ``weights_only=True`` only, which builds tensors and plain
  containers and refuses every other object (a payload in them never runs); ``scaler.pt`` with fp16.

There is no learning-rate scheduler file: the schedule is a pure function of the step and of flags the record
holds. A resume compares the record's configuration with the new one (:func:`config_differences`) and refuses any
change not named in ``--allow_config_change``; a missing, corrupt or refused state file stops it with one line
naming the file, unless ``--allow_inexact_resume`` (then the run continues without that state, and says so).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
from dataclasses import dataclass, field
from typing import Any

import torch

from .config import TrainConfig
from .options import option_info, options_as_json

TRAINER_STATE_FILE = "trainer_state.json"
MODEL_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
OPTIMIZER_FILE = "optimizer.bin"
SCALER_FILE = "scaler.pt"
FORMAT = "pixelprior.checkpoint"
# Not a flag, but a resume with another number of processes reads other shards of every batch.
NUM_PROCESSES = "num_processes"


def rng_file(rank: int) -> str:
    """The RNG states of process ``rank`` (Accelerate's name and layout, so that FSDP's own saving agrees)."""
    return f"random_states_{rank}.pkl"


@dataclass
class ConfigChange:
    """A flag whose value a resume changed (accepted through ``--allow_config_change``), from ``step`` on."""

    step: int
    name: str
    old: Any
    new: Any


@dataclass
class RunRecord:
    """``trainer_state.json``: what a checkpoint records besides tensors.

    Args:
        step: the optimizer steps taken.
        config: the run's :class:`TrainConfig` as JSON (``options_as_json``).
        run_id: the run's identity, kept by its resumes; checkpoints of other ids are never pruned or replaced.
        num_processes: the processes that trained it.
        nonfinite_steps: steps skipped so far (``--skip_nonfinite``).
        config_changes: every flag change accepted by a resume of this run.
        inexact: every state a resume had to go without (``--allow_inexact_resume``), in words.
    """

    step: int
    config: dict[str, Any]
    run_id: str | None
    num_processes: int = 1
    nonfinite_steps: int = 0
    config_changes: list[ConfigChange] = field(default_factory=list)
    inexact: list[str] = field(default_factory=list)

    def save(self, folder: str) -> None:
        with open(os.path.join(folder, TRAINER_STATE_FILE), "w") as f:
            json.dump({"format": FORMAT, **dataclasses.asdict(self)}, f, indent=2)

    @classmethod
    def load(cls, folder: str) -> RunRecord:
        """Read and check ``folder/trainer_state.json``; any problem is a ``ValueError`` naming the file."""
        path = os.path.join(folder, TRAINER_STATE_FILE)
        try:
            with open(path) as f:
                raw = json.load(f)
        except FileNotFoundError:
            raise ValueError(f"Cannot resume from {folder}: {path} is missing.") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"Cannot resume from {folder}: {path} is not readable JSON ({error}).") from None
        if not isinstance(raw, dict) or "config" not in raw:
            raise ValueError(
                f"Cannot resume from {folder}: {path} records no run configuration (a checkpoint of an older "
                "pixelprior, or not one at all), so the resume could not be checked to be exact."
            )
        try:
            changes = [ConfigChange(**change) for change in raw.get("config_changes", [])]
            record = cls(
                step=raw["step"],
                config=raw["config"],
                run_id=raw.get("run_id"),
                num_processes=raw.get("num_processes", 1),
                nonfinite_steps=raw.get("nonfinite_steps", 0),
                config_changes=changes,
                inexact=list(raw.get("inexact", [])),
            )
        except (KeyError, TypeError) as error:
            raise ValueError(f"Cannot resume from {folder}: {path} lacks or mistypes a field ({error}).") from None
        ints = (record.step, record.num_processes, record.nonfinite_steps)
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in ints) or not isinstance(
            record.config, dict
        ):
            raise ValueError(f"Cannot resume from {folder}: {path} holds malformed values ({raw}).")
        return record


def read_run_id(folder: str, file: str = TRAINER_STATE_FILE) -> tuple[bool, str | None]:
    """``(readable, run_id)`` of a checkpoint's record (or of another JSON record of a run, such as
    ``train_results.json``), without raising: which run wrote it?"""
    try:
        with open(os.path.join(folder, file)) as f:
            raw = json.load(f)
        return isinstance(raw, dict) and "config" in raw, raw.get("run_id") if isinstance(raw, dict) else None
    except (OSError, ValueError):
        return False, None


def config_differences(saved: RunRecord, config: TrainConfig, num_processes: int) -> dict[str, tuple[Any, Any]]:
    """The flags (and the number of processes) whose value differs from the checkpoint's: ``{name: (old, new)}``.

    Flags marked ``resume="free"`` (where outputs go, how often to log, evaluate, sample or checkpoint) cannot
    change the trained weights and are not compared. A flag the checkpoint's pixelprior did not have yet counts as
    its default.
    """
    now = options_as_json(config)
    defaults = options_as_json(TrainConfig(model="pixelcnn_mnist", output_dir="."))
    differences = {}
    for f in dataclasses.fields(TrainConfig):
        if option_info(f).resume == "free":
            continue
        old = saved.config.get(f.name, defaults[f.name])
        if old != now[f.name]:
            differences[f.name] = (old, now[f.name])
    if saved.num_processes != num_processes:
        differences[NUM_PROCESSES] = (saved.num_processes, num_processes)
    return differences


def describe_differences(differences: dict[str, tuple[Any, Any]]) -> str:
    """``--learning_rate 0.001 -> 1e-05, --batch_size 8 -> 16``."""
    return ", ".join(f"--{name} {json.dumps(old)} -> {json.dumps(new)}" for name, (old, new) in differences.items())


class StateFileError(ValueError):
    """A state file of a checkpoint is missing, corrupt or refused; ``--allow_inexact_resume`` may go without it."""


def save_torch_file(value: Any, path: str) -> None:
    """``torch.save(value, path)``, serialized in memory first and then written as a plain file: a full disk is then
    an ``OSError`` (``ENOSPC``) that ``run_folder.writing`` names, not torch's ``RuntimeError: basic_ios::clear``
    from inside its zip writer."""
    import io

    buffer = io.BytesIO()
    torch.save(value, buffer)
    with open(path, "wb") as f:
        f.write(buffer.getbuffer())


def load_tensors_only(path: str, what: str, safe_globals: list | None = None) -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain containers only, never code.

    Raises:
        StateFileError: naming the file, when it is missing, corrupt, or holds anything else (a pickled object).
    """
    if not os.path.isfile(path):
        raise StateFileError(f"{path} ({what}) is missing")
    try:
        with torch.serialization.safe_globals(safe_globals or []):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights only" not in str(error).lower():  # garbage bytes: "invalid load key", ...
            raise StateFileError(f"{path} ({what}) is corrupt ({error})") from None
        refused = next((line for line in str(error).splitlines() if "GLOBAL" in line or "Unsupported" in line), "")
        raise StateFileError(
            f"{path} ({what}) was refused: it holds more than tensors and plain data ({refused.strip()[:160]})"
        ) from None
    except Exception as error:  # a truncated or garbage file: torch raises RuntimeError, EOFError, ...
        raise StateFileError(f"{path} ({what}) is corrupt ({type(error).__name__}: {error})") from None


def _file_shapes(path: str, what: str) -> dict[str, tuple[int, ...]]:
    """The tensor names and shapes of the safetensors file ``path`` (its header only)."""
    from safetensors import SafetensorError, safe_open

    if not os.path.isfile(path):
        raise StateFileError(f"{path} ({what}) is missing")
    try:
        with safe_open(path, framework="pt") as f:
            return {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise StateFileError(f"{path} ({what}) is corrupt ({error})") from None


def _check_architecture(path: str, what: str, expected: dict[str, torch.Tensor]) -> None:
    """``ValueError`` unless the file holds ``expected``'s names and shapes (a name that shares its storage with a
    saved one, as tied weights do, may be left out: safetensors saves a shared tensor once)."""
    found = _file_shapes(path, what)
    storage = {name: t.untyped_storage().data_ptr() for name, t in expected.items() if t.numel()}
    saved_storages = {storage.get(name) for name in found}
    missing = sorted(n for n in set(expected) - set(found) if storage.get(n) not in saved_storages or n not in storage)
    unexpected = sorted(set(found) - set(expected))
    wrong = {n: (found[n], tuple(t.shape)) for n, t in expected.items() if n in found and found[n] != tuple(t.shape)}
    if missing or unexpected or wrong:
        problems = [f"missing {missing[:4]}"] if missing else []
        problems += [f"unexpected {unexpected[:4]}"] if unexpected else []
        problems += [f"{n}: {old} in the checkpoint, {new} in the model" for n, (old, new) in list(wrong.items())[:3]]
        raise ValueError(
            f"Expected {path} to hold {what} of the model being trained, got another architecture "
            f"({'; '.join(problems)}): resume with the checkpoint's --model, --model_config and --model_kwargs."
        )


def load_model_weights(module: torch.nn.Module, path: str, what: str = "the weights") -> None:
    """Load the safetensors file ``path`` (``safetensors.torch.save_model``'s) into ``module``, strictly.

    Raises:
        StateFileError: the file is missing or corrupt.
        ValueError: it holds another architecture (names or shapes differ): never resumable.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    _check_architecture(path, what, module.state_dict())
    device = next(iter(module.state_dict().values())).device
    try:
        load_model(module, path, strict=True, device=str(device))
    except (SafetensorError, OSError, RuntimeError) as error:  # truncated data behind a sound header
        raise StateFileError(f"{path} ({what}) is corrupt ({error})") from None


def read_tensors(path: str, expected: dict[str, torch.Tensor], what: str) -> dict[str, torch.Tensor]:
    """The tensors of the safetensors file ``path``, checked to have exactly ``expected``'s names and shapes."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    _check_architecture(path, what, {n: t.detach().clone() for n, t in expected.items()})  # clones: no sharing
    device = next(iter(expected.values())).device if expected else "cpu"
    try:
        return load_file(path, device=str(device))
    except (SafetensorError, OSError) as error:
        raise StateFileError(f"{path} ({what}) is corrupt ({error})") from None


def read_optimizer_state(path: str, shapes: list[tuple[int, ...]]) -> dict[str, Any]:
    """Adam's state dict from ``path`` (``weights_only``), checked to fit parameters of these ``shapes``."""
    what = "the optimizer state"
    state = load_tensors_only(path, what)
    groups = state.get("param_groups") if isinstance(state, dict) else None
    if not isinstance(groups, list) or not isinstance(state.get("state"), dict):
        raise StateFileError(f"{path} ({what}) is not an optimizer state dict")
    count = sum(len(g.get("params", [])) for g in groups if isinstance(g, dict))
    if count != len(shapes):
        raise StateFileError(f"{path} ({what}) is for {count} parameter tensors, the model has {len(shapes)}")
    for index, moments in state["state"].items():
        if not isinstance(index, int) or not 0 <= index < len(shapes) or not isinstance(moments, dict):
            raise StateFileError(f"{path} ({what}) holds a malformed entry {index!r}")
        for name, value in moments.items():
            if name in ("exp_avg", "exp_avg_sq") and tuple(getattr(value, "shape", ())) != shapes[index]:
                raise StateFileError(f"{path} ({what}) holds {name} of the wrong shape for parameter {index}")
    return state


_RNG_KEYS = ("random_state", "numpy_random_seed", "torch_manual_seed")


def rng_state() -> dict[str, Any]:
    """This process's RNG states, as Accelerate's ``save_state`` records them."""
    import random

    import numpy as np

    states = {"random_state": random.getstate(), "numpy_random_seed": np.random.get_state()}
    states["torch_manual_seed"] = torch.get_rng_state()
    if torch.cuda.is_available():
        states["torch_cuda_manual_seed"] = torch.cuda.get_rng_state_all()
    return states


def read_rng_state(path: str) -> dict[str, Any]:
    """The RNG states saved in ``path`` (``weights_only``, NumPy's state arrays allowed), checked for their keys."""
    from accelerate.utils.other import TORCH_SAFE_GLOBALS  # numpy arrays and dtypes: numbers, not objects

    states = load_tensors_only(path, "the random number generators' states", TORCH_SAFE_GLOBALS)
    if not isinstance(states, dict) or any(key not in states for key in _RNG_KEYS):
        raise StateFileError(f"{path} (the random number generators' states) lacks {list(_RNG_KEYS)}")
    return states


def restore_rng_state(states: dict[str, Any], path: str) -> None:
    """Set this process's RNGs from :func:`read_rng_state`'s ``states`` (a malformed one names ``path``)."""
    import random

    import numpy as np

    try:
        random.setstate(states["random_state"])
        np.random.set_state(states["numpy_random_seed"])
        torch.set_rng_state(states["torch_manual_seed"])
        if torch.cuda.is_available() and "torch_cuda_manual_seed" in states:
            torch.cuda.set_rng_state_all(states["torch_cuda_manual_seed"])
    except (TypeError, ValueError, RuntimeError) as error:
        raise StateFileError(f"{path} (the random number generators' states) is malformed ({error})") from None
