"""Run by tests/training/test_processes.py inside ``unshare -rm`` (a private mount namespace): real full and
read-only file systems, made without root as tmpfs mounts that vanish with the namespace.

fs_job.py FULL_DIR READONLY_DIR PIPELINE_DIR -> prints one JSON line of what it saw.
"""

import contextlib
import io
import json
import os
import sys

from pixelprior.cli import main
from pixelprior.training import list_checkpoints
from pixelprior.training.resume import MODEL_FILE, RunRecord


def cli(*argv: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(list(argv))
    return code, err.getvalue()


if __name__ == "__main__":
    full, readonly, pipeline = sys.argv[1:4]
    tiny = ["--model", "pixelcnn_mnist", "--model_kwargs", '{"hidden_channels": 4, "num_layers": 1, "sample_size": 8}']
    tiny += ["--dataset", "digits", "--binarize", "--batch_size", "4", "--max_eval_samples", "8", "--logger", "none"]
    seen = {}
    # A disk that fills up: a checkpoint every step until one no longer fits.
    run = os.path.join(full, "run")
    seen["full"] = cli("train", *tiny, "--output_dir", run, "--max_steps", "40", "--checkpointing_steps", "1")
    intact = []
    for step, path in list_checkpoints(run):
        from safetensors.torch import load_file

        intact.append(RunRecord.load(path).step == step and len(load_file(os.path.join(path, MODEL_FILE))) > 0)
    seen["checkpoints"] = [step for step, _ in list_checkpoints(run)]
    seen["intact"] = intact
    seen["leftovers"] = [n for n in os.listdir(run) if n.startswith(".tmp-")]
    # A read-only file system: every command stops before its work, naming the path.
    seen["train_ro"] = cli("train", *tiny, "--output_dir", os.path.join(readonly, "run"), "--max_steps", "1")
    seen["sample_ro"] = cli("sample", "--pipeline", pipeline, "--output", os.path.join(readonly, "grid.png"))
    seen["encode_ro"] = cli("encode", "--vqvae", pipeline, "--output", os.path.join(readonly, "codes.safetensors"))
    print(json.dumps(seen))
