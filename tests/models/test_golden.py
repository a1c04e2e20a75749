"""Golden values of every registered prior: a seeded tiny variant's log-likelihood of a fixed grid and short samples.

The values in ``golden_values.json`` were recorded on the code before the redesign of the cached step (issue 12) and
guard against any change of the architecture, the initialization, the parameter layout, the input encoding or the
sampler (the draws, their order, the cached and the plain loops). A deliberate change regenerates them with
``python -m tests.models.test_golden --update`` and says so in its note.

Each registered name is recorded twice: its registered conditioning ("registered") and with class labels and a
spatial condition ("cond"), so that the conditioning paths of the cached steps are pinned too.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import PRIOR_NAMES, conditioning, random_x, tiny_prior

GOLDEN_FILE = Path(__file__).with_name("golden_values.json")
VARIANTS = {"registered": {}, "cond": {"num_classes": 3, "cond_channels": 2}}
BATCH = 2


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def record(name: str, variant: str) -> dict:
    """The golden values of one tiny model: ``log_prob`` of a fixed grid, a free sample and a completion.

    The free sample is drawn with the cached and the plain loops from the same seed; the completion
    (kept values, per channel) with the cached loop. Samples are flattened, raster order per sample and channel.
    """
    model = tiny_prior(name, **VARIANTS[variant])
    kw = conditioning(model, BATCH, seed=1)
    x = random_x(model, BATCH, seed=2)
    mask = torch.rand(x.shape, generator=seeded(3)) < 0.5
    with torch.no_grad():
        log_prob = model.log_prob(x, **kw).tolist()
    free = [
        model.sample(BATCH, **kw, temperature=0.8, generator=seeded(4), use_cache=use_cache).flatten().tolist()
        for use_cache in (True, False)
    ]
    completion = model.sample(known=x, known_mask=mask, **kw, generator=seeded(5))
    return {"log_prob": log_prob, "free": free[0], "free_plain": free[1], "completion": completion.flatten().tolist()}


def load() -> dict:
    return json.loads(GOLDEN_FILE.read_text())


CASES = [pytest.param(name, variant, id=f"{name}-{variant}") for name in PRIOR_NAMES for variant in VARIANTS]


def test_every_registered_prior_has_golden_values():
    recorded = load()
    missing = [
        f"{name}/{variant}" for name in PRIOR_NAMES for variant in VARIANTS if f"{name}/{variant}" not in recorded
    ]
    assert not missing, f"no golden values for {missing}: record them with python -m tests.models.test_golden --update"


@pytest.mark.parametrize("name,variant", CASES)
def test_golden_values(name, variant):
    expected = load().get(f"{name}/{variant}")
    if expected is None:
        pytest.fail(f"no golden values for {name}/{variant}")
    got = record(name, variant)
    # Float64 log-likelihoods to 1e-12 (BLAS kernels may round differently on another CPU); samples exactly.
    assert got["log_prob"] == pytest.approx(expected["log_prob"], rel=1e-12, abs=0)
    assert got["free"] == expected["free"], "the cached sample changed"
    assert got["free_plain"] == expected["free"], "the plain sample changed"
    assert got["completion"] == expected["completion"], "the cached completion changed"


def main(argv: list[str]) -> None:
    if argv != ["--update"]:
        raise SystemExit("usage: python -m tests.models.test_golden --update   (rewrites golden_values.json)")
    lines = []
    for name in PRIOR_NAMES:
        for variant in VARIANTS:
            value = record(name, variant)
            if value.pop("free_plain") != value["free"]:
                raise SystemExit(f"{name}/{variant}: the cached and plain loops disagree; not recording")
            lines.append(f'  "{name}/{variant}": {json.dumps(value)}')
    GOLDEN_FILE.write_text("{\n" + ",\n".join(lines) + "\n}\n")  # one line per model: reviewable diffs
    print(f"wrote {GOLDEN_FILE} ({len(lines)} models)")


if __name__ == "__main__":
    main(sys.argv[1:])
