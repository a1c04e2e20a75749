"""Train a small diffusers ``VQModel`` (a VQ-VAE) on the built-in digits, with Accelerate.

No pretrained VQ-VAE can be downloaded here, so this example makes its own: a ``VQModel`` with three encoder
blocks turns a 28x28 digit into a 7x7 grid of codes from a codebook of 32 entries (28 / 2**2 = 7: the digits need
no padding or resizing, since both halvings divide 28 evenly). It is trained on the ``mnist5k`` training split
(4,500 digits, mapped to ``[-1, 1]``, the diffusers VQModel convention) to minimise the reconstruction error plus
the VQ-VAE codebook and commitment terms that ``VQModel.forward`` returns (``commit_loss``). The folder written by
``save_pretrained`` is what ``pixelprior encode --vqvae`` and ``examples/vq_prior.py`` read.

NOTE: the codebook starts from encoder outputs of the first training batch (a common VQ-VAE initialization), not
diffusers' tiny uniform init, so that most codes are used from the start. The script prints the test reconstruction
error and how many codes the test digits use, and writes ``reconstructions.png`` (originals above their
reconstructions).

Usage (600 steps: about 3 minutes of CPU time; ``accelerate launch examples/train_vqvae.py ...`` works too):
    python examples/train_vqvae.py --output_dir runs/vqvae
    python examples/train_vqvae.py --output_dir /tmp/vqvae --max_steps 2 --block_out_channels 8 16 16  # smoke
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from diffusers import VQModel
from einops import rearrange
from torch.utils.data import DataLoader, TensorDataset

from pixelprior.data import load_dataset
from pixelprior.distributions import bins_to_input
from pixelprior.pipelines import PixelPriorPipeline, make_image_grid
from pixelprior.vqmodel import encode_images


def build_vqvae(block_out_channels: list[int], latent_channels: int, num_codes: int) -> VQModel:
    """A 1-channel VQModel for 28x28 digits whose code grid is ``28 / 2**(len(block_out_channels) - 1)`` wide."""
    depth = len(block_out_channels)
    return VQModel(
        in_channels=1,
        out_channels=1,
        down_block_types=("DownEncoderBlock2D",) * depth,
        up_block_types=("UpDecoderBlock2D",) * depth,
        block_out_channels=tuple(block_out_channels),
        layers_per_block=1,
        latent_channels=latent_channels,
        num_vq_embeddings=num_codes,
        norm_num_groups=min(8, block_out_channels[0]),
        sample_size=28,
    )


def to_pil(images: torch.Tensor) -> list:
    """``(B, 1, H, W)`` floats in ``[-1, 1]`` -> PIL images."""
    array = rearrange((images / 2 + 0.5).clamp(0, 1), "b c h w -> b h w c").cpu().numpy()
    return PixelPriorPipeline.numpy_to_pil(array)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="runs/vqvae")
    parser.add_argument("--max_steps", type=int, default=600)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--learning_rate", type=float, default=2e-3)
    parser.add_argument("--block_out_channels", type=int, nargs="+", default=[16, 32, 32])
    parser.add_argument("--latent_channels", type=int, default=8)
    parser.add_argument("--num_codes", type=int, default=32, help="codebook size K (the prior's num_values)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    accelerator = Accelerator()
    set_seed(args.seed)
    train_images = bins_to_input(load_dataset("mnist5k", "train").x, 256)  # (4500, 1, 28, 28) in [-1, 1]
    test_images = bins_to_input(load_dataset("mnist5k", "test").x, 256)  # (500, 1, 28, 28)
    loader = DataLoader(TensorDataset(train_images), batch_size=args.batch_size, shuffle=True, drop_last=True)

    vqvae = build_vqvae(args.block_out_channels, args.latent_channels, args.num_codes)
    with torch.no_grad():  # codebook <- encoder outputs at random positions of one batch
        latents = vqvae.encode(train_images[: args.batch_size]).latents  # (B, D, h, w)
        vectors = rearrange(latents, "b d h w -> (b h w) d")
        pick = torch.randperm(len(vectors), generator=torch.Generator().manual_seed(args.seed))[: args.num_codes]
        vqvae.quantize.embedding.weight.copy_(vectors[pick])
    optimizer = torch.optim.Adam(vqvae.parameters(), lr=args.learning_rate)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.max_steps)
    vqvae, optimizer, loader, scheduler = accelerator.prepare(vqvae, optimizer, loader, scheduler)

    start, step = time.time(), 0
    vqvae.train()
    while step < args.max_steps:
        for (x,) in loader:
            output = vqvae(x)
            reconstruction_loss = F.mse_loss(output.sample, x)
            loss = reconstruction_loss + output.commit_loss.mean()
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            step += 1
            if step % 100 == 0 or step == args.max_steps:
                accelerator.print(f"step {step}: reconstruction mse {reconstruction_loss.item():.4f}")
            if step == args.max_steps:
                break

    model = accelerator.unwrap_model(vqvae).eval()
    if accelerator.is_main_process:
        model.save_pretrained(args.output_dir)  # config.json + diffusion_pytorch_model.safetensors
        with torch.no_grad():
            test = test_images.to(accelerator.device)
            reconstructions = model(test).sample
            mse = F.mse_loss(reconstructions, test).item()
            used = encode_images(model, test).unique().numel()
        grid = make_image_grid(to_pil(torch.cat([test[:16], reconstructions[:16]])), cols=16, scale=2)
        grid.save(os.path.join(args.output_dir, "reconstructions.png"))
        print(
            f"Saved the VQModel to {args.output_dir} after {step} steps ({time.time() - start:.0f} s): test "
            f"reconstruction mse {mse:.4f} (images in [-1, 1]), {used}/{args.num_codes} codes used by the test digits."
        )


if __name__ == "__main__":
    main()
