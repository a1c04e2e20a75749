"""What both pipelines' calls share: labels drawn when none are given, diffusers' step-end callback, bad inputs."""

from __future__ import annotations

import pytest
import torch
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from scipy import stats

from pixelprior import VQPriorPipeline
from pixelprior.sampling import _COMPILED as COMPILED_STEPS

from .conftest import latents, tiny_pixel_pipeline
from .test_pipeline_vq_prior import tiny_prior, tiny_vqvae

K = 10  # classes of the conditional pipelines


@pytest.fixture(scope="module")
def pipe():
    return tiny_pixel_pipeline(num_classes=K)


@pytest.fixture(scope="module")
def vq_pipe():
    return VQPriorPipeline(tiny_prior(num_classes=K), tiny_vqvae())


def test_labels_are_drawn_with_the_generator_when_not_given(pipe, vq_pipe):
    for p in (pipe, vq_pipe):
        drawn = latents(p, seed=3, batch_size=4)
        assert torch.equal(drawn, latents(p, seed=3, batch_size=4))
        # the same generator first draws the labels, floor(K * u) of float64 uniforms, then the grid
        generator = torch.Generator().manual_seed(3)
        labels = (torch.rand(4, generator=generator, dtype=torch.float64) * K).long()
        explicit = p(batch_size=4, class_labels=labels, generator=generator, output_type="latent", progress=False)
        assert torch.equal(drawn, explicit.images)
    # one generator per image: image k (its label and its grid) depends on generator k only
    both = pipe(batch_size=2, generator=[torch.Generator().manual_seed(s) for s in (1, 2)], output_type="latent")
    alone = pipe(batch_size=1, generator=[torch.Generator().manual_seed(2)], output_type="latent")
    assert torch.equal(both.images[1:], alone.images)


def test_drawn_labels_are_uniform(pipe):
    labels = pipe.class_labels_for(20_000, None, torch.Generator().manual_seed(0))
    assert labels.dtype == torch.long and labels.shape == (20_000,)
    counts = torch.bincount(labels, minlength=K)
    assert len(counts) == K and stats.chisquare(counts.numpy()).pvalue > 1e-3
    assert pipe.class_labels_for(3, 7, None) == 7  # given labels are the prior's to check
    assert tiny_pixel_pipeline().class_labels_for(3, None, None) is None  # unconditional: none drawn


def test_callback_on_step_end_sees_every_completed_row(pipe, vq_pipe):
    for p in (pipe, vq_pipe):
        seen = []

        def callback(pipeline, step, timestep, callback_kwargs, seen=seen):
            seen.append((pipeline, step, timestep, callback_kwargs["latents"]))
            return callback_kwargs

        final = latents(p, seed=5, batch_size=3, callback_on_step_end=callback)
        assert torch.equal(final, latents(p, seed=5, batch_size=3))  # the callback draws nothing
        height = p.prior.grid_size[0]
        assert [(s, t) for _, s, t, _ in seen] == [(i, i) for i in range(height)] and p.num_timesteps == height
        for pipeline, step, _, grid in seen:
            assert pipeline is p and grid.shape == final.shape and grid.dtype == torch.long
            assert torch.equal(grid[:, :, : step + 1], final[:, :, : step + 1])
            assert not grid[:, :, step + 1 :].any()  # rows not drawn yet


def test_diffusers_callback_objects_and_tensor_inputs(pipe):
    class Rows(PipelineCallback):
        tensor_inputs = ["latents"]

        def callback_fn(self, pipeline, step_index, timestep, callback_kwargs):
            self.rows = [*getattr(self, "rows", []), int(callback_kwargs["latents"][:, :, step_index].sum())]
            return callback_kwargs

    first, second = Rows(), Rows()
    final = latents(pipe, seed=1, callback_on_step_end=MultiPipelineCallbacks([first, second]))
    assert first.rows == second.rows == [int(row.sum()) for row in final.unbind(2)]
    calls = []
    latents(pipe, callback_on_step_end=lambda *args: calls.append(args[3]), callback_on_step_end_tensor_inputs=[])
    assert calls and all(kwargs == {} for kwargs in calls)


def _set_row_to_one(pipeline, step, timestep, callback_kwargs):
    callback_kwargs["latents"][:, :, step] = 1
    return callback_kwargs


def _return_new_latents(pipeline, step, timestep, callback_kwargs):
    return {"latents": torch.ones_like(callback_kwargs["latents"])}


def test_compile_is_forwarded_to_the_prior():
    """``compile=True`` reaches ``prior.sample(compile=True)`` (its compiled steps are made) in both pipelines; in
    float64 the compiled step draws the eager loop's grid."""
    for p in (
        tiny_pixel_pipeline(num_classes=K),
        VQPriorPipeline(tiny_prior(num_classes=K, num_layers=1), tiny_vqvae()),
    ):
        p.prior.double()
        try:
            assert torch.equal(latents(p, compile=True), latents(p))
            assert COMPILED_STEPS.get(p.prior), "the prior's compiled steps were not used"
        finally:
            torch._dynamo.reset()


# (id, keyword arguments of a call to the class-conditional pixel pipeline, message)
BAD_CALLS = [
    ("batch_size 0", {"batch_size": 0}, "batch_size"),
    ("batch_size -1", {"batch_size": -1}, "batch_size"),
    ("batch_size 1.5", {"batch_size": 1.5}, "batch_size"),
    ("batch_size '2'", {"batch_size": "2"}, "batch_size"),
    ("batch_size True", {"batch_size": True}, "batch_size"),
    ("class_labels out of range", {"class_labels": [K]}, r"class_labels in \[0, 10\)"),
    ("class_labels negative", {"class_labels": -1}, r"class_labels in \[0, 10\)"),
    ("class_labels too few", {"batch_size": 3, "class_labels": [1, 2]}, "batch size"),
    ("class_labels floats", {"class_labels": [1.5]}, "integer class_labels"),
    ("class_labels strings", {"class_labels": ["a"]}, "integer class_labels"),
    ("class_labels 2-D", {"class_labels": torch.ones(1, 1, dtype=torch.long)}, "class_labels of shape"),
    ("generator an int", {"generator": 123}, "torch.Generator"),
    ("generator a string", {"generator": "seed"}, "torch.Generator"),
    ("generators too few", {"batch_size": 2, "generator": [torch.Generator()]}, "2 generators"),
    ("generators not all", {"batch_size": 2, "generator": [torch.Generator(), 1]}, "torch.Generator"),
    ("temperature 0", {"temperature": 0.0}, "temperature"),
    ("temperature -1", {"temperature": -1.0}, "temperature"),
    ("temperature nan", {"temperature": float("nan")}, "temperature"),
    ("temperature '1'", {"temperature": "1"}, "temperature"),
    ("output_type jpeg", {"output_type": "jpeg"}, "output_type"),
    ("output_type None", {"output_type": None}, "output_type"),
    ("mask without image", {"mask_image": torch.ones(1, 1, 6, 6)}, "both image and mask_image"),
    ("image without mask", {"image": torch.rand(1, 1, 6, 6)}, "both image and mask_image"),
    ("mask of another size", {"image": torch.rand(1, 1, 6, 6), "mask_image": torch.ones(1, 1, 4, 4)}, "mask_image"),
    ("image of 3 channels", {"image": torch.rand(1, 3, 6, 6), "mask_image": torch.ones(1, 1, 6, 6)}, "image of shape"),
    ("callback not callable", {"callback_on_step_end": 42}, "callable"),
    (
        "callback tensor input unknown",
        {"callback_on_step_end": _set_row_to_one, "callback_on_step_end_tensor_inputs": ["prompt_embeds"]},
        "callback_on_step_end_tensor_inputs",
    ),
    (
        "callback tensor inputs a string",
        {"callback_on_step_end": _set_row_to_one, "callback_on_step_end_tensor_inputs": "latents"},
        "callback_on_step_end_tensor_inputs",
    ),
    ("callback edits the latents", {"callback_on_step_end": _set_row_to_one}, "leave the latents unchanged"),
    ("callback returns new latents", {"callback_on_step_end": _return_new_latents}, "leave the latents unchanged"),
    ("compile a string", {"compile": "yes"}, "compile"),
    ("CUDA graphs on the CPU", {"compile": "reduce-overhead"}, "CUDA device"),
]


@pytest.mark.parametrize(("kwargs", "message"), [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS])
def test_bad_call_inputs_are_refused(kwargs, message, pipe):
    with pytest.raises(ValueError, match=message):
        pipe(**{"progress": False, "output_type": "latent", **kwargs})


def test_class_labels_for_an_unconditional_pipeline_are_refused():
    with pytest.raises(ValueError, match="Expected no class_labels"):
        tiny_pixel_pipeline()(class_labels=[1], progress=False)
