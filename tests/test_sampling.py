"""The one sampling loop: batch size inference, argument checks, progress bar, model mode, no autograd state."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from torch._C._dynamo.eval_frame import _debug_get_cache_entry_list

from pixelprior.sampling import _COMPILED as COMPILED_STEPS
from pixelprior.sampling import CompiledSteps, GraphedStep, drawn_params, raster_loop, sample, structure
from tests.conftest import PRIOR_NAMES, conditioning, random_x, tiny_prior

COND = {"num_classes": 3, "cond_channels": 2}


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def model():
    """A tiny class- and spatially conditioned PixelCNN (the loop is the same for every model)."""
    return tiny_prior("pixelcnn_cifar10", **COND)


def labels(n: int) -> torch.Tensor:
    return torch.arange(n) % 3


def cond(n: int) -> torch.Tensor:
    return torch.randn(n, 2, 4, 4, dtype=torch.float64)


def test_batch_size_inferred_from_every_input(model):
    x = random_x(model, 3)
    mask = torch.zeros(3, 4, 4, dtype=torch.bool)
    # From labels and cond.
    assert model.sample(class_labels=labels(3), cond=cond(3)).shape[0] == 3
    # From the known values and the mask, with an int label (broadcast).
    assert model.sample(class_labels=1, cond=cond(3), known=x, known_mask=mask).shape[0] == 3
    # From a list of generators.
    out = model.sample(class_labels=1, cond=cond(2)[:1].expand(2, -1, -1, -1), generator=[seeded(0), seeded(1)])
    assert out.shape[0] == 2
    # Given explicitly and consistent.
    assert model.sample(3, class_labels=labels(3), cond=cond(3)).shape == (3, 3, 4, 4)


def test_batch_size_one_by_default():
    unconditional = tiny_prior("pixelcnn_mnist")
    assert unconditional.sample().shape == (1, 1, 4, 4)
    conditional = tiny_prior("pixelcnn_mnist", num_classes=3)
    assert conditional.sample(class_labels=2).shape == (1, 1, 4, 4)


@pytest.mark.parametrize(
    "case",
    ["labels-vs-cond", "batch_size-vs-labels", "known-vs-labels", "mask-vs-known", "generators-vs-labels"],
)
def test_batch_size_mismatch_raises(model, case):
    x = random_x(model, 3)
    kwargs = {
        "labels-vs-cond": dict(class_labels=labels(3), cond=cond(2)),
        "batch_size-vs-labels": dict(batch_size=2, class_labels=labels(3), cond=cond(3)),
        "known-vs-labels": dict(
            class_labels=labels(2), cond=cond(2), known=x, known_mask=torch.zeros(3, 4, 4, dtype=torch.bool)
        ),
        "mask-vs-known": dict(
            class_labels=labels(3), cond=cond(3), known=x, known_mask=torch.zeros(2, 4, 4, dtype=torch.bool)
        ),
        "generators-vs-labels": dict(class_labels=labels(3), cond=cond(3), generator=[seeded(0), seeded(1)]),
    }[case]
    with pytest.raises(ValueError):
        model.sample(**kwargs)


def test_function_and_method_agree(model):
    kw = dict(class_labels=labels(2), cond=cond(2), temperature=0.8)
    assert torch.equal(sample(model, **kw, generator=seeded(0)), model.sample(**kw, generator=seeded(0)))


def test_progress_bar(model, capsys):
    kw = dict(class_labels=labels(2), cond=cond(2))
    with_bar = model.sample(**kw, generator=seeded(0), progress=True)
    shown = capsys.readouterr().err
    assert "sampling" in shown and "16" in shown  # tqdm's bar on stderr, one tick per position
    without = model.sample(**kw, generator=seeded(0), progress=False)
    assert capsys.readouterr().err == ""
    assert torch.equal(with_bar, without)


@pytest.mark.parametrize("name", PRIOR_NAMES)
@pytest.mark.parametrize("use_cache", [True, False], ids=["cached", "plain"])
def test_samples_in_eval_mode_and_restores_mode(name, use_cache):
    """Sampling runs in eval mode (dropout off) whatever the mode, and leaves the mode as it found it."""
    model = tiny_prior(name)
    kw = conditioning(model, 2)
    evaluated = model.sample(**kw, generator=seeded(0), use_cache=use_cache)
    assert not model.training
    model.train()
    trained = model.sample(**kw, generator=seeded(0), use_cache=use_cache)
    assert model.training and all(m.training for m in model.modules())
    assert torch.equal(evaluated, trained)


def test_mode_restored_after_an_error(model, monkeypatch):
    model.train()

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(model, "step", broken)
    with pytest.raises(RuntimeError, match="boom"):
        model.sample(class_labels=labels(1), cond=cond(1))
    assert model.training
    model.eval()


def test_no_autograd_state(model):
    model.zero_grad(set_to_none=True)
    out = model.sample(class_labels=labels(2), cond=cond(2))
    assert out.dtype == torch.long and not out.requires_grad
    assert all(p.grad is None for p in model.parameters())


def test_known_int_dtypes_and_inputs_left_untouched(model):
    x = random_x(model, 2)
    mask = torch.rand(2, 3, 4, 4, generator=seeded(1)) < 0.5
    known, known_mask, c = x.clone(), mask.clone(), cond(2)
    c_copy = c.clone()
    out = model.sample(class_labels=labels(2), cond=c, known=known.to(torch.uint8), known_mask=known_mask)
    assert torch.equal(out[mask], x[mask])
    # The sampler writes into its own canvas, never into the caller's tensors.
    assert torch.equal(known, x) and torch.equal(known_mask, mask) and torch.equal(c, c_copy)
    out2 = model.sample(class_labels=labels(2), cond=c, known=known, known_mask=known_mask)
    assert torch.equal(known, x) and torch.equal(out2[mask], x[mask])


def test_cond_at_another_resolution_is_resized(model):
    # A coarse condition is resized (nearest) to the grid: same samples as the upsampled map.
    coarse = cond(2)[:, :, ::2, ::2]  # (2, 2, 2, 2)
    fine = coarse.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # (2, 2, 4, 4)
    kw = dict(class_labels=labels(2))
    assert torch.equal(
        model.sample(**kw, cond=coarse, generator=seeded(0)), model.sample(**kw, cond=fine, generator=seeded(0))
    )


# ------------------------------------------------------------------------------------------- bad arguments, NaN
@pytest.mark.parametrize("temperature", [float("inf"), float("-inf"), float("nan"), -0.5, True])
def test_temperature_must_be_finite_and_positive(model, temperature):
    with pytest.raises(ValueError, match="temperature"):
        model.sample(class_labels=labels(1), cond=cond(1), temperature=temperature)


@pytest.mark.parametrize("generator", [123, "seed", [123], [], (seeded(0), 1)], ids=str)
def test_generator_must_be_generators(model, generator):
    with pytest.raises(ValueError, match="torch.Generator"):
        model.sample(class_labels=labels(1), cond=cond(1), generator=generator)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_cond_must_be_finite(model, value):
    bad = cond(2)
    bad[1, 0, 2, 3] = value
    x = random_x(model, 2)
    for call in (lambda: model(x, labels(2), bad), lambda: model.log_prob(x, labels(2), bad)):
        with pytest.raises(ValueError, match="finite cond"):
            call()
    with pytest.raises(ValueError, match="finite cond"):
        model.sample(class_labels=labels(2), cond=bad)


@pytest.mark.parametrize("name", ["pixelcnn_cifar10", "pixelcnn_pp_cifar10"], ids=["categorical", "logistic"])
@pytest.mark.parametrize("use_cache", [True, False], ids=["cached", "plain"])
def test_non_finite_parameters_raise_naming_the_position(name, use_cache, monkeypatch):
    """NaN parameters of the last channel step at (1, 2) are reported there, whichever loop (the draws would return
    garbage: all-ones from a categorical, -2**63 from a logistic mixture); the steps before draw from their own
    parameters, which are finite."""
    model = tiny_prior(name)
    groups = model.distribution.param_groups()
    last = len(model.distribution.channel_steps) - 1
    poisoned = groups == groups.max()  # the parameters the last step draws from: channel B, or the whole mixture

    def poison(params: torch.Tensor, at: tuple) -> torch.Tensor:
        params = params.clone()
        params[(slice(None), poisoned, *at)] = float("nan")
        return params

    if use_cache:
        forward_step = model.forward_step
        monkeypatch.setattr(
            model,
            "forward_step",
            lambda cache, pixel, i, j, *rest: (lambda p: poison(p, ()) if (i, j) == (1, 2) else p)(
                forward_step(cache, pixel, i, j, *rest)
            ),
        )
    else:
        compute_params = model.compute_params
        monkeypatch.setattr(model, "compute_params", lambda *args: poison(compute_params(*args), (1, 2)))
    with pytest.raises(ValueError, match=rf"row 1, column 2, channel step {last} "):
        model.sample(2, generator=seeded(0), use_cache=use_cache)


@pytest.mark.parametrize("name", ["pixelcnn_mnist", "pixelcnn_pp_mnist"], ids=["categorical", "logistic"])
def test_nan_weights_raise_at_the_first_position(name):
    model = tiny_prior(name)
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if n.startswith("output")).fill_(float("nan"))
    for use_cache in (True, False):
        with pytest.raises(ValueError, match="row 0, column 0, channel step 0"):
            model.sample(2, generator=seeded(0), use_cache=use_cache)


# --------------------------------------------------------------------------------------- the raster loop as a coder
@pytest.mark.parametrize("name", PRIOR_NAMES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_encoder_and_decoder_see_the_same_parameters(name, dtype):
    """Lossless coding runs the cached loop twice: the encoder on the true image (every later position already
    holds its value) and the decoder on zeros, filled as it decodes. The parameters of the channels being drawn must
    be bit-identical in both: a cached step may read final positions only."""
    model = tiny_prior(name, dtype=dtype)
    labels, cond = model.check_conditioning(2, **conditioning(model, 2))
    truth = random_x(model, 2, seed=4)
    spans = drawn_params(model.distribution)
    steps = model.distribution.channel_steps

    def run(canvas: torch.Tensor) -> list[torch.Tensor]:
        seen = []

        def draw(params, values, channels, i, j):
            seen.append(params[:, spans[steps.index(channels)]].clone())
            return truth[:, list(channels), i, j]  # what the encoder codes, what the decoder decodes

        out = raster_loop(model, canvas, torch.zeros_like(truth, dtype=torch.bool), labels, cond, draw)
        assert torch.equal(out, truth)
        return seen

    encoder, decoder = run(truth.clone()), run(torch.zeros_like(truth))
    H, W = model.grid_size
    assert len(encoder) == len(decoder) == H * W * len(steps)
    for n, (a, b) in enumerate(zip(encoder, decoder, strict=True)):
        assert torch.equal(a, b), f"step {n}: the parameters depend on values not drawn yet"


# ------------------------------------------------------------------------------------------------- compiled steps
def uncompiled(fn, **options):
    return fn


@pytest.mark.parametrize("name", PRIOR_NAMES)
@pytest.mark.parametrize("cond_kwargs", [{}, COND], ids=["registered", "cond"])
def test_tensor_position_steps_equal_the_eager_cached_loop(name, cond_kwargs):
    """The compiled loop's steps, run uncompiled: positions as 0-d tensors, the commit at a position's last step,
    the row commits, the draws from uniforms drawn outside. Same samples as the eager cached loop (float64), with a
    completion (per channel) and a temperature."""
    model = tiny_prior(name, **cond_kwargs)
    labels, cond = model.check_conditioning(3, **conditioning(model, 3))
    known = random_x(model, 3, seed=1)
    mask = torch.rand(known.shape, generator=seeded(2)) < 0.4
    mask[0] = False
    kw = dict(class_labels=labels, cond=cond, known=known, known_mask=mask, temperature=0.7)
    eager = model.sample(**kw, generator=seeded(3))
    x = torch.where(mask, known, 0)
    steps = CompiledSteps({}, compiler=uncompiled)
    with torch.no_grad():
        out = steps.run(model, model.init_cache(3, labels, cond), x, mask, 0.7, seeded(3), False, None)
    assert torch.equal(out, eager)


# One configuration per model class, one layer: what tracing costs is the graph's size.
COMPILED = ["pixelcnn_cifar10", "gated_pixelcnn_cifar10", "pixelcnn_pp_mnist", "pixelsnail_vqvae2_bottom",
            "pixelsnail_cifar10", "pixelrnn_diagonal_bilstm_mnist", "pixelrnn_row_lstm_cifar10", "image_gpt_mnist",
            "image_transformer_cifar10"]  # fmt: skip


@pytest.mark.parametrize("name", COMPILED)
def test_compiled_step_is_traced_once_for_every_position(name):
    """``compile=True`` traces each step variant's graph once (``fullgraph``: no break) and reuses it at every
    position and in the next call: one dynamo cache entry per compiled function, none added by a second run; the
    samples are those of the eager cached loop (float64). ``backend="eager"`` checks the tracing, not inductor's code
    (benchmarks/sampling.py measures that)."""
    model = tiny_prior(name, num_layers=1)
    kw = conditioning(model, 2)
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    options = {"backend": backend, "options": {"guard_filter_fn": None}}  # dynamo's guards kept: they would recompile
    eager = model.sample(2, **kw, generator=seeded(0))
    try:
        assert torch.equal(model.sample(2, **kw, generator=seeded(0), compile=options), eager)
        (steps,) = COMPILED_STEPS[model].values()
        functions = [*steps.steps.values(), *steps.rows.values()]
        entries = [len(_debug_get_cache_entry_list(f._torchdynamo_orig_callable.__code__)) for f in functions]
        # One entry per function (a no-op row commit has an entry and no graph), whatever the number of positions.
        assert graphs and entries == [1] * len(functions) and len(graphs) <= len(functions), entries
        first = len(graphs)
        assert torch.equal(model.sample(2, **kw, generator=seeded(0), compile=options), eager)
        assert len(graphs) == first, "the second run compiled again"
    finally:
        torch._dynamo.reset()


def test_graphs_without_guards_serve_one_cache_structure():
    """By default the compiled steps skip dynamo's guards: another batch size (another cache structure) gets its own
    graphs instead of running the first ones on inputs they were not made for."""
    model = tiny_prior("pixelcnn_mnist", num_layers=1)
    try:
        for batch_size in (2, 3, 2):
            eager = model.sample(batch_size, generator=seeded(batch_size))
            assert torch.equal(
                model.sample(batch_size, generator=seeded(batch_size), compile={"backend": "eager"}), eager
            )
        assert len(COMPILED_STEPS[model]) == 2
        # The graphs are kept with the model, and do not keep it alive.
        alive = weakref.ref(model)
        del model
        gc.collect()
        assert alive() is None
    finally:
        torch._dynamo.reset()


def test_compile_arguments():
    model = tiny_prior("pixelcnn_mnist")
    with pytest.raises(ValueError, match="use_cache=True"):
        model.sample(1, use_cache=False, compile=True)
    with pytest.raises(ValueError, match="compile"):
        model.sample(1, compile="inductor")
    with pytest.raises(ValueError, match="cuda_graphs=True for CUDA graphs"):
        model.sample(1, compile={"mode": "reduce-overhead"})
    with pytest.raises(ValueError, match="cuda_graphs to be a bool"):
        model.sample(1, compile=True, cuda_graphs="yes")
    with pytest.raises(ValueError, match="compile=True with cuda_graphs"):
        model.sample(1, cuda_graphs=True)
    for kwargs in ({"compile": True, "cuda_graphs": True}, {"compile": "reduce-overhead"}):
        with pytest.raises(ValueError, match="CUDA device with cuda_graphs=True, got one on cpu"):
            model.sample(1, **kwargs)


def _tensors(obj, seen=None):
    """Every tensor reachable from a cache (dataclasses, objects, lists, tuples), once each."""
    seen = {} if seen is None else seen
    if isinstance(obj, torch.Tensor):
        seen.setdefault(id(obj), obj)
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            _tensors(item, seen)
    elif hasattr(obj, "__dict__") and not isinstance(obj, (torch.nn.Module, type)):
        for item in vars(obj).values():
            _tensors(item, seen)
    return seen


@pytest.mark.parametrize("name", COMPILED)
def test_graphed_steps_replay_on_static_inputs(name):
    """``cuda_graphs=True``'s loop on the CPU, with a capture that replays by calling the step again on the inputs it
    was captured with: the position and uniforms copied into static tensors, the flags cloned, the samples those of
    the eager cached loop (float64, with a completion). A CUDA graph replays on the tensors it captured, so the steps
    must write the cache in place: the same tensors, at the same addresses, and the same Python values (a replay runs
    no Python), before and after a run."""
    model = tiny_prior(name, num_layers=1)
    labels, cond = model.check_conditioning(2, **conditioning(model, 2))
    mask = torch.rand((2, model.in_channels, *model.grid_size), generator=seeded(2)) < 0.3
    known = random_x(model, 2, seed=1)
    eager = model.sample(class_labels=labels, cond=cond, known=known, known_mask=mask, generator=seeded(3))
    captured = []

    def capture(fn, args):
        captured.append(fn)
        return lambda: fn(*args)

    cache = model.init_cache(2, labels, cond)
    before = {k: (t.data_ptr(), t.shape) for k, t in _tensors(cache).items()}, structure(cache)
    with torch.no_grad():
        out = CompiledSteps({}, compiler=uncompiled).run(
            model, cache, torch.where(mask, known, 0), mask, 1.0, seeded(3), False, None, capture
        )
    assert torch.equal(out, eager)
    assert captured and ({k: (t.data_ptr(), t.shape) for k, t in _tensors(cache).items()}, structure(cache)) == before


def test_graphed_step_copies_inputs_and_clones_outputs():
    calls = []

    def fn(scale, i):
        calls.append(int(i))
        return i * scale

    replays = []
    step = GraphedStep(fn, lambda f, args: replays.append(args) or (lambda: f(*args)))
    outs = [step((torch.tensor(2),), (torch.tensor(v),)) for v in (1, 5, 7)]
    assert [int(o) for o in outs] == [2, 10, 14] and calls == [1, 5, 7] and len(replays) == 1
