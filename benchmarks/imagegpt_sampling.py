"""Cached sampling of an Image GPT: pixelprior's converted model vs transformers' KV-cached ``generate()``.

Builds a transformers ``ImageGPTForCausalImageModeling`` of ``openai/imagegpt-small``'s shape (width 512, 8 heads,
1024 positions of 512 colour clusters; random weights, ``--num_layers`` of its 24 blocks), converts it with
:func:`pixelprior.converters.convert_imagegpt` (the same weights), and times one run of each sampler drawing the same
batch of full 32x32 images: transformers' ``generate(do_sample=True, top_k=0)`` (its key/value cache on) and
pixelprior's ``sample(use_cache=True)`` (the one sampling loop with the model's key/value caches). Before timing, the
two models' log-likelihoods of one batch are compared, so the table is about the same network.

Needs ``transformers`` (``pip install "pixelprior[test]"``).

Usage:
    python benchmarks/imagegpt_sampling.py                         # 24 blocks, batch 4, CPU, float32
    python benchmarks/imagegpt_sampling.py --num_layers 6 --batch_size 8 --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch


def build_transformers(num_layers: int, device: str):
    import transformers

    config = transformers.ImageGPTConfig(n_embd=512, n_head=8, n_layer=num_layers, n_positions=1024, vocab_size=513)
    torch.manual_seed(0)
    return transformers.ImageGPTForCausalImageModeling(config).to(device).eval()


def convert(model) -> torch.nn.Module:
    """The same weights through the converter (a transformers folder on disk, as a user has one)."""
    from pixelprior.converters import convert_imagegpt

    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        clusters = (torch.rand(512, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1).tolist()
        with open(os.path.join(folder, "preprocessor_config.json"), "w") as f:
            json.dump({"clusters": clusters}, f)
        return convert_imagegpt(folder).prior


def timed(fn) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_layers", type=int, default=24, help="blocks of imagegpt-small's 24")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    hf = build_transformers(args.num_layers, args.device)
    prior = convert(hf).to(args.device)
    B, T = args.batch_size, 1024
    x = torch.randint(0, 512, (B, 1, 32, 32), generator=torch.Generator().manual_seed(1)).to(args.device)
    with torch.no_grad():
        seq = x.flatten(1)
        start = torch.full((B, 1), 512, device=args.device)
        logits = hf(torch.cat([start, seq[:, :-1]], 1)).logits
        reference = torch.log_softmax(logits.float(), -1).gather(-1, seq[..., None])[..., 0].sum(1)
        gap = (prior.log_prob(x) - reference).abs().max().item()

    def run_transformers() -> None:
        with torch.no_grad():
            hf.generate(input_ids=start, max_length=T + 1, do_sample=True, top_k=0, use_cache=True)

    def run_pixelprior() -> None:
        prior.sample(B, generator=torch.Generator(args.device).manual_seed(0), use_cache=True)

    seconds = {
        "transformers generate (KV cache)": timed(run_transformers),
        "pixelprior sample (cached)": timed(run_pixelprior),
    }
    print(
        f"Image GPT, imagegpt-small's shape with {args.num_layers} of 24 blocks: batch {B} of 32x32 images "
        f"({T} positions), {args.device}, {torch.get_num_threads()} threads, float32, one run each"
    )
    print(f"log-likelihood agreement before timing: max |diff| {gap:.2e} nats per image (float32)")
    print(f"| {'sampler':<34} | {'seconds':>8} | {'positions/s':>11} |")
    print(f"|{'-' * 36}|{'-' * 10}|{'-' * 13}|")
    for name, s in seconds.items():
        print(f"| {name:<34} | {s:8.2f} | {B * T / s:11.0f} |")
    ratio = seconds["transformers generate (KV cache)"] / seconds["pixelprior sample (cached)"]
    print(f"pixelprior is {ratio:.2f}x the speed of transformers' generate (> 1: faster)")


if __name__ == "__main__":
    main()
