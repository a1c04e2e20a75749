"""Training speed: images/s and peak memory of a full training step (forward, loss, backward, Adam).

For each registered configuration (the papers' sizes by default) and each requested variant, runs a few warm-up
steps then times ``--steps`` steps on random data of the model's shape and prints a table. A variant is a precision,
``fp32`` or ``bf16`` (autocast), followed by any of ``+channels_last``, ``+compile`` (``torch.compile``, inductor),
``+cudagraphs`` (``torch.compile(mode="reduce-overhead")``: inductor and CUDA graphs) and ``+ckpt`` (gradient
checkpointing), e.g. ``bf16+channels_last+compile``. The optimizer is the trainer's (fused Adam).

``ops/step`` counts the operators one eager training step runs (forward, loss, backward, Adam; views excluded), about
its kernel launches on a GPU: a model whose step is many small operators is bound by the host's launch rate rather
than by the GPU until ``+compile`` fuses them (compiled rows show ``-``). Peak memory is the CUDA allocator's
peak on a GPU; on the CPU it is the peak resident set size of a fresh process per row (``--isolate``, the default
there), which includes the Python and torch runtime (about 0.3-0.5 GiB).

Usage:
    python benchmarks/training.py --models pixelcnn_pp_cifar10 pixelsnail_vqvae2_top --device cuda \\
        --variants fp32 bf16 bf16+channels_last bf16+compile bf16+channels_last+cudagraphs
    python benchmarks/training.py --models pixelcnn_mnist --device cpu --batch_size 16 --steps 3   # smoke run
    python benchmarks/training.py --device cpu --batch_size 8 --steps 3 --warmup 1 \\
        --model_kwargs '{"hidden_channels": 32, "num_layers": 2}' --variants fp32 bf16 fp32+ckpt   # CPU, shrunk

Batch sizes default to the references' (64 for CIFAR-10 pixel models, 32 for the VQ-VAE-2 priors).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch

from pixelprior import create_prior, list_priors
from pixelprior.models.registry import prior_config
from pixelprior.training import make_optimizer

DEFAULT_BATCH = {"pixelsnail_vqvae2_top": 32, "pixelsnail_vqvae2_bottom": 32}
PRECISIONS = ("fp32", "bf16")
OPTIONS = ("channels_last", "compile", "cudagraphs", "ckpt")


def parse_variant(variant: str) -> tuple[str, set[str]]:
    """``"bf16+channels_last+compile"`` -> ``("bf16", {"channels_last", "compile"})``; ``ValueError`` otherwise."""
    precision, *options = variant.split("+")
    if precision not in PRECISIONS or not set(options) <= set(OPTIONS) or len(set(options)) != len(options):
        raise ValueError(
            f"Expected a variant PRECISION[+OPTION...] with PRECISION in {PRECISIONS} and distinct options from "
            f"{OPTIONS}, got {variant!r}."
        )
    return precision, set(options)


def count_ops(step) -> int:
    """The ATen operators one call of ``step`` runs, views excluded (they launch nothing): about the kernels an
    eager step launches on a GPU."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Counter(TorchDispatchMode):
        count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Counter.count += not func.is_view
            return func(*args, **(kwargs or {}))

    with Counter():
        step()
    return Counter.count


def random_batch(model, batch_size: int, device: torch.device) -> dict[str, torch.Tensor]:
    """A batch of random values (and conditioning) of the model's shape."""
    C, (H, W) = model.in_channels, model.grid_size
    batch = {"x": torch.randint(0, model.num_values, (batch_size, C, H, W), device=device)}
    if model.num_classes:
        batch["class_labels"] = torch.randint(0, model.num_classes, (batch_size,), device=device)
    if model.cond_channels:
        batch["cond"] = torch.randn(batch_size, model.cond_channels, H // 2, W // 2, device=device)
    return batch


def bench(
    name: str, variant: str, batch_size: int, steps: int, warmup: int, device: torch.device, overrides: dict
) -> dict:
    precision, options = parse_variant(variant)
    torch.manual_seed(0)
    model = create_prior(name, **overrides).to(device).train()
    if "channels_last" in options:
        model = model.to(memory_format=torch.channels_last)
    if "ckpt" in options:
        from pixelprior.training import enable_gradient_checkpointing

        enable_gradient_checkpointing(model)
    optimizer = make_optimizer(model.parameters(), 1e-4)
    compiled = options & {"compile", "cudagraphs"}
    loss_fn = model.loss
    if compiled:
        loss_fn = torch.compile(model.loss, mode="reduce-overhead" if "cudagraphs" in options else None)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    batch = random_batch(model, batch_size, device)

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = loss_fn(**batch)
        loss.backward()
        optimizer.step()
        return loss.detach()

    for _ in range(warmup):
        step()
    ops = None if compiled else count_ops(step)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    loss = float(loss)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:  # the process's peak resident set (Linux: KiB); meaningful per row only in a fresh process
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {
        "model": name,
        "variant": variant,
        "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
        "batch": batch_size,
        "images_per_s": batch_size * steps / seconds,
        "peak_GiB": peak,
        "loss_bpd": loss,
        "ops_per_step": ops,
    }


def _isolated_row(name: str, variant: str, batch_size: int, args: argparse.Namespace) -> dict:
    """One row measured in a fresh Python process (its peak memory is then the row's own)."""
    argv = [sys.executable, os.path.abspath(__file__), "--_row", name, variant, "--batch_size", str(batch_size)]
    argv += ["--steps", str(args.steps), "--warmup", str(args.warmup), "--device", args.device]
    argv += ["--model_kwargs", args.model_kwargs]
    done = subprocess.run(argv, capture_output=True, text=True)
    rows = [line[4:] for line in done.stdout.splitlines() if line.startswith("ROW ")]
    if done.returncode != 0 or not rows:
        raise RuntimeError(done.stderr.strip() or "no result")
    return json.loads(rows[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=None, help="registered names (default: every CIFAR/VQ one)")
    parser.add_argument(
        "--variants", nargs="*", default=["fp32", "bf16"], help="PRECISION[+OPTION...] (see above); default fp32 bf16"
    )
    parser.add_argument("--batch_size", type=int, default=None)
    parser.add_argument("--model_kwargs", default="{}", help="JSON overrides of the registered configurations")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument(
        "--isolate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run each row in a fresh process (default: on CPU, where peak memory is the process's peak RSS)",
    )
    parser.add_argument("--_row", nargs=2, default=None, help=argparse.SUPPRESS)  # internal: one row, JSON out
    args = parser.parse_args()
    if args._row is not None:
        name, variant = args._row
        batch_size = args.batch_size or DEFAULT_BATCH.get(name, 64)
        row = bench(
            name,
            variant,
            batch_size,
            args.steps,
            args.warmup,
            torch.device(args.device),
            json.loads(args.model_kwargs),
        )
        print("ROW " + json.dumps(row))
        return
    for variant in args.variants:
        try:
            parse_variant(variant)
        except ValueError as error:
            parser.error(str(error))
    isolate = args.isolate if args.isolate is not None else args.device == "cpu"
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    names = args.models or [n for n in list_priors() if "cifar10" in n or "vqvae2" in n]

    header = (
        f"{'model':<26} {'variant':<30} {'params':>8} {'batch':>5} {'img/s':>9} {'peak GiB':>9} {'bpd':>7} "
        f"{'ops/step':>8}"
    )
    print(f"device={device} torch={torch.__version__}")
    print(header)
    print("-" * len(header))
    rows = []
    for name in names:
        prior_config(name)  # a clear error for unknown names
        for variant in args.variants:
            batch_size = args.batch_size or DEFAULT_BATCH.get(name, 64)
            try:
                if isolate:
                    row = _isolated_row(name, variant, batch_size, args)
                else:
                    row = bench(
                        name, variant, batch_size, args.steps, args.warmup, device, json.loads(args.model_kwargs)
                    )
            except torch.OutOfMemoryError:
                print(f"{name:<26} {variant:<30} out of memory at batch {batch_size}")
                continue
            except RuntimeError as error:
                print(f"{name:<26} {variant:<30} failed: {str(error).splitlines()[-1][:60]}")
                continue
            rows.append(row)
            ops = "-" if row["ops_per_step"] is None else str(row["ops_per_step"])
            print(
                f"{row['model']:<26} {row['variant']:<30} {row['params_M']:>7.2f}M {row['batch']:>5} "
                f"{row['images_per_s']:>9.1f} {row['peak_GiB']:>9.2f} {row['loss_bpd']:>7.3f} {ops:>8}"
            )
            if device.type == "cuda":
                torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
