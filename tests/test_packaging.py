"""The built wheel: its metadata, and a model card written from a ``pip install --user`` and a ``--target`` install.

The wheel is built once from a copy of the sources (no build isolation: the venv's setuptools) and installed
without dependencies; one interpreter, which takes the dependencies from this venv, imports pixelprior from each
install in turn and writes a model card with the template the install holds. The ``--user`` install goes through a
throw-away virtual environment with system site-packages, the kind in which pip allows ``--user``.
"""

from __future__ import annotations

import email
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Imports pixelprior from each install, writes a card into it, prints where the package and its template were.
SCRIPT = """
import importlib.resources, sys
from pathlib import Path

for label, first in (("user", None), ("target", sys.argv[1])):
    if first is not None:  # the next install: forget the previous pixelprior, put this one first
        for name in [m for m in sys.modules if m == "pixelprior" or m.startswith("pixelprior.")]:
            del sys.modules[name]
        sys.path.insert(0, first)
    import pixelprior
    from pixelprior.pipelines import PixelPriorPipeline, save_model_card

    out = Path(sys.argv[2]) / label
    out.mkdir()
    prior = pixelprior.create_prior("pixelcnn_mnist", hidden_channels=4, num_layers=1, sample_size=4)
    save_model_card(out, PixelPriorPipeline(prior), "someone/" + label)
    template = importlib.resources.files("pixelprior.pipelines") / "model_card_template.md"
    print(label, pixelprior.__file__, template, sep="|")
"""


def _run(*args: str | os.PathLike, **env: str) -> str:
    result = subprocess.run(
        [os.fspath(a) for a in args], capture_output=True, text=True, env={**os.environ, **env}, cwd="/"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in ("pixelprior", "pyproject.toml", "README.md", "LICENSE"):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, src / name)
    dist = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", dist, src)
    (built,) = dist.glob("pixelprior-*.whl")
    return built


def test_wheel_holds_the_template_and_the_license(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = email.message_from_bytes(z.read(metadata))
        (license_file,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        assert b"Apache License" in z.read(license_file) and b"Version 2.0, January 2004" in z.read(license_file)
    assert "pixelprior/pipelines/model_card_template.md" in names
    assert meta["License-Expression"] == "Apache-2.0" and meta["License-File"] == "LICENSE"
    assert not any(n.startswith("pixelprior-0.1.0.data/") for n in names)  # nothing installed outside the package


def test_model_card_from_user_and_target_installs(wheel, tmp_path):
    target, userbase, venv, cards = (tmp_path / name for name in ("target", "userbase", "venv", "cards"))
    cards.mkdir()
    pip = (sys.executable, "-m", "pip")
    _run(*pip, "install", "-q", "--no-deps", "--target", target, wheel)
    # --user: pip refuses it in a venv without system site-packages (as this one is); use one that has them
    _run(sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv)
    python = venv / "bin" / "python"
    site = _run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").strip()
    # after the user site (which comes first), this venv's dependencies; their .pth files (this checkout's
    # editable pixelprior) are not read from a directory a .pth line adds
    Path(site, "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    user = {"PYTHONUSERBASE": os.fspath(userbase), "OMP_NUM_THREADS": "1"}
    _run(*pip, "--python", python, "install", "-q", "--user", "--no-deps", "--no-warn-script-location", wheel, **user)
    lines = _run(python, "-c", SCRIPT, target, cards, **user).strip().splitlines()
    where = dict((label, (package, template)) for label, package, template in (line.split("|") for line in lines))
    for label, install in (("user", userbase), ("target", target)):
        package, template = where[label]
        assert Path(package).is_relative_to(install) and Path(template).is_relative_to(install), (label, where)
        card = (cards / label / "README.md").read_text()
        assert "library_name: pixelprior" in card and f'from_pretrained("someone/{label}")' in card
