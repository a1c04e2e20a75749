"""Lossless coding: the round trip and identical parameters on both sides for every registered prior, the size bound
on the built-in test digits, and every refusal (another model, other conditions, altered streams, bad input)."""

from __future__ import annotations

import dataclasses
import math

import constriction
import pytest
import torch

from pixelprior import create_prior
from pixelprior.compression import compress, decode, decompress, model_fingerprint, pack, unpack
from pixelprior.compression.coder import _ChannelCoder, _code_grids
from pixelprior.data import load_dataset
from tests.conftest import PRIOR_NAMES, conditioning, random_x, tiny_prior

COND = {"num_classes": 3, "cond_channels": 2}


class Recording(_ChannelCoder):
    """The coder's draw, recording the parameters of every step."""

    def __init__(self, *args, log: list) -> None:
        super().__init__(*args)
        self.log = log

    def __call__(self, params, values, channels, i, j):
        self.log.append((i, j, channels, params.clone(), values.clone()))
        return super().__call__(params, values, channels, i, j)


def run_side(model, truth, kw, monkeypatch) -> tuple[list, torch.Tensor, object]:
    """One side of a code (``truth`` given: the encoder; ``None``: the decoder) with every step's parameters logged."""
    log: list = []
    monkeypatch.setattr(
        "pixelprior.compression.coder._ChannelCoder", lambda prior, coder, t: Recording(prior, coder, t, log=log)
    )
    labels, cond = model.check_conditioning(3, kw.get("class_labels"), kw.get("cond"))
    return log, labels, cond


@pytest.mark.parametrize("name", PRIOR_NAMES)
@pytest.mark.parametrize("cond_kwargs", [{}, COND], ids=["registered", "cond"])
def test_both_sides_see_the_same_parameters_and_round_trip(name, cond_kwargs, monkeypatch):
    # float32, the dtype models are used in: the parameters must agree bit for bit, not to a tolerance.
    model = tiny_prior(name, dtype=torch.float32, **cond_kwargs)
    x, kw = random_x(model, 3), conditioning(model, 3)
    enc_log, labels, cond = run_side(model, x, kw, monkeypatch)
    encoder = constriction.stream.queue.RangeEncoder()
    _code_grids(model, encoder, x, 3, labels, cond, batch_size=2, use_cache=True, progress=False)
    dec_log, _, _ = run_side(model, None, kw, monkeypatch)
    decoder = constriction.stream.queue.RangeDecoder(encoder.get_compressed())
    decoded = _code_grids(model, decoder, None, 3, labels, cond, batch_size=2, use_cache=True, progress=False)
    assert torch.equal(decoded, x)
    assert len(enc_log) == len(dec_log) == 2 * math.prod(model.grid_size) * len(model.distribution.channel_steps)
    for (i, j, channels, params, values), (i2, j2, channels2, params2, values2) in zip(enc_log, dec_log, strict=True):
        assert (i, j, channels) == (i2, j2, channels2)
        assert torch.equal(params, params2), f"parameters differ at ({i}, {j}), channels {channels}"
        assert torch.equal(values, values2)
    # and through the public API, labels and condition included
    monkeypatch.undo()
    stream = decode(model, compress(model, x, **kw, batch_size=2))
    assert torch.equal(stream.x, x)
    if "class_labels" in kw:
        assert torch.equal(stream.class_labels, kw["class_labels"])
    if "cond" in kw:
        assert torch.equal(stream.cond, kw["cond"])


@pytest.mark.parametrize("use_cache", [True, False])
def test_plain_loop_streams_round_trip(use_cache):
    model = tiny_prior("pixelcnn_cifar10", dtype=torch.float32)
    x = random_x(model, 2)
    data = compress(model, x, use_cache=use_cache)
    assert unpack(data)[0].use_cache is use_cache
    assert torch.equal(decompress(model, data), x)


def trained_digit_model(dataset: str, name: str, binarize: bool, steps: int, **kwargs):
    """A prior fitted for a few steps to the train digits: confident where they are empty, as trained priors are."""
    train = load_dataset(dataset, "train", binarize=binarize).x[:256].long()
    torch.manual_seed(0)
    model = create_prior(name, **kwargs)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(steps):
        loss = model.loss(train[(step * 16) % 256 :][:16])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.mark.parametrize(
    "dataset,name,binarize,count,kwargs",
    [
        ("mnist5k", "pixelcnn_mnist", True, 20, {"hidden_channels": 8}),
        ("digits", "pixelcnn_pp_mnist", False, 50, {"sample_size": 8, "hidden_channels": 8, "num_mixtures": 2}),
    ],
    ids=["mnist5k-binary-categorical", "digits-8bit-logistic-mixture"],
)
def test_size_within_one_percent_of_the_ideal_code_length(dataset, name, binarize, count, kwargs):
    model = trained_digit_model(dataset, name, binarize, 12, num_layers=1, **kwargs)
    x = load_dataset(dataset, "test", binarize=binarize).x[:count].long()
    data = compress(model, x)
    with torch.no_grad():
        ideal_bits = float(-model.log_prob(x).double().sum() / math.log(2))
    header = len(data) - 4 * unpack(data)[0].payload_words
    assert header < 1024  # the fixed part: prefix, JSON header, SHA-256 trailer
    assert 8 * (len(data) - header) <= 1.01 * ideal_bits + 64, (len(data), header, ideal_bits / 8)
    assert torch.equal(decompress(model, data), x)


# ------------------------------------------------------------------------------------------------- refusals
@pytest.fixture(scope="module")
def coded():
    model = tiny_prior("gated_pixelcnn_mnist", dtype=torch.float32, num_classes=3)
    x, labels = random_x(model, 4), torch.tensor([0, 2, 1, 1])
    return model, x, labels, compress(model, x, class_labels=labels, names=["a", "b", "c", "d"])


def test_labels_and_names_round_trip(coded):
    model, x, labels, data = coded
    stream = decode(model, data)
    assert torch.equal(stream.x, x) and torch.equal(stream.class_labels, labels)
    assert stream.names == ("a", "b", "c", "d")


def test_another_model_is_refused(coded):
    model, _, _, data = coded
    other = tiny_prior("gated_pixelcnn_mnist", seed=1, dtype=torch.float32, num_classes=3)
    assert model_fingerprint(other) != model_fingerprint(model)
    with pytest.raises(ValueError, match="fingerprint"):
        decompress(other, data)
    with pytest.raises(ValueError, match="a GatedPixelCNN over 1x4x4 grids of 2 values, got a PixelCNN"):
        decompress(tiny_prior("pixelcnn_mnist", dtype=torch.float32), data)
    with pytest.raises(ValueError, match="num_classes=3, got None"):
        decompress(tiny_prior("gated_pixelcnn_mnist", dtype=torch.float32), data)


def test_other_conditions_are_refused(coded):
    model, _, _, data = coded
    with pytest.raises(ValueError, match="dtype 'float32'.*got dtype 'float64'"):
        decompress(tiny_prior("gated_pixelcnn_mnist", num_classes=3), data)
    header, cond, words = unpack(data)
    for field, value in [("torch_version", "1.0.0"), ("constriction_version", "0.1"), ("cpu_capability", "NEON")]:
        conditions = dataclasses.replace(header.conditions, **{field: value})
        altered = pack(dataclasses.replace(header, conditions=conditions), cond, words)
        with pytest.raises(ValueError, match=f"{field} '{value}'"):
            decompress(model, altered)


def test_another_format_version_or_magic_is_refused(coded):
    model, _, _, data = coded
    with pytest.raises(ValueError, match="format version 1, got version 2"):
        decompress(model, data[:4] + (2).to_bytes(2, "little") + data[6:])
    with pytest.raises(ValueError, match="Expected a pixelprior stream"):
        decompress(model, b"\x89PNG" + data[4:])
    with pytest.raises(ValueError, match="Expected the bytes of a pixelprior stream, got str"):
        decompress(model, "PXPC")


def test_a_wrong_checksum_of_the_content_is_refused(coded):
    model, _, _, data = coded
    header, cond, words = unpack(data)
    altered = pack(dataclasses.replace(header, content_sha256="0" * 64), cond, words)
    with pytest.raises(ValueError, match="SHA-256"):
        decompress(model, altered)


def test_malformed_headers_are_refused(coded):
    model, _, _, data = coded
    header, cond, words = unpack(data)
    for change in [{"shape": (4, 1, 4)}, {"batch_size": -1}, {"use_cache": 1}, {"names": ("a", 2, "c", "d")}]:
        altered = pack(dataclasses.replace(header, **change), cond, words)
        with pytest.raises(ValueError, match="stream header"):
            decompress(model, altered)
    for change in [{"shape": (0, 1, 4, 4)}, {"batch_size": 0}, {"names": ("a",)}]:
        altered = pack(dataclasses.replace(header, **change), cond, words)
        with pytest.raises(ValueError, match="at least one grid, a positive batch size"):
            decompress(model, altered)
    with pytest.raises(ValueError, match="payload bytes"):
        decompress(model, pack(dataclasses.replace(header, payload_words=header.payload_words + 1), cond, words))


def test_bad_inputs_are_refused(coded):
    model, x, labels, _ = coded
    with pytest.raises(ValueError, match="at least one grid"):
        compress(model, x[:0], class_labels=labels[:0])
    with pytest.raises(ValueError, match="batch_size"):
        compress(model, x, class_labels=labels, batch_size=0)
    with pytest.raises(ValueError, match="one name"):
        compress(model, x, class_labels=labels, names=["a"])
    with pytest.raises(ValueError, match="class_labels"):
        compress(model, x)
    with pytest.raises(ValueError, match="values in"):
        compress(model, x + 4, class_labels=labels)


def test_non_finite_parameters_are_refused():
    model = tiny_prior("pixelcnn_mnist", dtype=torch.float32)
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    with pytest.raises(ValueError, match="finite"):
        compress(model, random_x(model, 1))


def test_decoding_runs_with_the_streams_thread_count(coded, monkeypatch):
    model, _, _, data = coded
    header, cond, words = unpack(data)
    threads = torch.get_num_threads()
    altered = pack(
        dataclasses.replace(header, conditions=dataclasses.replace(header.conditions, num_threads=2)), cond, words
    )
    seen, call = [], _ChannelCoder.__call__
    monkeypatch.setattr(
        _ChannelCoder, "__call__", lambda self, *args: seen.append(torch.get_num_threads()) or call(self, *args)
    )
    try:
        decompress(model, altered)
    except ValueError as error:  # other floats with 2 threads are possible: then the checksum refuses the result
        assert "SHA-256" in str(error)
    assert set(seen) == {2} and torch.get_num_threads() == threads
