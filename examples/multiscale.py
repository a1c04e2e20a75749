"""Multi-scale PixelRNN on the binarized digits: a 7x7 subsampled image first, then the 28x28 image given it.

A :class:`~pixelprior.MultiScalePrior` composes two priors of one registered configuration: an unconditional one over
the subsampled image ``s = x[:, :, ::4, ::4]`` and one over the full image conditioned on ``s`` (its ``cond``). Its
``forward`` is the loss (mean bits/dim of the exact two-part likelihood, see ``pixelprior/models/multiscale.py``),
so it trains like any module under Accelerate (``accelerate launch examples/multiscale.py`` runs it data-parallel).

Prints the exact test bits/dim (the same units as a single-scale prior of 28x28 images) and writes one PNG: a row
of subsampled images drawn by the small prior and, below each, the full image the big prior drew around it.

Usage (about 4 minutes on 2 CPU cores):
    python examples/multiscale.py --output_dir runs/multiscale
    python examples/multiscale.py --model pixelrnn_diagonal_bilstm_mnist --output_dir runs/multiscale_diag
    python examples/multiscale.py --output_dir /tmp/ms --max_steps 2 --hidden_channels 8 --num_layers 1  # smoke
"""

from __future__ import annotations

import argparse
import os

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from pixelprior import MultiScalePrior, PixelPriorPipeline
from pixelprior.data import load_dataset
from pixelprior.distributions import bins_to_images
from pixelprior.pipelines import make_image_grid
from pixelprior.training import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="runs/multiscale")
    parser.add_argument("--model", default="pixelrnn_row_lstm_mnist", help="registered configuration of both priors")
    parser.add_argument("--small_size", type=int, default=7, help="side of the subsampled image (divides 28)")
    parser.add_argument("--max_steps", type=int, default=1000)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--learning_rate", type=float, default=2e-3)
    parser.add_argument("--hidden_channels", type=int, default=16)
    parser.add_argument("--num_layers", type=int, default=2)
    parser.add_argument("--num_samples", type=int, default=8)
    parser.add_argument("--max_eval_samples", type=int, default=None, help="evaluate on fewer images (quick runs)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    accelerator = Accelerator()
    set_seed(args.seed)
    train_set = load_dataset("mnist5k", "train", binarize=True)
    test_set = load_dataset("mnist5k", "test", binarize=True)
    if args.max_eval_samples is not None:
        test_set = Subset(test_set, range(min(args.max_eval_samples, len(test_set))))
    model = MultiScalePrior.from_registry(
        args.model,
        sample_size=28,
        small_size=args.small_size,
        num_values=2,
        hidden_channels=args.hidden_channels,
        num_layers=args.num_layers,
    )
    accelerator.print(
        f"{args.model} x 2 ({sum(p.numel() for p in model.parameters()):,} parameters): "
        f"{args.small_size}x{args.small_size} subsampled digits, then 28x28 given them."
    )

    # 1. Train: forward is the loss (mean bits/dim), so DDP synchronizes what it should.
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
    loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True, drop_last=True)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    model.train()
    step, bar = 0, tqdm(total=args.max_steps, desc="train", disable=not accelerator.is_local_main_process)
    while step < args.max_steps:
        for batch in loader:
            loss = model(batch["x"])  # () bits/dim
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            bar.update()
            bar.set_postfix(bpd=f"{loss.item():.4f}")
            if step == args.max_steps:
                break
    bar.close()

    # 2. Exact test bits/dim of the composition, shared between processes.
    model = accelerator.unwrap_model(model)
    test_bpd = evaluate(model, test_set, batch_size=250, accelerator=accelerator)
    accelerator.print(f"test bits/dim: {test_bpd:.4f} ({len(test_set)} images)")

    # 3. Save both priors and sample: small images first, then the full images around them.
    if accelerator.is_main_process:
        model.save_pretrained(args.output_dir)
        model = MultiScalePrior.from_pretrained(args.output_dir)
        samples = model.sample(args.num_samples, generator=torch.Generator().manual_seed(args.seed), progress=True)
        small = model.subsample(samples)  # (B, 1, s, s): what the small prior drew
        fh, fw = model.factors
        small_big = small.repeat_interleave(fh, dim=2).repeat_interleave(fw, dim=3)  # shown at full size
        images = bins_to_images(torch.cat([small_big, samples]), model.num_values)  # (2 B, 1, 28, 28)
        pils = PixelPriorPipeline.numpy_to_pil(images.permute(0, 2, 3, 1).numpy())
        grid = make_image_grid(pils, cols=args.num_samples, scale=2)
        path = os.path.join(args.output_dir, "samples.png")
        grid.save(path)
        print(f"Wrote {path}: the subsampled images (top row) and the full images drawn given them (bottom row).")


if __name__ == "__main__":
    main()
