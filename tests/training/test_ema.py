"""The EMA's warm-up: diffusers' formula, the warning for an average longer than the run, and a short run with the
default EMA measured against one without."""

from __future__ import annotations

import warnings

import pytest
import torch
from diffusers.training_utils import EMAModel

from pixelprior.training import EMA, TrainConfig, train


@pytest.mark.parametrize(
    ("decay", "inv_gamma", "power"), [(0.9995, 1.0, 0.75), (0.9999, 1.0, 2 / 3), (0.999, 100.0, 1.0)]
)
def test_the_warm_up_is_diffusers_ema_model_decay(decay, inv_gamma, power):
    model = torch.nn.Linear(2, 1)
    ours = EMA(model, decay, warmup=True, inv_gamma=inv_gamma, power=power)
    theirs = EMAModel(model.parameters(), decay=decay, use_ema_warmup=True, inv_gamma=inv_gamma, power=power)
    steps = [1, 2, 3, 10, 100, 1000, 10**5, 10**7]
    assert [ours.decay_at(k) for k in steps] == pytest.approx([theirs.get_decay(k) for k in steps], rel=1e-12, abs=0)
    assert ours.decay_at(10**9) == decay  # capped
    # Step 1 copies the weights (decay 0); without warm-up the decay is the constant one.
    with torch.no_grad():
        model.weight.add_(3.0)
    ours.update(model, 1)
    assert torch.equal(ours.shadow["weight"], model.weight)
    assert EMA(model, 0.9).decay_at(1) == 0.9
    with pytest.raises(ValueError, match="optimizer step"):
        ours.update(model)
    with pytest.raises(ValueError, match="power to be a positive number"):
        EMA(model, 0.9, power=0.0)


def test_an_average_longer_than_the_run_is_a_warning():
    model = torch.nn.Linear(2, 1)
    message = EMA(model, 0.9995).horizon_warning(20)  # the old default: 2,000 steps over a 20-step run
    assert "averages over about 2,000 steps, more than the run's 20" in message and "keeps 99% of it" in message
    defaults = TrainConfig(model="pixelcnn_mnist", output_dir="o")
    warm = EMA(model, defaults.ema_decay, warmup=True, inv_gamma=defaults.ema_inv_gamma, power=defaults.ema_power)
    assert all(warm.horizon_warning(n) is None for n in (1, 2, 20, 1000, 10**6))  # the warm-up never averages longer


def _run(tmp_path, name: str, **ema) -> float:
    # Steep early training, where an average of past weights can only lag: the case the old default ruined.
    config = TrainConfig(
        model="pixelcnn_mnist",
        model_kwargs={"sample_size": 8, "hidden_channels": 16, "num_layers": 2},
        dataset="digits",
        binarize=True,
        output_dir=str(tmp_path / name),
        max_steps=20,
        batch_size=16,
        learning_rate=2e-3,
        logger="none",
        num_sample_images=1,
        **ema,
    )
    return train(config).test_bits_per_dim


def test_a_short_run_with_the_default_ema_is_not_worse_than_without(tmp_path):
    without = _run(tmp_path, "none", use_ema=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the default warns about nothing
        default = _run(tmp_path, "default")
    with pytest.warns(UserWarning, match="more than the run's 20"):
        constant = _run(tmp_path, "constant", ema_warmup=False)  # 0.9995 from step 1: the old --use_ema
    assert constant > without + 0.1  # measured: 1.0218 against 0.8591 bits/dim (the 20-step run of the issue)
    # Measured: the default's average lags by the last ~1% of the steps: 0.8616 against 0.8591 (+0.3%).
    assert default <= without * 1.005, (default, without)


def test_the_ema_is_on_by_default_and_no_use_ema_turns_it_off():
    assert TrainConfig(model="pixelcnn_mnist", output_dir="o").use_ema
    from pixelprior.cli import build_parser

    parser = build_parser()
    for flags, on in [([], True), (["--use_ema"], True), (["--no_use_ema"], False), (["--no_ema_warmup"], True)]:
        args = parser.parse_args(["train", "--model", "pixelcnn_mnist", "--output_dir", "o", *flags])
        assert args.use_ema is on and args.ema_warmup is (flags != ["--no_ema_warmup"])
    alias = ["train", "--model", "pixelcnn_mnist", "--output_dir", "o", "--ema_max_decay", "0.99"]
    assert parser.parse_args(alias).ema_decay == 0.99  # diffusers' name
