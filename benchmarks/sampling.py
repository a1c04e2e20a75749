"""Sampling speed: the plain reference loop, the cached incremental loop and the compiled cached step.

Prints a table of wall times (seconds) for ``batch_size`` samples of each configuration: plain (``use_cache=False``,
one full forward per step), cached (``use_cache=True``) and compiled (``compile=True``: the cached step compiled with
``torch.compile``, timed after a warm-up run whose time, compilation included, is its own column), with the speed-ups
of the cached loop over the plain one and of the compiled step over the cached one. Every loop runs with the same
generator; the samples are compared (exactly equal in float64; in float32 loops may round differently, so the
agreement rate is shown). A timed loop runs ``--repeat`` times and the fastest run counts.

``--save FILE`` writes every loop's samples (safetensors), ``--compare FILE`` checks the cached samples against a file
written before (e.g. by the previous version of the library, run with ``--loops cached``).

Usage:
    python benchmarks/sampling.py                                  # every configuration, 16 samples, all loops
    python benchmarks/sampling.py --loops cached compiled --models pixelcnn gated_pixelcnn --repeat 3
    python benchmarks/sampling.py --models pixelcnn --batch_size 16 --device cuda --dtype float32
    python benchmarks/sampling.py --compile_options '{"mode": "max-autotune-no-cudagraphs"}'
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from safetensors.torch import load_file, save_file

from pixelprior import create_prior, list_priors

# name -> (registered prior, overrides): small models at the paper data shapes.
CONFIGS: dict[str, tuple[str, dict]] = {
    "pixelcnn": ("pixelcnn_mnist", dict(hidden_channels=32, num_layers=6)),
    "pixelcnn_rgb": ("pixelcnn_cifar10", dict(hidden_channels=48, num_layers=4, head_channels=48, sample_size=16)),
    "gated_pixelcnn": ("gated_pixelcnn_mnist", dict(hidden_channels=32, num_layers=6)),
    "gated_pixelcnn_rgb": ("gated_pixelcnn_cifar10", dict(hidden_channels=48, num_layers=4, sample_size=16)),
    "pixelcnn_pp_rgb": ("pixelcnn_pp_cifar10", dict(hidden_channels=32, num_layers=1)),
    "pixelsnail_codes": (
        "pixelsnail_vqvae2_top",
        dict(
            sample_size=16,
            hidden_channels=32,
            residual_channels=32,
            num_layers=2,
            num_res_blocks=2,
            kernel_size=3,
            num_heads=2,
            key_channels=16,
            value_channels=16,
            num_output_blocks=1,
        ),
    ),
    "pixelsnail_rgb": (
        "pixelsnail_cifar10",
        dict(hidden_channels=32, num_layers=2, num_res_blocks=2, value_channels=16, sample_size=16),
    ),
    "image_gpt": ("image_gpt_mnist", dict(sample_size=16, hidden_channels=32, num_layers=2)),
    "row_lstm": ("pixelrnn_row_lstm_mnist", dict(hidden_channels=32, num_layers=4)),
    "diagonal_bilstm": ("pixelrnn_diagonal_bilstm_mnist", dict(hidden_channels=32, num_layers=4)),
    "diagonal_bilstm_rgb": (
        "pixelrnn_diagonal_bilstm_cifar10",
        dict(hidden_channels=48, num_layers=2, head_channels=48, sample_size=16),
    ),
    "image_transformer": (
        "image_transformer_mnist",
        dict(sample_size=16, hidden_channels=32, num_layers=2, ffn_channels=128, query_shape=(4, 8), memory_flange=4),
    ),
    "image_transformer_rgb": (
        "image_transformer_cifar10",
        dict(sample_size=16, hidden_channels=32, num_layers=2, ffn_channels=128, block_length=64, memory_length=64),
    ),
}
LOOPS = ("plain", "cached", "compiled")


def _time(fn) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    out = fn()
    if out.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def _agreement(a: torch.Tensor | None, b: torch.Tensor | None) -> str:
    if a is None or b is None:
        return ""
    rate = (a == b).float().mean().item()
    return "yes" if rate == 1.0 else f"{rate:.1%}"


def _seconds(value: float | None, width: int) -> str:
    return f"{value:>{width}.2f}" if value is not None else " " * width


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:>8.1f}x" if a is not None and b is not None else " " * 9


def bench(name: str, args: argparse.Namespace, options: dict) -> tuple[str, dict[str, torch.Tensor]]:
    """One row of the table, and the samples of every loop run."""
    prior, overrides = CONFIGS[name]
    torch.manual_seed(args.seed)
    # .double()/.float() rather than .to(dtype=...), which makes diffusers log a spurious fp32 warning.
    model = create_prior(prior, **overrides).to(device=args.device).eval()
    model = model.double() if args.dtype == "float64" else model.float()
    grid = f"{model.in_channels}x{model.grid_size[0]}x{model.grid_size[1]}"
    kwargs = {"class_labels": torch.zeros(args.batch_size, dtype=torch.long)} if model.num_classes else {}

    def run(loop: str) -> torch.Tensor:
        extra = {"compile": options or True} if loop == "compiled" else {}
        generator = torch.Generator().manual_seed(args.seed)
        return model.sample(args.batch_size, generator=generator, use_cache=loop != "plain", **extra, **kwargs)

    seconds: dict[str, float] = {}
    samples: dict[str, torch.Tensor] = {}
    warmup = None
    for loop in args.loops:
        if loop == "compiled":
            warmup, _ = _time(lambda: run("compiled"))
        repeats = 1 if loop == "plain" else args.repeat
        runs = [_time(lambda loop=loop: run(loop)) for _ in range(repeats)]
        seconds[loop], samples[loop] = min(runs, key=lambda r: r[0])[0], runs[0][1]
    plain, cached, compiled = (seconds.get(loop) for loop in LOOPS)
    row = (
        f"{name:<22} {grid:<9} {_seconds(plain, 9)} {_seconds(cached, 10)} {_seconds(warmup, 10)} "
        f"{_seconds(compiled, 12)} {_ratio(plain, cached)} {_ratio(cached, compiled)} "
        f"{_agreement(samples.get('plain'), samples.get('cached')):>9} "
        f"{_agreement(samples.get('cached'), samples.get('compiled')):>9}"
    )
    return row, samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--loops", nargs="*", default=list(LOOPS), choices=list(LOOPS))
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1, help="runs of the cached and compiled loops (fastest counts)")
    parser.add_argument("--compile_options", type=json.loads, default={}, help="torch.compile options (JSON)")
    parser.add_argument("--save", help="write the samples of every loop to this safetensors file")
    parser.add_argument("--compare", help="compare the cached samples with those saved in this file")
    args = parser.parse_args()
    registered = set(list_priors())
    saved = load_file(args.compare) if args.compare else {}

    print(
        f"device={args.device} dtype={args.dtype} batch_size={args.batch_size} threads={torch.get_num_threads()} "
        f"torch={torch.__version__} compile_options={args.compile_options}"
    )
    header = (
        f"{'model':<22} {'grid':<9} {'plain (s)':>9} {'cached (s)':>10} {'warm-up (s)':>10} {'compiled (s)':>12} "
        f"{'cached/plain':>9} {'compiled/cached':>9} {'equal p/c':>9} {'equal c/comp':>9}"
    )
    print(header + ("  saved/cached" if saved else ""))
    print("-" * len(header))
    everything: dict[str, torch.Tensor] = {}
    for name in args.models:
        if CONFIGS[name][0] not in registered:
            print(f"{name:<22} (not registered: {CONFIGS[name][0]})")
            continue
        row, samples = bench(name, args, args.compile_options)
        if saved and "cached" in samples:
            row += f"  {_agreement(saved.get(f'{name}/cached'), samples['cached']):>12}"
        print(row, flush=True)
        everything.update({f"{name}/{loop}": s.cpu().contiguous() for loop, s in samples.items()})
    if args.save:
        save_file(everything, args.save)


if __name__ == "__main__":
    main()
