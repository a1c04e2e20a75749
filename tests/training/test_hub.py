"""A run's model card and ``--push_to_hub``, up to the upload call (the Hub cannot be reached from these machines:
``huggingface_hub.create_repo`` and ``upload_folder`` are replaced by recorders)."""

from __future__ import annotations

import fnmatch
import importlib
import json
import os
import shutil

import huggingface_hub
import pytest
from huggingface_hub import ModelCard
from PIL import Image

from pixelprior.pipelines import PixelPriorPipeline
from pixelprior.training import NonFiniteLossError, TrainConfig, train

from .conftest import DIGITS_RUN, assert_cli_error

TOKEN = "hf_pixelpriorTestTokenNeverWritten0123"


def _files(folder) -> list[str]:
    return sorted(os.path.relpath(os.path.join(r, n), folder) for r, _, ns in os.walk(folder) for n in ns)


class HubRecorder:
    """Stands in for the Hub: records each call, and the upload keeps a copy of exactly the files it would send."""

    def __init__(self, monkeypatch, tmp_path, fail_create: Exception | None = None) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.uploaded = tmp_path / "uploaded"
        self.fail_create = fail_create
        monkeypatch.setattr(huggingface_hub, "create_repo", self.create_repo)
        monkeypatch.setattr(huggingface_hub, "upload_folder", self.upload_folder)

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
        if self.fail_create is not None:
            raise self.fail_create

        class Url:
            pass

        url = Url()
        url.repo_id = repo_id if "/" in repo_id else f"someone/{repo_id}"
        return url

    def upload_folder(self, *, repo_id, folder_path, allow_patterns=None, **kwargs):
        self.calls.append(("upload_folder", {"repo_id": repo_id, "allow_patterns": allow_patterns, **kwargs}))
        for name in _files(folder_path):
            if allow_patterns is None or any(fnmatch.fnmatch(name, p) for p in allow_patterns):
                os.makedirs(self.uploaded / os.path.dirname(name), exist_ok=True)
                shutil.copy(os.path.join(folder_path, name), self.uploaded / name)
        return f"https://huggingface.co/{repo_id}/commit/0123"


def test_a_run_writes_a_model_card_with_its_figures_samples_and_curve(tmp_path):
    out = tmp_path / "digits-run"
    result = train(TrainConfig(output_dir=str(out), max_steps=6, log_steps=2, eval_steps=3, **DIGITS_RUN))
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "pixelprior"
    metrics = {m["type"]: m["value"] for m in card.data.to_dict()["model-index"][0]["results"][0]["metrics"]}
    assert metrics["bits_per_dim"] == pytest.approx(result.test_bits_per_dim, abs=1e-6)
    assert metrics["nll"] == pytest.approx(result.test_nll_nats, abs=1e-6)
    text = card.text
    assert "on `digits (binarized)`" in text and "for 6 steps of 8 images" in text
    assert f"| test | {result.test_bits_per_dim:.4f} | {result.test_nll_nats:.2f} |" in text
    assert "![samples](samples/step-6.png)" in text and "![learning curve](logs/curve.png)" in text
    with Image.open(out / "samples" / "step-6.png") as grid, Image.open(out / "logs" / "curve.png") as curve:
        assert grid.size == (2 * 10 + 2, 2 * 10 + 2) and curve.format == "PNG"  # 4 digits of 8x8, padding 2
    assert 'PixelPriorPipeline.from_pretrained("' + str(out) + '")' in text  # a local run loads from its folder
    PixelPriorPipeline.from_pretrained(out)  # the card is a pipeline folder's README.md: the folder still loads
    # --num_sample_images 0 (a big model on a CPU): no grid is drawn, and the card says nothing of one.
    run = {**DIGITS_RUN, "num_sample_images": 0}
    train(TrainConfig(output_dir=str(tmp_path / "no-grid"), max_steps=2, logger="none", **run))
    assert "![samples]" not in ModelCard.load(tmp_path / "no-grid" / "README.md").text
    assert not (tmp_path / "no-grid" / "samples").exists()
    assert os.listdir(tmp_path / "no-grid" / "logs") == ["curve.png"]  # drawn from memory with --logger none


def test_push_to_hub_uploads_the_run_and_never_writes_the_token(tmp_path, monkeypatch, capfd):
    hub = HubRecorder(monkeypatch, tmp_path)
    out = tmp_path / "run"
    config = TrainConfig(
        output_dir=str(out),
        max_steps=4,
        checkpointing_steps=2,
        push_to_hub=True,
        hub_model_id="someone/digits-prior",
        hub_token=TOKEN,
        **DIGITS_RUN,
    )
    train(config)
    (create, created), (upload, sent) = hub.calls
    assert create == "create_repo" and created["token"] == TOKEN and created["exist_ok"]
    assert upload == "upload_folder" and sent["token"] == TOKEN and sent["repo_id"] == "someone/digits-prior"
    assert _files(hub.uploaded) == [
        "README.md",
        "logs/curve.png",
        "logs/metrics.jsonl",
        "model_index.json",
        "prior/config.json",
        "prior/diffusion_pytorch_model.safetensors",
        "samples/step-4.png",
        "train_results.json",
    ]  # no checkpoint, nothing the run did not write
    assert 'from_pretrained("someone/digits-prior")' in ModelCard.load(hub.uploaded / "README.md").text
    PixelPriorPipeline.from_pretrained(hub.uploaded)
    # The token is in no file of the run (checkpoints, logs, results, card) and in nothing it printed.
    assert os.path.isdir(out / "checkpoint-4")
    for name in _files(out):
        assert TOKEN.encode() not in (out / name).read_bytes(), name
    with open(out / "train_results.json") as f:
        assert "hub_token" not in json.load(f)["config"]
    printed = capfd.readouterr()
    assert TOKEN not in printed.out + printed.err and "Pushed" in printed.out


def test_a_failed_run_publishes_and_pushes_nothing(tmp_path, monkeypatch):
    hub = HubRecorder(monkeypatch, tmp_path)
    out = tmp_path / "run"
    # A learning rate of 1e30 blows the weights up; skipping the NaN steps ends with NaN bits/dim: the run fails.
    config = TrainConfig(
        output_dir=str(out), max_steps=3, learning_rate=1e30, skip_nonfinite=True, push_to_hub=True, **DIGITS_RUN
    )
    with pytest.raises(NonFiniteLossError, match="No pipeline was saved"):
        train(TrainConfig(**{**vars(config), "hub_token": TOKEN}))
    assert [name for name, _ in hub.calls] == ["create_repo"]  # checked before step 1, never uploaded to
    assert not any(os.path.exists(out / name) for name in ("README.md", "model_index.json", "logs/curve.png"))


def test_the_repository_is_made_before_training_and_a_refusal_costs_no_training(tmp_path, monkeypatch):
    http = importlib.import_module(huggingface_hub.errors.HTTPError.__module__)  # the client huggingface_hub uses
    response = http.Response(403, request=http.Request("POST", "https://huggingface.co/api/repos/create"))
    refused = huggingface_hub.errors.HfHubHTTPError(
        "403 Forbidden:\nyou cannot write to someone-else/x", response=response
    )
    hub = HubRecorder(monkeypatch, tmp_path, fail_create=refused)
    config = TrainConfig(
        output_dir=str(tmp_path / "run"), push_to_hub=True, hub_model_id="someone-else/x", **DIGITS_RUN
    )
    with pytest.raises(ValueError, match="someone-else/x' for --push_to_hub, got: 403 Forbidden: you cannot write"):
        train(TrainConfig(**{**vars(config), "hub_token": TOKEN}))
    assert [name for name, _ in hub.calls] == ["create_repo"]
    assert {p.name for p in (tmp_path / "run").iterdir()} <= {".pixelprior.lock"}  # claimed, nothing trained
    # No token anywhere: refused before the Hub is called at all.
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(ValueError, match="Expected a Hub token for --push_to_hub to 'someone-else/x', got none"):
        train(config)
    assert len(hub.calls) == 1


def test_hub_flags_without_push_to_hub_and_bad_repo_ids_exit_2(tmp_path, capsys):
    base = ["train", "--model", "pixelcnn_mnist", "--output_dir", str(tmp_path / "o")]
    for flags, message in [
        (["--hub_model_id", "someone/x"], "error: Expected --push_to_hub with --hub_model_id, got push_to_hub=False"),
        (["--push_to_hub", "--hub_model_id", "not a/valid/id"], "--hub_model_id: expected a Hub repository id"),
    ]:
        assert_cli_error([*base, *flags], message, capsys)
    assert not (tmp_path / "o").exists()
