"""pclucas14/pixel-cnn-pp state dicts -> pixelprior, exactly.

The port's code cannot be part of this project, so its state dicts are built here by an inverse converter written
from the port's layout (key names, PyTorch's ``weight_norm`` with ``dim=0``, the output map order of its
``discretized_mix_logistic_loss``); the two rules that are more than a copy, the transposed convolutions' weight norm
and the output permutation, are checked on their own against PyTorch's real ``weight_norm`` and the loss's layout.
(The converted NLL was compared with the real port's ``discretized_mix_logistic_loss`` by hand: see the converter's
docstring and the issue note.)
"""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from pixelprior import PixelCNNPlusPlus, PixelPriorPipeline
from pixelprior.cli import main
from pixelprior.converters import convert_pixelcnn_pp
from pixelprior.converters.pixelcnn_pp import (
    PortSizes,
    convert_state_dict,
    fold_transposed_weight_norm,
    infer_sizes,
    output_permutation,
)
from pixelprior.models.pixelcnn_pp import _weight_norm
from pixelprior.nn import DownShiftedConvTranspose2d

# pixelprior module name -> the port's, with the stage renumbering of the port's coarsest-first down pass
_RENAMES = [
    (r"^u_init$", lambda m: "u_init.conv"),
    (r"^ul_init_up$", lambda m: "ul_init.0.conv"),
    (r"^ul_init_left$", lambda m: "ul_init.1.conv"),
    (r"^output$", lambda m: "nin_out.lin_a"),
    (r"^downsample_(u|ul)\.(\d)$", lambda m: f"downsize_{m[1]}_stream.{m[2]}.conv"),
    (r"^upsample_(u|ul)\.(\d)$", lambda m: f"upsize_{m[1]}_stream.{1 - int(m[2])}.deconv"),
    (r"^(up|down)_(u|ul)\.(\d)\.(\d+)\.(conv_in|conv_out|link)$", None),
]
_PARTS = {"conv_in": "conv_input.conv", "conv_out": "conv_out.conv", "link": "nin_skip.lin_a"}


def port_name(ours: str) -> str:
    for pattern, rename in _RENAMES:
        m = re.match(pattern, ours)
        if m and rename is not None:
            return rename(m)
        if m:
            stage = int(m[3]) if m[1] == "up" else 2 - int(m[3])
            return f"{m[1]}_layers.{stage}.{m[2]}_stream.{m[4]}.{_PARTS[m[5]]}"
    raise AssertionError(f"unmapped module {ours}")


def port_output_rows(C: int, M: int) -> list[tuple[str, int, int]]:
    """The port's output maps as (kind, channel, mixture): logits, then per channel [means | scales | coeffs]."""
    rows = [("logit", 0, m) for m in range(M)]
    for c in range(C):
        rows += [("mean", c, m) for m in range(M)] + [("scale", c, m) for m in range(M)]
        rows += [("coeff", c, m) for m in range(M)] if C == 3 else []  # coefficient block c: pair (1,0), (2,0), (2,1)
    return rows


def ours_output_rows(C: int, M: int) -> list[tuple[str, int, int]]:
    """pixelprior's logistic-mixture layout: logits, means (c m), log scales (c m), coefficients (p m)."""
    rows = [("logit", 0, m) for m in range(M)]
    for kind, n in (("mean", C), ("scale", C), ("coeff", C * (C - 1) // 2)):
        rows += [(kind, c, m) for c in range(n) for m in range(M)]
    return rows


def to_port(model: PixelCNNPlusPlus, prefix: str = "") -> dict[str, torch.Tensor]:
    """The state dict the port would hold for the same network (the inverse of the converter)."""
    C, M = model.in_channels, model.config.num_mixtures
    ours_rows = ours_output_rows(C, M)
    order = [ours_rows.index(row) for row in port_output_rows(C, M)]
    state = {}
    for name, module in model.named_modules():
        if not hasattr(module, "parametrizations"):
            continue
        g, v = module.parametrizations.weight.original0, module.parametrizations.weight.original1
        weight, bias = module.weight, module.bias  # the effective weight g v / ||v||
        if isinstance(module, nn.ConvTranspose2d):  # the port's weight_norm(dim=0): one norm per input map
            v = weight
            g = torch.linalg.vector_norm(weight, dim=(1, 2, 3), keepdim=True)
        elif name == "output" or name.endswith(".link"):  # the port's nin: a Linear
            g, v = g[:, :, 0, 0], v[:, :, 0, 0]
        if name == "output":
            g, v, bias = g[order], v[order], bias[order]
        key = prefix + port_name(name)
        state.update({f"{key}.weight_g": g, f"{key}.weight_v": v, f"{key}.bias": bias})
    return {k: t.detach().clone() for k, t in state.items()}


def trained_like(model: PixelCNNPlusPlus, seed: int) -> PixelCNNPlusPlus:
    """Gains scaled 0.5x to 3x, biases N(0, 0.2^2), directions at random: outputs of a trained model's scale."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.rand(p.shape, generator=gen, dtype=p.dtype)
            if name.endswith("original0"):
                p.mul_(0.5 + 2.5 * r)
            elif name.endswith("bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
            else:
                p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return model.eval()


def tiny(C: int = 3, R: int = 1, F: int = 8, M: int = 3, size: int = 8, seed: int = 0) -> PixelCNNPlusPlus:
    torch.manual_seed(seed)
    model = PixelCNNPlusPlus(
        sample_size=size, in_channels=C, num_values=256, hidden_channels=F, num_layers=R, num_mixtures=M
    )
    return trained_like(model.double(), seed)


def images(C: int, size: int, B: int = 2, seed: int = 0) -> torch.Tensor:
    x = torch.randint(0, 256, (B, C, size, size), generator=torch.Generator().manual_seed(seed))
    x[0, :, 0] = 0
    x[0, :, -1] = 255  # the edge bins, which the likelihood treats apart
    return x


@pytest.mark.parametrize("C,R,F,M,prefix", [(3, 1, 8, 3, ""), (3, 2, 6, 2, "module."), (1, 2, 8, 4, "")])
def test_port_state_dict_converts_exactly(C, R, F, M, prefix):
    model = tiny(C, R, F, M, seed=C + R)
    sizes, weights = convert_state_dict(to_port(model, prefix))
    assert sizes == PortSizes(C, F, R, M)
    converted = PixelCNNPlusPlus(**{k: v for k, v in model.config.items() if not k.startswith("_")}).double().eval()
    converted.load_state_dict(weights, strict=True)
    x = images(C, 8, seed=R)
    with torch.no_grad():
        assert (converted(x) - model(x)).abs().max() < 1e-12
        nll, reference = -converted.log_prob(x), -model.log_prob(x)
    assert (nll - reference).abs().max() < 1e-9 and nll.min() > 100


def test_transposed_weight_norm_folds_per_output_map():
    """PyTorch's own weight_norm(ConvTranspose2d) (dim=0: per input map) equals pixelprior's after the fold; copying
    g and v, which have matching shapes when in == out maps, is silently wrong."""
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    port = nn.utils.weight_norm(nn.ConvTranspose2d(6, 6, (2, 3), stride=2, output_padding=1)).double()
    with torch.no_grad():
        port.weight_g.mul_(0.5 + torch.rand(port.weight_g.shape, generator=gen, dtype=torch.float64))
    ours = _weight_norm(DownShiftedConvTranspose2d(6, 6), True).double()
    x = torch.randn(2, 6, 4, 5, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        g, v = fold_transposed_weight_norm(port.weight_g, port.weight_v)
        ours.parametrizations.weight.original0.copy_(g)
        ours.parametrizations.weight.original1.copy_(v)
        ours.bias.copy_(port.bias)
        reference = port(x)[:, :, :8, 1:11]  # the port's crop: rows [:2H], columns [1 : 2W + 1]
        assert (ours(x) - reference).abs().max() < 1e-13
        ours.parametrizations.weight.original0.copy_(port.weight_g.reshape(1, 6, 1, 1))  # the naive copy
        ours.parametrizations.weight.original1.copy_(port.weight_v)
        assert (ours(x) - reference).abs().max() > 1e-3


@pytest.mark.parametrize("C", [1, 3])
def test_output_permutation_puts_each_map_where_the_likelihood_reads_it(C):
    M = 3
    dist = PixelCNNPlusPlus(
        sample_size=4, in_channels=C, num_values=256, hidden_channels=2, num_mixtures=M
    ).distribution
    codes = {"logit": 1.0, "mean": 2.0, "scale": 3.0, "coeff": 0.0}
    rows = port_output_rows(C, M)
    # A distinct value per port map: kind, then 0.01 (channel) + 0.001 (mixture) (small, so tanh is invertible).
    port = torch.tensor([codes[k] + 0.01 * c + 0.001 * m for k, c, m in rows], dtype=torch.float64)
    logits, means, log_scales, coeffs = dist.split(port[output_permutation(PortSizes(C, 4, 1, M))][None, :])
    for m in range(M):
        assert logits[0, m] == codes["logit"] + 0.001 * m
        for c in range(C):
            assert means[0, c, m] == codes["mean"] + 0.01 * c + 0.001 * m
            assert log_scales[0, c, m] == codes["scale"] + 0.01 * c + 0.001 * m
        for p in range(C * (C - 1) // 2):  # pairs (1, 0), (2, 0), (2, 1) = the port's coefficient blocks 0, 1, 2
            assert torch.isclose(coeffs[0, p, m], torch.tanh(torch.tensor(0.01 * p + 0.001 * m, dtype=torch.float64)))


def test_sizes_come_from_the_tensors():
    state = to_port(tiny(C=1, R=2, F=6, M=5))
    assert infer_sizes(state) == PortSizes(in_channels=1, hidden_channels=6, num_layers=2, num_mixtures=5)


def test_other_layouts_list_missing_and_unexpected_keys():
    state = to_port(tiny())
    del state["up_layers.0.ul_stream.0.nin_skip.lin_a.bias"]
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"1 missing keys \[up_layers.0.ul_stream.0.nin_skip.lin_a.bias\] and 1 "):
        convert_state_dict(state)
    gpt = {"transformer.wte.weight": torch.zeros(3, 2), "lm_head.weight": torch.zeros(2, 2)}
    with pytest.raises(ValueError, match=r"missing keys \[down_layers.*2 unexpected keys \[lm_head.weight, transfo"):
        convert_state_dict(gpt)
    state = to_port(tiny())
    state["nin_out.lin_a.bias"] = state["nin_out.lin_a.bias"][:-1]
    with pytest.raises(ValueError, match=r"nin_out.lin_a.bias: expected \(30,\), got \(29,\)"):
        convert_state_dict(state)


def test_convert_command_end_to_end(tmp_path, capsys):
    model = tiny(C=3, R=1, F=8, M=3, size=8)
    path = tmp_path / "pcnn_lr.0.00040_nr-resnet1_nr-filters8_9.pth"
    torch.save(to_port(model, "module."), path)  # as the port's training script saves it, under DataParallel
    out = tmp_path / "converted"
    assert main(["convert", "pixelcnn-pp", str(path), "--sample_size", "8", "--output_dir", str(out)]) == 0
    assert "PixelCNNPlusPlus of 3x8x8 grids of 256 values" in capsys.readouterr().out
    pipe = PixelPriorPipeline.from_pretrained(out, dtype=torch.float64)
    x = images(3, 8)
    with torch.no_grad():
        assert (pipe.prior.log_prob(x) - model.log_prob(x)).abs().max() < 1e-9
    assert pipe.prior.config.dropout == 0.5 and pipe.palette is None
    assert convert_pixelcnn_pp(path, sample_size=16).prior.grid_size == (16, 16)  # any size divisible by 4

    # A non-empty output folder, a pickle that weights_only refuses, another layout: one-line errors, exit 2.
    (tmp_path / "evil.pth").write_bytes(b"\x80\x04cos\nsystem\n(S'echo hi'\ntR.")
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    capsys.readouterr()
    for source, output, message in [
        (path, out, "new or empty folder"),
        (tmp_path / "evil.pth", tmp_path / "o1", "refused"),
        (tmp_path / "other.pth", tmp_path / "o2", "missing keys"),
    ]:
        assert main(["convert", "pixelcnn-pp", str(source), "--output_dir", str(output)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("pixelprior convert: error: Expected") and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")) == []  # no half-written folder
