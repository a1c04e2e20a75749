"""Sampling speed: the plain reference loop vs the cached incremental loop.

Prints a table of wall times (seconds) for ``batch_size`` samples of each configuration, plain
(``use_cache=False``, one full forward per step) and cached (``use_cache=True``), and their ratio. Both loops
run with the same generator and the samples are checked to be equal (exactly, in float64; in float32 the
two loops may round differently, so only the agreement rate is shown).

Usage:
    python benchmarks/sampling.py                      # every configuration, 16 samples
    python benchmarks/sampling.py --models pixelcnn --batch_size 16 --device cuda --dtype float32
"""

from __future__ import annotations

import argparse
import time

import torch

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


def _time(fn) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    out = fn()
    if out.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    registered = set(list_priors())

    print(f"device={args.device} dtype={args.dtype} batch_size={args.batch_size} threads={torch.get_num_threads()}")
    header = f"{'model':<20} {'grid':<10} {'plain (s)':>10} {'cached (s)':>11} {'speed-up':>9} {'equal':>7}"
    print(header)
    print("-" * len(header))
    for name in args.models:
        prior, overrides = CONFIGS[name]
        if prior not in registered:
            print(f"{name:<20} (not registered: {prior})")
            continue
        torch.manual_seed(args.seed)
        # .double()/.float() rather than .to(dtype=...), which makes diffusers log a spurious fp32 warning.
        model = create_prior(prior, **overrides).to(device=args.device).eval()
        model = model.double() if dtype == torch.float64 else model.float()
        grid = f"{model.in_channels}x{model.grid_size[0]}x{model.grid_size[1]}"
        kwargs = {"class_labels": torch.zeros(args.batch_size, dtype=torch.long)} if model.num_classes else {}

        def run(use_cache: bool, model=model, kwargs=kwargs) -> torch.Tensor:
            generator = torch.Generator().manual_seed(args.seed)
            return model.sample(args.batch_size, generator=generator, use_cache=use_cache, **kwargs)

        plain_s, plain = _time(lambda: run(False))
        cached_s, cached = _time(lambda: run(True))
        agreement = (plain == cached).float().mean().item()
        equal = "yes" if agreement == 1.0 else f"{agreement:.1%}"
        print(f"{name:<20} {grid:<10} {plain_s:>10.2f} {cached_s:>11.2f} {plain_s / cached_s:>8.1f}x {equal:>7}")


if __name__ == "__main__":
    main()
