"""Every example runs end to end at a tiny size."""

import subprocess
import sys
from pathlib import Path

from PIL import Image

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_pixel_space_example(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, str(EXAMPLES / "pixel_space.py"), "--output_dir", str(out), "--max_steps", "3"]
    cmd += ["--hidden_channels", "8", "--num_layers", "2", "--per_class", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    grid = Image.open(out / "samples_and_completions.png")
    # 10 class rows + 3 completion rows of 2 digits (28 px, 2 px padding, scale 2).
    assert grid.size == (2 * (2 * 30 + 2), 2 * (13 * 30 + 2))
    assert (out / "model_index.json").exists()
