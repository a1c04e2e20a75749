"""The demo's recognition measurement (benchmarks/demo_recognition.py) at a tiny size."""

import importlib.util
import re
import sys
from pathlib import Path

import pytest
import torch

from pixelprior import PixelPriorPipeline, create_prior
from pixelprior.data import load_dataset

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "demo_recognition.py"


def _module():
    spec = importlib.util.spec_from_file_location("demo_recognition", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_classifier_recognizes_real_digits_and_rejects_wrong_labels():
    demo = _module()
    classifier = demo.fit_classifier("mnist5k", 2, max_train=600)
    test = load_dataset("mnist5k", "test", binarize=True)
    x, labels = test.x[:200].long(), test.labels[:200]
    right = demo.recognition(classifier, x, labels, 2, 10)
    wrong = demo.recognition(classifier, x, (labels + 1) % 10, 2, 10)
    assert right.overall > 0.8 and wrong.overall < 0.1
    counts = torch.bincount(labels, minlength=10).double()
    assert abs(sum(r * n for r, n in zip(right.per_class, counts.tolist(), strict=True)) / 200 - right.overall) < 1e-9


def test_script_on_a_tiny_pipeline(tmp_path, capsys):
    demo = _module()
    torch.manual_seed(0)
    prior = create_prior("gated_pixelcnn_mnist", hidden_channels=4, num_layers=1, num_classes=10)
    PixelPriorPipeline(prior).save_pretrained(tmp_path / "pipe")
    demo.main(["--pipeline", str(tmp_path / "pipe"), "--per_class", "2", "--max_train", "300"])
    out = capsys.readouterr().out
    rows = re.findall(r"^\| (\d) \| ([\d.]+)% \| ([\d.]+)% \|$", out, flags=re.M)
    assert [int(k) for k, _, _ in rows] == list(range(10))
    assert all(float(rate) in (0.0, 50.0, 100.0) for _, rate, _ in rows)  # 2 samples per digit
    assert "recognized:" in out.splitlines()[-1]

    unconditional = create_prior("gated_pixelcnn_mnist", hidden_channels=4, num_layers=1)
    PixelPriorPipeline(unconditional).save_pretrained(tmp_path / "uncond")
    with pytest.raises(SystemExit) as exit_info:
        demo.main(["--pipeline", str(tmp_path / "uncond")])
    assert exit_info.value.code == 2
    assert "expected a class-conditional prior" in capsys.readouterr().err.lower()
