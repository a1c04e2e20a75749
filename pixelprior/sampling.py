"""The one sampling loop of pixelprior: plain, cached and compiled.

Positions are drawn in raster order (row by row, left to right); at each position the likelihood says in
which steps its channels are drawn (``distribution.channel_steps``: R, then G, then B for the categorical
likelihood; all channels at once for a joint one). Each step needs the distribution parameters of the
current position given everything drawn so far:

* **plain** (``use_cache=False``): one full teacher-forced forward of the whole canvas per step, the
  reference: obviously correct, ``O(H W)`` times the cost of a forward;
* **cached** (``use_cache=True``): the model's incremental network (``init_cache`` / ``step``, the step protocol of
  :mod:`pixelprior.models.modeling_prior`). Each causal layer keeps its input buffer (or row states, or key/value
  caches), so a step computes only the new position. With the same generator both loops draw the same random
  numbers in the same order, and in float64 they give identical samples;
* **compiled** (``compile=True``): the cached step, and the draw from its parameters, compiled with
  ``torch.compile``: positions are 0-d tensors and caches are allocated with static shapes, so one graph serves
  every position; a model has one graph per channel step and step variant (:class:`CompiledSteps`), made once. The
  random numbers are drawn outside the graph from the same generator, in the same order, so the samples are those of
  the eager cached loop (identical in float64).

Completion: values where ``known_mask`` is True are kept as given and every later position is conditioned on
them. A step whose channels are known for the whole batch draws no random numbers (in both loops), so a
completion is reproducible whichever loop runs it.

Checks: the distribution parameters of every step that draws must be finite; the loop collects one flag per step on
the device and reads them back once per row (one host synchronization a row on a GPU), then raises a ``ValueError``
naming the first bad position. Known values are read back once, before the loop.

The model runs in eval mode while sampling (dropout off); its previous mode is restored afterwards.
"""

from __future__ import annotations

import math
import types
import weakref
from collections.abc import Callable, Hashable
from typing import Any, Protocol

import torch

from .distributions.base import Generator, Likelihood, uniform
from .nn.stepping import as_index, pick
from .progress import progress_bar

# draw(params, values, channels, i, j): the values of ``channels`` at position (i, j) given the network's parameters
# there, params ``(B, num_params)``, and the position's values so far, values ``(B, C)`` long -> ``(B, len(channels))``
# long. Sampling draws them from the distribution; lossless coding reads or writes them through an entropy coder.
Draw = Callable[[torch.Tensor, torch.Tensor, tuple[int, ...], int, int], torch.Tensor]
# row_callback(i, x): called once row i is complete, with the grid x ``(B, C, H, W)`` long drawn so far.
RowCallback = Callable[[int, torch.Tensor], None]


class Prior(Protocol):
    """What the loop needs of a model (:class:`pixelprior.models.AutoregressivePrior` has it all)."""

    distribution: Likelihood
    grid_size: tuple[int, int]
    training: bool

    @property
    def in_channels(self) -> int: ...

    @property
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype: ...

    def eval(self) -> Any: ...

    def train(self, mode: bool = True) -> Any: ...

    def check_x(self, x: Any, name: str = "x") -> torch.Tensor: ...

    def check_conditioning(self, batch_size: int, class_labels: Any = None, cond: Any = None) -> tuple: ...

    def encode_input(self, x: torch.Tensor) -> torch.Tensor: ...

    def compute_params(self, h: torch.Tensor, class_labels: Any, cond: Any) -> torch.Tensor: ...

    def init_cache(self, batch_size: int, class_labels: Any, cond: Any) -> Any: ...

    def step(self, cache: Any, h: torch.Tensor, i: int, j: int) -> torch.Tensor: ...

    def forward_step(self, cache: Any, pixel: torch.Tensor, i: Any, j: Any, step: int, variant: Hashable) -> Any: ...

    def commit(self, cache: Any, pixel: torch.Tensor, i: Any, j: Any) -> None: ...

    def commit_row(self, cache: Any, i: Any, variant: Hashable) -> None: ...

    def step_variant(self, i: int, j: int) -> Hashable: ...

    def row_variant(self, i: int) -> Hashable: ...


def _infer_batch_size(batch_size: int | None, **tensors: Any) -> int:
    sizes = {name: len(t) for name, t in tensors.items() if isinstance(t, (torch.Tensor, list, tuple))}
    if batch_size is not None:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"Expected batch_size to be a positive int, got {batch_size!r}.")
        sizes = {"batch_size": batch_size, **sizes}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"Expected one batch size for every input, got {sizes}.")
    return next(iter(sizes.values()), 1)


def check_temperature(temperature: Any) -> float:
    """The temperature as a float; a ``ValueError`` unless it is a finite number > 0."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not math.isfinite(temperature):
        raise ValueError(f"Expected temperature to be a finite number > 0, got {temperature!r}.")
    if not temperature > 0:
        raise ValueError(f"Expected temperature > 0, got {temperature!r}.")
    return float(temperature)


def check_compile(compile: Any, use_cache: bool, cuda_graphs: Any, device: torch.device) -> None:
    """Raise a ``ValueError`` unless ``compile`` is a bool or a dict of ``torch.compile`` options that goes with
    ``use_cache`` and ``cuda_graphs`` (a bool; True only with ``compile`` and a model on a CUDA device)."""
    if not isinstance(compile, (bool, dict)):
        raise ValueError(
            f"Expected compile to be a bool, 'reduce-overhead' or a dict of torch.compile options, got {compile!r}."
        )
    if compile is not False and not use_cache:
        raise ValueError("Expected use_cache=True with compile: the compiled step is the cached one.")
    if isinstance(compile, dict) and "reduce-overhead" in str(compile.get("mode", "")):
        # Inductor's CUDA graphs skip a graph that writes to its inputs, and every step writes to its caches.
        raise ValueError(
            "Expected cuda_graphs=True for CUDA graphs, got compile with mode 'reduce-overhead' (inductor does not "
            "capture the sampling step, which writes its caches in place)."
        )
    if not isinstance(cuda_graphs, bool):
        raise ValueError(f"Expected cuda_graphs to be a bool, got {cuda_graphs!r}.")
    if cuda_graphs and compile is False:
        raise ValueError("Expected compile=True with cuda_graphs=True: the graphs replay the compiled step.")
    if cuda_graphs and device.type != "cuda":
        raise ValueError(f"Expected a model on a CUDA device with cuda_graphs=True, got one on {device.type}.")


def check_generator(generator: Any) -> None:
    """A ``ValueError`` unless ``generator`` is ``None``, a ``torch.Generator`` or a non-empty list of them."""
    if generator is None or isinstance(generator, torch.Generator):
        return
    if isinstance(generator, (list, tuple)) and generator and all(isinstance(g, torch.Generator) for g in generator):
        return
    got = type(generator).__name__
    if isinstance(generator, (list, tuple)):
        got = f"a {got} of {sorted({type(g).__name__ for g in generator})}" if generator else f"an empty {got}"
    raise ValueError(f"Expected generator to be a torch.Generator or a list of them (one per sample), got {got}.")


def _check_known(model: Prior, batch_size: int, known: Any, known_mask: Any) -> tuple[torch.Tensor, torch.Tensor]:
    C, (H, W) = model.in_channels, model.grid_size
    if known is None and known_mask is None:
        empty = torch.zeros(batch_size, C, H, W, dtype=torch.long, device=model.device)
        return empty, empty.bool()
    if known is None or known_mask is None:
        raise ValueError("Expected both known and known_mask (True = keep), or neither.")
    known = model.check_x(known, name="known")
    if not isinstance(known_mask, torch.Tensor) or known_mask.dtype != torch.bool:
        raise ValueError(
            f"Expected known_mask to be a bool tensor (True = keep), got "
            f"{known_mask.dtype if isinstance(known_mask, torch.Tensor) else type(known_mask).__name__}."
        )
    if known_mask.ndim == 3:
        known_mask = known_mask.unsqueeze(1)
    if known_mask.ndim != 4 or tuple(known_mask.shape) not in ((batch_size, C, H, W), (batch_size, 1, H, W)):
        raise ValueError(
            f"Expected known_mask of shape ({batch_size}, {C}, {H}, {W}), ({batch_size}, 1, {H}, {W}) or "
            f"({batch_size}, {H}, {W}), got {tuple(known_mask.shape)}."
        )
    known_mask = known_mask.to(model.device).expand(batch_size, C, H, W)
    return torch.where(known_mask, known, 0), known_mask


@torch.no_grad()
def sample(
    model: Prior,
    batch_size: int | None = None,
    *,
    class_labels: torch.Tensor | int | None = None,
    cond: torch.Tensor | None = None,
    known: torch.Tensor | None = None,
    known_mask: torch.Tensor | None = None,
    temperature: float = 1.0,
    generator: Generator = None,
    use_cache: bool = True,
    compile: bool | str | dict[str, Any] = False,
    cuda_graphs: bool = False,
    progress: bool = False,
    row_callback: RowCallback | None = None,
) -> torch.Tensor:
    """Sample ``(B, C, H, W)`` grids from ``model``; see :meth:`AutoregressivePrior.sample` for the arguments.

    ``compile`` may also be a dict of ``torch.compile`` options (a ``backend``, a ``mode`` other than
    ``"reduce-overhead"``: CUDA graphs are ``cuda_graphs=True``), or ``"reduce-overhead"`` (``torch.compile``'s name
    for CUDA graphs): ``compile=True, cuda_graphs=True``. ``row_callback(i, x)``, if given, is called once each row
    ``i`` is complete with the grid drawn so far.
    """
    temperature = check_temperature(temperature)
    check_generator(generator)
    if isinstance(compile, str) and compile == "reduce-overhead":
        compile, cuda_graphs = True, True
    check_compile(compile, use_cache, cuda_graphs, model.device)
    batch_size = _infer_batch_size(
        batch_size,
        class_labels=class_labels if not isinstance(class_labels, int) else None,
        cond=cond,
        known=known,
        known_mask=known_mask,
        generator=generator if isinstance(generator, (list, tuple)) else None,
    )
    class_labels, cond = model.check_conditioning(batch_size, class_labels, cond)
    x, known_mask = _check_known(model, batch_size, known, known_mask)
    if compile is not False:
        with _eval_mode(model):
            cache = model.init_cache(batch_size, class_labels, cond)
            steps = compiled_steps(model, {} if compile is True else compile, cache)
            capture = capture_cuda_graph if cuda_graphs else None
            return steps.run(model, cache, x, known_mask, temperature, generator, progress, row_callback, capture)

    def draw(params: torch.Tensor, values: torch.Tensor, channels: tuple[int, ...], i: int, j: int) -> torch.Tensor:
        return model.distribution.sample(params, values, channels, temperature, generator)

    return raster_loop(
        model,
        x,
        known_mask,
        class_labels,
        cond,
        draw,
        use_cache=use_cache,
        progress=progress,
        row_callback=row_callback,
    )


@torch.no_grad()
def raster_loop(
    model: Prior,
    x: torch.Tensor,
    known_mask: torch.Tensor,
    class_labels: torch.Tensor | None,
    cond: torch.Tensor | None,
    draw: Draw,
    *,
    use_cache: bool = True,
    progress: bool = False,
    row_callback: RowCallback | None = None,
) -> torch.Tensor:
    """Visit every position in raster order and fill ``x`` in place with ``draw``'s values, on checked inputs.

    The loop under :func:`sample` (``draw`` samples) and under lossless coding (``draw`` reads the true values and
    codes them, or decodes them): both sides of a code see the same parameters, computed by the same steps in the
    same order. Runs the model in eval mode and restores its mode.

    Shapes:
        x: ``(B, C, H, W)`` long (known values in place), known_mask: ``(B, C, H, W)`` bool -> x

    Raises:
        ValueError: when the parameters of a step that draws are not finite (naming the first such position).
    """
    with _eval_mode(model):
        return _raster_loop(model, x, known_mask, class_labels, cond, draw, use_cache, progress, row_callback)


class _eval_mode:
    """The model in eval mode for the block (dropout off), its mode restored after it, also on an error."""

    def __init__(self, model: Prior) -> None:
        self.model, self.was_training = model, model.training

    def __enter__(self) -> None:
        self.model.eval()

    def __exit__(self, *exc: object) -> None:
        self.model.train(self.was_training)


def known_steps(known_mask: torch.Tensor, channel_steps: tuple[tuple[int, ...], ...]) -> list[list[list[bool]]]:
    """``[s][i][j]``: whether step ``s`` of position ``(i, j)`` is known for the whole batch (read back once).

    Shapes:
        known_mask: ``(B, C, H, W)`` bool
    """
    whole_batch = known_mask.all(0)  # (C, H, W)
    return torch.stack([whole_batch[list(channels)].all(0) for channels in channel_steps]).tolist()


def drawn_params(distribution: Likelihood) -> list[slice]:
    """For each channel step, the parameter maps its draw reads: those of the channel groups it draws (one channel's
    logits of a categorical likelihood, every map of a joint one). Contiguous: the groups are in channel order."""
    groups = distribution.param_groups().tolist()
    spans = []
    for channels in distribution.channel_steps:
        used = [p for p, g in enumerate(groups) if g in channels]
        spans.append(slice(used[0], used[-1] + 1))
    return spans


# step(i, j, k): channel step k of position (i, j); returns the finiteness of the parameters it drew from (a 0-d bool
# tensor, left on the device), or None for a step that draws nothing. begin_row(i): called before row i's steps.
Step = Callable[[int, int, int], "torch.Tensor | None"]


def _visit(
    grid: tuple[int, int],
    num_steps: int,
    step: Step,
    begin_row: Callable[[int], None],
    channel_steps: tuple[tuple[int, ...], ...],
    x: torch.Tensor,
    progress: bool,
    row_callback: RowCallback | None,
) -> torch.Tensor:
    """The raster order every loop runs: rows, positions, channel steps; the parameters' finiteness read back once a
    row (then a ``ValueError`` naming the first bad step); the progress bar and the row callback."""
    (H, W) = grid
    bar = progress_bar(total=H * W, desc="sampling", disable=not progress, leave=False)
    for i in range(H):
        begin_row(i)
        flags, where = [], []
        for j in range(W):
            for k in range(num_steps):
                finite = step(i, j, k)
                if finite is not None:
                    flags.append(finite)
                    where.append((j, k))
            bar.update(1)
        if flags and not bool((flags := torch.stack(flags)).all()):
            j, k = where[int((~flags).nonzero()[0])]
            raise ValueError(
                f"Expected finite distribution parameters, got NaN or infinite ones at row {i}, column {j}, channel "
                f"step {k} (channels {channel_steps[k]}): the model's weights or its conditioning are not finite."
            )
        if row_callback is not None:
            row_callback(i, x)
    bar.close()
    return x


def _raster_loop(
    model: Prior,
    x: torch.Tensor,
    known_mask: torch.Tensor,
    class_labels: torch.Tensor | None,
    cond: torch.Tensor | None,
    draw: Draw,
    use_cache: bool,
    progress: bool,
    row_callback: RowCallback | None,
) -> torch.Tensor:
    steps = model.distribution.channel_steps
    known, spans = known_steps(known_mask, steps), drawn_params(model.distribution)
    h = model.encode_input(x)  # (B, E, H, W) the encoded canvas, updated pixel by pixel
    cache = model.init_cache(x.shape[0], class_labels, cond) if use_cache else None

    def step(i: int, j: int, k: int) -> torch.Tensor | None:
        if use_cache:
            params = model.step(cache, h, i, j)  # even a known step feeds the layer caches, which later steps read
        elif known[k][i][j]:
            return None
        else:
            params = model.compute_params(h, class_labels, cond)[:, :, i, j]
        if known[k][i][j]:
            return None
        channels = list(steps[k])
        drawn = draw(params, x[:, :, i, j], steps[k], i, j)  # (B, n)
        x[:, channels, i, j] = torch.where(known_mask[:, channels, i, j], x[:, channels, i, j], drawn)
        h[:, :, i : i + 1, j : j + 1] = model.encode_input(x[:, :, i : i + 1, j : j + 1])
        return torch.isfinite(params[:, spans[k]]).all()

    return _visit(model.grid_size, len(steps), step, lambda i: None, steps, x, progress, row_callback)


# ------------------------------------------------------------------------------------------------- compiled steps
def _position_step(
    model: Prior,
    step: int,
    variant: Hashable,
    last: bool,
    drawn: tuple[int, int],
    cache: Any,
    x: torch.Tensor,
    known_mask: torch.Tensor,
    temperature: torch.Tensor,
    i: torch.Tensor,
    j: torch.Tensor,
    u: torch.Tensor,
) -> torch.Tensor:
    """One channel step at ``(i, j)`` (0-d tensors): the model's step, the finiteness of the parameters it draws
    from (maps ``drawn[0] .. drawn[1] - 1``), the draw from the uniforms ``u`` and the known values; the commit of the
    position at its last step. What :class:`CompiledSteps` compiles.

    Shapes:
        x: ``(B, C, H, W)`` long, written in place; known_mask: ``(B, C, H, W)`` bool; u: ``(B, n)`` -> ``()`` bool
    """
    dist = model.distribution
    channels = list(dist.channel_steps[step])
    values = pick(pick(x, 2, i), 2, j)  # (B, C): the position's values so far (known ones in place)
    params = model.forward_step(cache, _encode(model, values), i, j, step, variant)
    finite = torch.isfinite(params[:, drawn[0] : drawn[1]]).all()
    new = dist.sample_from(params, values, tuple(channels), temperature, u)  # (B, n)
    at = (slice(None), channels, as_index(i), as_index(j))  # the channels of (i, j): (B, n)
    x[at] = torch.where(known_mask[at], values[:, channels], new)
    if last:
        model.commit(cache, _encode(model, pick(pick(x, 2, i), 2, j)), i, j)
    return finite


def _row_step(model: Prior, variant: Hashable, cache: Any, i: torch.Tensor) -> None:
    """Row ``i`` (a 0-d tensor) is final: the model's ``commit_row``. What :class:`CompiledSteps` compiles."""
    model.commit_row(cache, i, variant)


def _encode(model: Prior, values: torch.Tensor) -> torch.Tensor:
    """Shapes: values: ``(B, C)`` long -> ``(B, E)``, the encoding of one position."""
    return model.encode_input(values[:, :, None, None])[:, :, 0, 0]


def _own_code(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A copy of ``fn`` with its own code object: torch.compile keeps its graphs (and counts recompilations) per code
    object, so each model and step variant gets its own, apart from every other model's."""
    return types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)


# A step is one position: a few hundred operators on tensors of B x channels values, so overheads dominate on a CPU.
# cpp_wrapper makes the graph's wrapper C++ (no Python per kernel); its kernels run on one thread (an OpenMP region
# per tiny kernel costs more than it saves; the convolutions and matrix products inside keep torch's threads); the
# static shapes make inductor's size asserts redundant (a graph's inputs are the caches init_cache allocated).
# On a GPU only the last applies (the launches' overhead is what cuda_graphs=True removes).
INDUCTOR_OPTIONS: dict[str, Any] = {"cpp_wrapper": True, "cpp.threads": 1, "size_asserts": False}
INDUCTOR_GPU_OPTIONS: dict[str, Any] = {"size_asserts": False}

# capture(fn, args) -> replay: ``fn(*args)`` recorded once, ``replay()`` runs the recording and returns its output.
Capture = Callable[[Callable[..., Any], tuple[Any, ...]], Callable[[], Any]]


def capture_cuda_graph(fn: Callable[..., Any], args: tuple[Any, ...]) -> Callable[[], Any]:
    """``fn(*args)`` captured into a ``torch.cuda.CUDAGraph`` (a :data:`Capture`): capturing runs nothing, and each
    replay runs its kernels on the tensors ``args`` held at capture and returns the same output tensor."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn(*args)

    def replay() -> Any:
        graph.replay()
        return out

    return replay


class GraphedStep:
    """A compiled step replayed from a CUDA graph (``sample(..., cuda_graphs=True)``): a step is a few hundred small
    kernels, whose launches take more time on a GPU than their work; a graph launches them at once.

    The first call runs ``fn`` (compiling it if it is not yet, and taking the step), then captures it on static
    copies of ``inputs``, what changes between calls (the position, the uniforms); a later call copies its inputs into
    those and replays. ``fixed`` (the model, the cache, the grid, the temperature) must be the same objects at every
    call: one instance serves one run of :meth:`CompiledSteps.run`, whose steps write the caches in place (they never
    rebind a cache's tensors: a test checks it).

    Args:
        fn: the compiled step.
        capture: :func:`capture_cuda_graph`, or another :data:`Capture` (a test's calls ``fn`` again).
    """

    def __init__(self, fn: Callable[..., Any], capture: Capture) -> None:
        self.fn, self.capture = fn, capture
        self.replay: Callable[[], Any] | None = None
        self.inputs: list[torch.Tensor] = []

    def __call__(self, fixed: tuple[Any, ...], inputs: tuple[torch.Tensor, ...]) -> torch.Tensor | None:
        if self.replay is None:
            out = self.fn(*fixed, *inputs)
            self.inputs = [t.clone() for t in inputs]
            self.replay = self.capture(self.fn, (*fixed, *self.inputs))
            return out
        for static, t in zip(self.inputs, inputs, strict=True):
            static.copy_(t)
        out = self.replay()
        # The graph's output is one tensor, rewritten by every replay; the loop reads a row's flags after the row.
        return None if out is None else out.clone()


class CompiledSteps:
    """The cached sampling step of one model compiled with ``torch.compile``: a graph for each channel step and step
    variant (and for each row variant), compiled at first use and kept as long as the model lives
    (:func:`compiled_steps`).

    Positions enter the graphs as 0-d tensors and every cache has static shapes, so no graph depends on a position:
    each is compiled once (a test counts them, with dynamo's guards kept). The uniforms come from the generator
    outside the graph, in the order of :func:`sample`: the samples are those of the eager cached loop. It keeps no
    reference to the model (the model is an argument of every call). One instance serves caches of one structure
    (:func:`compiled_steps`), so its graphs run without dynamo's guards unless the options keep them
    (``{"options": {"guard_filter_fn": None}}``).

    Args:
        options: ``torch.compile`` keyword arguments; ``fullgraph=True`` unless given, and (for inductor without a
            ``mode``, which excludes ``options``) the inductor options of :data:`INDUCTOR_OPTIONS` unless given.
        compiler: ``torch.compile``, or another function of ``(fn, **options)`` (``lambda fn, **_: fn`` runs the
            steps uncompiled, with tensor positions).
    """

    def __init__(
        self, options: dict[str, Any], compiler: Callable[..., Any] = torch.compile, device: str = "cpu"
    ) -> None:
        self.compiler = compiler
        self.options = {"fullgraph": True, **options}
        inductor = self.options.get("backend", "inductor") == "inductor"
        if "mode" not in self.options:  # torch.compile takes a mode or options, not both
            defaults = {
                **((INDUCTOR_OPTIONS if device == "cpu" else INDUCTOR_GPU_OPTIONS) if inductor else {}),
                "guard_filter_fn": torch.compiler.skip_all_guards_unsafe,
            }
            self.options["options"] = {**defaults, **self.options.get("options", {})}
        self.steps: dict[tuple[int, Hashable], Callable[..., torch.Tensor]] = {}
        self.rows: dict[Hashable, Callable[..., None]] = {}

    def _options(self) -> dict[str, Any]:
        # A copy for every torch.compile call: it pops guard_filter_fn out of the options it is given.
        options = dict(self.options)
        if "options" in options:
            options["options"] = {k: v for k, v in options["options"].items() if v is not None}
        return options

    def step(self, step: int, variant: Hashable) -> Callable[..., torch.Tensor]:
        """The compiled :func:`_position_step` of channel step ``step`` and step variant ``variant``."""
        if (step, variant) not in self.steps:
            self.steps[step, variant] = self.compiler(_own_code(_position_step), **self._options())
        return self.steps[step, variant]

    def row(self, variant: Hashable) -> Callable[..., None]:
        """The compiled :func:`_row_step` of row variant ``variant``."""
        if variant not in self.rows:
            self.rows[variant] = self.compiler(_own_code(_row_step), **self._options())
        return self.rows[variant]

    def run(
        self,
        model: Prior,
        cache: Any,
        x: torch.Tensor,
        known_mask: torch.Tensor,
        temperature: float,
        generator: Generator,
        progress: bool,
        row_callback: RowCallback | None,
        capture: Capture | None = None,
    ) -> torch.Tensor:
        """The raster loop of :func:`sample` over the compiled steps, on checked inputs (``x`` filled in place) and
        the fresh ``cache`` of ``model.init_cache`` (of the structure these steps were made for); with ``capture``
        (:func:`capture_cuda_graph`), each position step replayed from a graph captured in this run
        (:class:`GraphedStep`)."""
        dist, steps = model.distribution, model.distribution.channel_steps
        (H, W), B, device, dtype = model.grid_size, x.shape[0], x.device, model.dtype
        known, draws = known_steps(known_mask, steps), [dist.uniform_count(c) for c in steps]
        spans = [(s.start, s.stop) for s in drawn_params(dist)]
        rows, cols = _positions(H, device), _positions(W, device)
        variants = [[model.step_variant(i, j) for j in range(W)] for i in range(H)]
        unused = [torch.zeros(B, n, device=device, dtype=dtype) for n in draws]  # a known step draws nothing
        temperature_t = torch.tensor(temperature, device=device, dtype=dtype)
        graphs: dict[Hashable, GraphedStep] = {}

        def call(
            key: Hashable, fn: Callable[..., Any], fixed: tuple[Any, ...], inputs: tuple[torch.Tensor, ...]
        ) -> Any:
            if capture is None:
                return fn(*fixed, *inputs)
            if key not in graphs:
                graphs[key] = GraphedStep(fn, capture)
            return graphs[key](fixed, inputs)

        def begin_row(i: int) -> None:
            # Row commits run as they are, graphs or not: once a row, and a graph of a no-op commit would be empty.
            if i > 0:
                variant = model.row_variant(i - 1)
                self.row(variant)(model, variant, cache, rows[i - 1])

        def step(i: int, j: int, k: int) -> torch.Tensor | None:
            variant, drawing = variants[i][j], not known[k][i][j]
            u = uniform((B, draws[k]), generator, device, dtype) if drawing else unused[k]
            fixed = (model, k, variant, k == len(steps) - 1, spans[k], cache, x, known_mask, temperature_t)
            finite = call((k, variant), self.step(k, variant), fixed, (rows[i], cols[j], u))
            return finite if drawing else None

        return _visit(model.grid_size, len(steps), step, begin_row, steps, x, progress, row_callback)


def _positions(n: int, device: torch.device) -> list[torch.Tensor]:
    """``0 .. n - 1`` as separate 0-d long tensors (not views of one: a graph input each)."""
    return [torch.tensor(k, device=device) for k in range(n)]


_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def compiled_steps(model: Prior, options: dict[str, Any], cache: Any) -> CompiledSteps:
    """The :class:`CompiledSteps` of ``model`` for caches like ``cache`` and these ``torch.compile`` options, made once
    and kept as long as the model lives (a second ``sample(compile=True)`` reuses its graphs).

    Keyed by :func:`structure` of the model and the cache: everything the graphs specialize on. The graphs of one
    :class:`CompiledSteps` therefore only ever see inputs of that structure, and dynamo's guards, which would check it
    again at every one of the ``H W C`` calls (``O(number of cache tensors)`` each), are skipped.
    """
    per_model = _COMPILED.setdefault(model, {})
    key = (repr(sorted(options.items())), structure((model.dtype, model.device, cache)))
    if key not in per_model:
        per_model[key] = CompiledSteps(options, device=model.device.type)
    return per_model[key]


def structure(obj: Any) -> Hashable:
    """What a graph specializes on in ``obj``: types, Python values, tensors' shapes, strides, dtypes and devices,
    through dataclasses, objects, modules' parameters and buffers, lists and tuples (caches hold no cycles)."""
    if isinstance(obj, torch.Tensor):
        return ("tensor", tuple(obj.shape), obj.stride(), obj.dtype, str(obj.device), obj.requires_grad)
    if obj is None or isinstance(obj, (bool, int, float, str, torch.dtype, torch.device, slice)):
        return obj
    if isinstance(obj, (list, tuple)):
        return (type(obj).__name__, *map(structure, obj))
    if isinstance(obj, torch.nn.Module):
        named = [*obj.named_parameters(), *obj.named_buffers()]
        return (type(obj).__qualname__, *((name, structure(t)) for name, t in named))
    if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType)):
        return ("function", obj.__module__, obj.__qualname__)
    return (type(obj).__qualname__, *((name, structure(value)) for name, value in vars(obj).items()))
