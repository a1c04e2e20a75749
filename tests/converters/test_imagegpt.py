"""transformers' Image GPT -> pixelprior, against real random-weight transformers models with trained-like weights.

transformers' default init (N(0, 0.02) weights, unit norm gains, zero biases) keeps every activation so small that
the LayerNorm / iGPT-norm and GELU / quick_gelu differences vanish; the weights here are scaled up, with random norm
gains and biases, so that the wrong norm or activation is off by nats (checked below: the test can fail).
"""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch

transformers = pytest.importorskip("transformers")

from pixelprior import ImageGPT, PixelPriorPipeline  # noqa: E402
from pixelprior.cli import main  # noqa: E402
from pixelprior.converters import convert_imagegpt  # noqa: E402
from pixelprior.converters.imagegpt import convert_state_dict, prior_config  # noqa: E402
from pixelprior.sampling import raster_loop  # noqa: E402

# (n_embd, n_layer, n_head, side, clusters, activation): several sizes, both activations transformers allows
SIZES = [(32, 2, 4, 6, 16, "quick_gelu"), (48, 3, 6, 8, 24, "quick_gelu"), (24, 2, 2, 5, 12, "gelu")]


def trained_like(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Weights of a trained network's scale: N(0, 1.5^2 / fan_in), gains 1 + N(0, 0.5^2), biases N(0, 0.3^2)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=p.dtype)
            if p.ndim == 1:
                p.copy_(1 + 0.5 * noise if ".ln_" in name else 0.3 * noise)
            else:
                p.copy_(noise * 1.5 / p.shape[0] ** 0.5)
    return model


def hf_model(n_embd: int, n_layer: int, n_head: int, side: int, clusters: int, activation: str, seed: int = 0):
    config = transformers.ImageGPTConfig(
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        n_positions=side * side,
        vocab_size=clusters + 1,
        activation_function=activation,
    )
    torch.manual_seed(seed)
    return trained_like(transformers.ImageGPTForCausalImageModeling(config).double().eval(), seed)


def save_hf_folder(model, folder, seed: int = 0, clusters: bool = True) -> str:
    model.save_pretrained(folder)
    if clusters:
        gen = torch.Generator().manual_seed(seed)
        centres = torch.rand(model.config.vocab_size - 1, 3, generator=gen, dtype=torch.float64) * 2 - 1
        with open(os.path.join(folder, "preprocessor_config.json"), "w") as f:
            json.dump({"clusters": centres.tolist(), "do_color_quantize": True}, f)
    return str(folder)


def hf_log_probs(model, x: torch.Tensor) -> torch.Tensor:
    """transformers' per-position log-probabilities of the raster sequence of ``x`` (the start token first).

    Shapes:
        x: ``(B, 1, H, W)`` -> ``(B, H W)``
    """
    seq = x.flatten(1)
    start = torch.full((len(x), 1), model.config.vocab_size - 1)
    with torch.no_grad():
        logits = model(torch.cat([start, seq[:, :-1]], 1)).logits  # (B, T, K)
    return torch.log_softmax(logits, -1).gather(-1, seq[..., None])[..., 0]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Each size: the transformers model and its conversion (through the folder, in its float64)."""
    out = []
    for k, size in enumerate(SIZES):
        model = hf_model(*size, seed=k)
        folder = save_hf_folder(model, tmp_path_factory.mktemp(f"hf{k}"), seed=k)
        out.append((model, convert_imagegpt(folder), folder))
    return out


@pytest.mark.parametrize("k", range(len(SIZES)))
def test_log_prob_equals_transformers_per_position(converted, k):
    model, pipe, _ = converted[k]
    prior = pipe.prior
    assert prior.dtype == torch.float64 and prior.config.norm_type == "rms_norm"
    side, K = SIZES[k][3], SIZES[k][4]
    x = torch.randint(0, K, (3, 1, side, side), generator=torch.Generator().manual_seed(k))
    reference = hf_log_probs(model, x)  # (B, T)
    with torch.no_grad():
        ours = prior.position_log_prob(prior(x), x).flatten(1)
        total = prior.log_prob(x)
    assert (ours - reference).abs().max() < 1e-9
    assert (total - reference.sum(1)).abs().max() < 1e-9
    assert reference.sum(1).abs().min() > 10  # a real likelihood, not a constant


@pytest.mark.parametrize("k", [0, 2])
def test_greedy_decoding_equals_generate(converted, k):
    model, pipe, _ = converted[k]
    prior, side = pipe.prior, SIZES[k][3]
    start = torch.full((2, 1), model.config.vocab_size - 1)
    with torch.no_grad():
        generated = model.generate(input_ids=start, max_length=side * side + 1, do_sample=False)[:, 1:]

    def greedy(params, values, channels, i, j):
        return params.argmax(-1, keepdim=True)

    canvas = torch.zeros(2, 1, side, side, dtype=torch.long)
    keep = torch.zeros_like(canvas, dtype=torch.bool)
    for use_cache in (True, False):
        ours = raster_loop(prior, canvas.clone(), keep, None, None, greedy, use_cache=use_cache)
        assert torch.equal(ours.flatten(1), generated)
    assert len(generated.unique()) > 2  # the decoding goes somewhere


def test_cached_sampling_equals_plain_and_decodes_rgb(converted):
    _, pipe, _ = converted[0]
    kwargs = dict(batch_size=2, output_type="latent", progress=False)
    cached = pipe(generator=torch.Generator().manual_seed(3), **kwargs).images
    plain = pipe(generator=torch.Generator().manual_seed(3), use_cache=False, **kwargs).images
    assert torch.equal(cached, plain) and cached.shape == (2, 1, 6, 6)
    rgb = pipe(generator=torch.Generator().manual_seed(3), batch_size=2, output_type="np", progress=False).images
    assert rgb.shape == (2, 6, 6, 3)
    # The colours are the clusters', as transformers' examples decode them: rint(127.5 (c + 1)).
    with open(os.path.join(converted[0][2], "preprocessor_config.json")) as f:
        clusters = torch.tensor(json.load(f)["clusters"], dtype=torch.float64)
    expected = torch.round(127.5 * (clusters[cached[:, 0]] + 1)) / 255  # (B, H, W, 3)
    assert torch.allclose(torch.from_numpy(rgb).double(), expected, atol=1e-6)


def test_the_gpt2_norm_and_gelu_are_off_by_nats(converted):
    """The same weights in GPT-2's LayerNorm (bias 0) and erf GELU: the differences the options remove."""
    model, pipe, _ = converted[0]
    prior = pipe.prior
    config = {**prior.config, "norm_type": "layer_norm", "activation": "gelu"}
    gpt2 = ImageGPT(**{k: v for k, v in config.items() if not k.startswith("_")}).double().eval()
    gpt2.load_state_dict(prior.state_dict(), strict=False)  # LayerNorm biases stay 0
    x = torch.randint(0, 16, (2, 1, 6, 6), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert (gpt2.log_prob(x) - hf_log_probs(model, x).sum(1)).abs().max() > 0.1


def test_the_saved_folder_round_trips(converted, tmp_path):
    model, pipe, folder = converted[1]
    assert main(["convert", "imagegpt", folder, "--output_dir", str(tmp_path / "out")]) == 0
    loaded = PixelPriorPipeline.from_pretrained(tmp_path / "out", dtype=torch.float64)
    assert loaded.palette is not None and loaded.palette.num_colors == 24
    assert torch.equal(loaded.palette.centers, pipe.palette.centers)
    names = {
        os.path.relpath(os.path.join(d, f), tmp_path / "out") for d, _, fs in os.walk(tmp_path / "out") for f in fs
    }
    assert not any(name.endswith((".bin", ".pt", ".pkl", ".pth")) for name in names), names
    x = torch.randint(0, 24, (2, 1, 8, 8), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (loaded.prior.log_prob(x) - hf_log_probs(model, x).sum(1)).abs().max() < 1e-9
    # Nothing is overwritten: a second conversion into the same folder is refused.
    assert main(["convert", "imagegpt", folder, "--output_dir", str(tmp_path / "out")]) == 2


def _hub_cache(cache, repo: str, files: dict[str, object]) -> None:
    """A Hugging Face cache holding a snapshot of ``repo`` (huggingface_hub's layout), for offline loading."""
    root = cache / f"models--{repo.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, content in files.items():
        if isinstance(content, dict):
            torch.save(content, snapshot / name)
        else:
            (snapshot / name).write_bytes(content)


def test_a_hub_id_from_the_cache_with_pickled_weights(converted, tmp_path):
    """A repository id read offline from the cache; pytorch_model.bin (old mask buffers too) through weights_only."""
    model, _, folder = converted[0]
    state = dict(model.state_dict())
    state["transformer.h.0.attn.bias"] = torch.ones(1, 1, 36, 36, dtype=torch.bool).tril()  # as transformers 4.x saved
    state["transformer.h.0.attn.masked_bias"] = torch.tensor(-1e4)
    files = {
        name: open(os.path.join(folder, name), "rb").read() for name in ("config.json", "preprocessor_config.json")
    }
    _hub_cache(tmp_path, "openai/imagegpt-tiny", {**files, "pytorch_model.bin": state})
    pipe = convert_imagegpt("openai/imagegpt-tiny", cache_dir=tmp_path, local_files_only=True)
    x = torch.randint(0, 16, (2, 1, 6, 6), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert (pipe.prior.log_prob(x) - hf_log_probs(model, x).sum(1)).abs().max() < 1e-9


class _NotATensor:
    pass


def test_bad_files_are_one_line_errors(converted, tmp_path, capsys):
    model, _, folder = converted[0]
    os.makedirs(tmp_path / "evil")
    for name in ("config.json", "preprocessor_config.json"):
        (tmp_path / "evil" / name).write_bytes(open(os.path.join(folder, name), "rb").read())
    torch.save({"transformer.wte.weight": _NotATensor()}, tmp_path / "evil" / "pytorch_model.bin")
    assert main(["convert", "imagegpt", str(tmp_path / "evil"), "--output_dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pixelprior convert: error: Expected a state dict") and "refused" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "o").exists()
    with pytest.raises(pickle.UnpicklingError):  # the file really is a pickle that a plain load would run
        torch.load(tmp_path / "evil" / "pytorch_model.bin", weights_only=True)


def test_another_layout_lists_missing_and_unexpected_keys(converted):
    model, _, _ = converted[0]
    state = {k.removeprefix("transformer."): v for k, v in model.state_dict().items() if k != "lm_head.weight"}
    with pytest.raises(ValueError, match=r"missing keys \[lm_head.weight, transformer.h.0.attn.c_attn.bias") as info:
        convert_state_dict(state, dict(model.config.to_dict()), 36)
    assert "unexpected keys [h.0.attn.c_attn.bias" in str(info.value)
    bad = dict(model.state_dict())
    bad["lm_head.weight"] = bad["lm_head.weight"][:-1]
    with pytest.raises(ValueError, match=r"lm_head.weight: expected \(16, 32\), got \(15, 32\)"):
        convert_state_dict(bad, dict(model.config.to_dict()), 36)


@pytest.mark.parametrize(
    "change,message",
    [
        ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx"),
        ({"activation_function": "relu"}, "activation_function"),
        ({"n_inner": 100}, "n_inner"),
        ({"layer_norm_epsilon": 1e-6}, "layer_norm_epsilon"),
        ({"n_positions": 40}, "square n_positions"),
        ({"resid_pdrop": 0.2}, "equal attn/resid/embd dropouts"),
    ],
)
def test_unsupported_configs_are_refused(change, message):
    config = {"model_type": "imagegpt", "n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 36, "vocab_size": 17}
    with pytest.raises(ValueError, match=message):
        prior_config({**config, **change})
    assert prior_config(config)["sample_size"] == 6
    assert prior_config(config, sample_size=(3, 12))["sample_size"] == (3, 12)  # H W <= n_positions: exact
    with pytest.raises(ValueError, match="at most n_positions=36"):
        prior_config(config, sample_size=7)


def test_a_converted_model_fine_tunes(converted):
    """Gradients reach every converted weight and an Adam step lowers the loss of the batch it saw."""
    _, pipe, _ = converted[2]
    prior = ImageGPT.from_config(pipe.prior.config).double()
    prior.load_state_dict(pipe.prior.state_dict())
    prior.train()
    x = torch.randint(0, 12, (4, 1, 5, 5), generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.Adam(prior.parameters(), lr=1e-3)
    torch.manual_seed(0)
    before = prior.loss(x)
    before.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in prior.parameters())
    optimizer.step()
    prior.eval()
    with torch.no_grad():
        assert prior.loss(x) < pipe.prior.loss(x)
