"""The one sampling loop of pixelprior, plain and cached.

Positions are drawn in raster order (row by row, left to right); at each position the likelihood says in
which steps its channels are drawn (``distribution.channel_steps``: R, then G, then B for the categorical
likelihood; all channels at once for a joint one). Each step needs the distribution parameters of the
current position given everything drawn so far:

* **plain** (``use_cache=False``): one full teacher-forced forward of the whole canvas per step, the
  reference: obviously correct, ``O(H W)`` times the cost of a forward;
* **cached** (``use_cache=True``): the model's incremental network (``init_cache`` / ``step``). Each causal
  layer keeps its input buffer (or row states, or key/value caches), so a step computes only the new
  position. With the same generator both loops draw the same random numbers in the same order, and in
  float64 they give identical samples.

Completion: values where ``known_mask`` is True are kept as given and every later position is conditioned on
them. A step whose channels are known for the whole batch draws no random numbers (in both loops), so a
completion is reproducible whichever loop runs it.

The model runs in eval mode while sampling (dropout off); its previous mode is restored afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from .distributions.base import Generator
from .progress import progress_bar

if TYPE_CHECKING:
    from .models.modeling_prior import AutoregressivePrior

# draw(params, values, channels, i, j): the values of ``channels`` at position (i, j) given the network's parameters
# there, params ``(B, num_params)``, and the position's values so far, values ``(B, C)`` long -> ``(B, len(channels))``
# long. Sampling draws them from the distribution; lossless coding reads or writes them through an entropy coder.
Draw = Callable[[torch.Tensor, torch.Tensor, tuple[int, ...], int, int], torch.Tensor]
# row_callback(i, x): called once row i is complete, with the grid x ``(B, C, H, W)`` long drawn so far.
RowCallback = Callable[[int, torch.Tensor], None]


def _infer_batch_size(batch_size: int | None, **tensors: Any) -> int:
    sizes = {name: len(t) for name, t in tensors.items() if isinstance(t, (torch.Tensor, list, tuple))}
    if batch_size is not None:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"Expected batch_size to be a positive int, got {batch_size!r}.")
        sizes = {"batch_size": batch_size, **sizes}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"Expected one batch size for every input, got {sizes}.")
    return next(iter(sizes.values()), 1)


def _check_known(
    model: AutoregressivePrior, batch_size: int, known: Any, known_mask: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    C, (H, W) = model.in_channels, model.grid_size
    if known is None and known_mask is None:
        empty = torch.zeros(batch_size, C, H, W, dtype=torch.long, device=model.device)
        return empty, empty.bool()
    if known is None or known_mask is None:
        raise ValueError("Expected both known and known_mask (True = keep), or neither.")
    known = model.check_x(known, name="known")
    if not isinstance(known_mask, torch.Tensor) or known_mask.dtype != torch.bool:
        raise ValueError(
            f"Expected known_mask to be a bool tensor (True = keep), got "
            f"{known_mask.dtype if isinstance(known_mask, torch.Tensor) else type(known_mask).__name__}."
        )
    if known_mask.ndim == 3:
        known_mask = known_mask.unsqueeze(1)
    if known_mask.ndim != 4 or tuple(known_mask.shape) not in ((batch_size, C, H, W), (batch_size, 1, H, W)):
        raise ValueError(
            f"Expected known_mask of shape ({batch_size}, {C}, {H}, {W}), ({batch_size}, 1, {H}, {W}) or "
            f"({batch_size}, {H}, {W}), got {tuple(known_mask.shape)}."
        )
    known_mask = known_mask.to(model.device).expand(batch_size, C, H, W)
    return torch.where(known_mask, known, 0), known_mask


@torch.no_grad()
def sample(
    model: AutoregressivePrior,
    batch_size: int | None = None,
    *,
    class_labels: torch.Tensor | int | None = None,
    cond: torch.Tensor | None = None,
    known: torch.Tensor | None = None,
    known_mask: torch.Tensor | None = None,
    temperature: float = 1.0,
    generator: Generator = None,
    use_cache: bool = True,
    progress: bool = False,
    row_callback: RowCallback | None = None,
) -> torch.Tensor:
    """Sample ``(B, C, H, W)`` grids from ``model``; see :meth:`AutoregressivePrior.sample` for the arguments.

    ``row_callback(i, x)``, if given, is called once each row ``i`` is complete with the grid drawn so far.
    """
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"Expected temperature > 0, got {temperature!r}.")
    batch_size = _infer_batch_size(
        batch_size,
        class_labels=class_labels if not isinstance(class_labels, int) else None,
        cond=cond,
        known=known,
        known_mask=known_mask,
        generator=generator if isinstance(generator, (list, tuple)) else None,
    )
    class_labels, cond = model.check_conditioning(batch_size, class_labels, cond)
    x, known_mask = _check_known(model, batch_size, known, known_mask)

    temperature = float(temperature)

    def draw(params: torch.Tensor, values: torch.Tensor, channels: tuple[int, ...], i: int, j: int) -> torch.Tensor:
        return model.distribution.sample(params, values, channels, temperature, generator)

    return raster_loop(
        model,
        x,
        known_mask,
        class_labels,
        cond,
        draw,
        use_cache=use_cache,
        progress=progress,
        row_callback=row_callback,
    )


@torch.no_grad()
def raster_loop(
    model: AutoregressivePrior,
    x: torch.Tensor,
    known_mask: torch.Tensor,
    class_labels: torch.Tensor | None,
    cond: torch.Tensor | None,
    draw: Draw,
    *,
    use_cache: bool = True,
    progress: bool = False,
    row_callback: RowCallback | None = None,
) -> torch.Tensor:
    """Visit every position in raster order and fill ``x`` in place with ``draw``'s values, on checked inputs.

    The loop under :func:`sample` (``draw`` samples) and under lossless coding (``draw`` reads the true values and
    codes them, or decodes them): both sides of a code see the same parameters, computed by the same steps in the
    same order. Runs the model in eval mode and restores its mode.

    Shapes:
        x: ``(B, C, H, W)`` long (known values in place), known_mask: ``(B, C, H, W)`` bool -> x
    """
    was_training = model.training
    model.eval()
    try:
        return _raster_loop(model, x, known_mask, class_labels, cond, draw, use_cache, progress, row_callback)
    finally:
        model.train(was_training)


def _raster_loop(
    model: AutoregressivePrior,
    x: torch.Tensor,
    known_mask: torch.Tensor,
    class_labels: torch.Tensor | None,
    cond: torch.Tensor | None,
    draw: Draw,
    use_cache: bool,
    progress: bool,
    row_callback: RowCallback | None,
) -> torch.Tensor:
    dist = model.distribution
    (H, W), B = model.grid_size, x.shape[0]
    h = model.encode_input(x)  # (B, C, H, W) the encoded canvas, updated pixel by pixel
    cache = model.init_cache(B, class_labels, cond) if use_cache else None
    bar = progress_bar(total=H * W, desc="sampling", disable=not progress, leave=False)
    for i in range(H):
        for j in range(W):
            for channels in dist.channel_steps:
                channels = list(channels)
                all_known = bool(known_mask[:, channels, i, j].all())
                if use_cache:
                    # Even a known step feeds the layer caches, which later positions read.
                    params = model.step(cache, h, i, j)
                elif all_known:
                    continue
                else:
                    params = model.compute_params(h, class_labels, cond)[:, :, i, j]
                if all_known:
                    continue
                drawn = draw(params, x[:, :, i, j], tuple(channels), i, j)  # (B, n)
                keep = known_mask[:, channels, i, j]
                x[:, channels, i, j] = torch.where(keep, x[:, channels, i, j], drawn)
                h[:, :, i : i + 1, j : j + 1] = model.encode_input(x[:, :, i : i + 1, j : j + 1])
            bar.update(1)
        if row_callback is not None:
            row_callback(i, x)
    bar.close()
    return x
