"""Shared helpers of the invariant tests: tiny variants of every registered prior and exact dependency maps.

Every model test builds its model with :func:`tiny_prior`, so a newly registered configuration is covered by the
parametrized suites (``tests/models/test_priors.py``) as soon as it is registered, at a size that runs in
milliseconds on a CPU.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from pixelprior.models.registry import list_priors, prior_config

# Size arguments of a tiny variant, as caps: an argument the class accepts is lowered to its cap (never raised, so
# that an architecture switched off in a configuration, e.g. ``num_output_blocks=0``, stays off). hidden_channels
# is divisible by 2, 3, 4 and 6 (channel groups, gates, heads) and its half still holds one map per RGB channel.
TINY_SIZES: dict[str, int] = {
    "sample_size": 4,
    "num_values": 4,
    "hidden_channels": 12,
    "num_layers": 2,
    "head_channels": 12,
    "residual_channels": 12,
    "num_res_blocks": 1,
    "num_heads": 2,
    "key_channels": 4,
    "value_channels": 6,
    "num_output_blocks": 1,
    "embedding_channels": 6,
    "num_mixtures": 2,
    "cond_res_blocks": 1,
    "cond_hidden_channels": 6,
    "ffn_channels": 24,
    "block_length": 4,
    "memory_length": 4,
    "query_shape": 2,
    "memory_flange": 1,
}

PRIOR_NAMES = list_priors()

# The tests run tiny tensors, for which intra-op threads cost far more than they save (an OpenMP hand-off per
# op: a 5x6 convolution takes ~10 ms with 2 threads on a busy 2-core machine, ~0.1 ms with 1).
torch.set_num_threads(1)


def constructor_defaults(cls: type) -> dict[str, Any]:
    """Keyword arguments the model class accepts, with their defaults."""
    params = inspect.signature(cls.__init__).parameters
    return {k: p.default for k, p in params.items() if k != "self"}


def tiny_config(name: str, **overrides: Any) -> tuple[type, dict[str, Any]]:
    """The class and the keyword arguments of a tiny variant of the registered configuration ``name``.

    Every size argument of :data:`TINY_SIZES` the class accepts is capped; ``overrides`` are passed as given.
    """
    cls, config = prior_config(name)
    defaults = constructor_defaults(cls)
    for key, cap in TINY_SIZES.items():
        if key not in defaults:
            continue
        value = config.get(key, defaults[key])
        if isinstance(value, int) and not isinstance(value, bool):
            config[key] = min(value, cap)
        elif value is None or isinstance(value, (tuple, list)):
            config[key] = cap  # ``None`` means "derived from another size": make it explicit and tiny
    config.update(overrides)
    return cls, config


def tiny_prior(name: str, seed: int = 0, dtype: torch.dtype = torch.float64, **overrides: Any):
    """A tiny, seeded variant of the registered prior ``name`` (float64 by default), in eval mode."""
    cls, config = tiny_config(name, **overrides)
    torch.manual_seed(seed)
    model = cls(**config)
    # .double() / .float() rather than .to(dtype): diffusers' ModelMixin.to warns on every dtype cast.
    model = {torch.float64: model.double, torch.float32: model.float}[dtype]()
    return model.eval()


def unconditional_prior(name: str, **overrides: Any):
    """:func:`tiny_prior` without class labels or spatial condition, whatever the registered configuration says."""
    cls, _ = prior_config(name)
    off = {"num_classes": None, "cond_channels": None}
    if "cond_res_blocks" in constructor_defaults(cls):
        off["cond_res_blocks"] = 0  # a conditioning stack needs a condition
    return tiny_prior(name, **{**off, **overrides})


def conditioning(model, batch_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Class labels and a spatial condition for ``model``, as far as it takes them (``{}`` when unconditional)."""
    gen = torch.Generator().manual_seed(seed)
    kwargs: dict[str, torch.Tensor] = {}
    if model.num_classes is not None:
        kwargs["class_labels"] = torch.randint(0, model.num_classes, (batch_size,), generator=gen)
    if model.cond_channels is not None:
        H, W = model.grid_size
        kwargs["cond"] = torch.randn(batch_size, model.cond_channels, H, W, generator=gen, dtype=model.dtype)
    return kwargs


def random_x(model, batch_size: int, seed: int = 0) -> torch.Tensor:
    """Random valid input ``(B, C, H, W)`` long for ``model``."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, model.num_values, (batch_size, model.in_channels, *model.grid_size), generator=gen)


def dependency_map(model, x: torch.Tensor, class_labels=None, cond=None) -> torch.Tensor:
    """Exact input-output dependencies of ``model.compute_params`` on the float input path.

    ``dep[b, g, p, b2, c, p2]`` is ``|d sum(params[b, group g, p]) / d h[b2, c, p2]|``: the sensitivity of the
    parameters of channel group ``g`` (``model.distribution.param_groups()``; ``G`` groups, ``C`` for a per-channel
    likelihood, 1 for a joint one) at raster position ``p`` of sample ``b`` to data channel ``c`` at position ``p2``
    of sample ``b2``. Structurally absent dependencies are exactly 0. A model whose encoded input has other maps
    than data channels (an embedding of codes, ``C = 1`` only) has them summed into its one channel.

    Shapes:
        x: ``(B, C, H, W)`` -> ``(B, G, H*W, B, C, H*W)``
    """
    class_labels, cond = model.check_conditioning(x.shape[0], class_labels, cond)
    h = model.encode_input(x).requires_grad_()
    params = model.compute_params(h, class_labels, cond).flatten(2)  # (B, P, H*W)
    B, C, N = x.shape[0], model.in_channels, params.shape[-1]
    groups = model.distribution.param_groups()
    G = int(groups.max()) + 1
    assert torch.equal(groups.unique(), torch.arange(G)), f"channel groups {groups.unique().tolist()} leave a gap"
    dep = torch.zeros(B, G, N, B, C, N, dtype=h.dtype)
    for b in range(B):
        for g in range(G):
            for p in range(N):
                (grad,) = torch.autograd.grad(params[b, groups == g, p].sum(), h, retain_graph=True)
                grad = grad.abs()  # (B, E, H, W)
                if grad.shape[1] != C:
                    assert C == 1, f"cannot tell the data channels of a {grad.shape[1]}-map encoded input apart"
                    grad = grad.sum(1, keepdim=True)
                dep[b, g, p] = grad.flatten(2)
    return dep


def allowed_dependencies(batch_size: int, groups: int, channels: int, positions: int) -> torch.Tensor:
    """What raster order with R -> G -> B channels allows: the boolean pattern of :func:`dependency_map`.

    Group ``g`` at position ``p`` may read every channel of positions ``< p`` and channels ``< g`` of position ``p``,
    of its own sample only.

    Shapes:
        -> ``(B, G, N, B, C, N)`` bool
    """
    B, G, C, N = batch_size, groups, channels, positions
    b = torch.arange(B).view(B, 1, 1, 1, 1, 1)
    g = torch.arange(G).view(1, G, 1, 1, 1, 1)
    p = torch.arange(N).view(1, 1, N, 1, 1, 1)
    b2 = torch.arange(B).view(1, 1, 1, B, 1, 1)
    c = torch.arange(C).view(1, 1, 1, 1, C, 1)
    p2 = torch.arange(N).view(1, 1, 1, 1, 1, N)
    return (b == b2) & ((p2 < p) | ((p2 == p) & (c < g)))


def tiny_vqmodel(
    sample_size: int,
    num_codes: int,
    block_out_channels: tuple[int, ...] = (4, 8),
    latent_channels: int = 2,
    norm_num_groups: int = 2,
    lookup_from_codebook: bool = False,
    seed: int = 0,
):
    """A real, seeded, tiny diffusers ``VQModel`` over one-channel images, in eval mode, with a spread-out codebook
    (``N(0, 1)`` entries: decoded codes differ visibly, and encoding uses many of them)."""
    from diffusers import VQModel

    torch.manual_seed(seed)
    vqvae = VQModel(
        in_channels=1,
        out_channels=1,
        down_block_types=("DownEncoderBlock2D",) * len(block_out_channels),
        up_block_types=("UpDecoderBlock2D",) * len(block_out_channels),
        block_out_channels=block_out_channels,
        latent_channels=latent_channels,
        num_vq_embeddings=num_codes,
        norm_num_groups=norm_num_groups,
        sample_size=sample_size,
        lookup_from_codebook=lookup_from_codebook,
    )
    with torch.no_grad():
        vqvae.quantize.embedding.weight.normal_()
    return vqvae.eval()
