#!/usr/bin/env bash
# The GPU checks of issue 16 in one run, one table at the end (at most about 8 minutes on one H100/H200):
#   1. training speed at batch 64 (pixelcnn_pp_cifar10) and 32 (pixelsnail_vqvae2_top): fp32, bf16, bf16 + compile
#      with CUDA graphs (benchmarks/training.py rows);
#   2. sampling 25 CIFAR-size images from pixelcnn_pp_cifar10 (random weights, the paper's 53.7M model): the cached
#      loop eager, compiled, and compiled with CUDA graphs, after one warm-up call each (wall time per call);
#   3. bf16 against fp32 in a short real run (the same seed, steps and batches on the 8-bit built-in digits): the
#      test bits/dim of both;
#   4. integrations/accelerate/fsdp.yaml on the one GPU: a few steps with a checkpoint, then a resume to more steps.
#
# Usage:
#   bash benchmarks/gpu_suite.sh                 # on a machine with a CUDA GPU
#   bash benchmarks/gpu_suite.sh --cpu-dry-run   # every part at a tiny size on the CPU (checks the script itself)
#
# Environment: OUT (default: ./gpu_suite_out) receives every part's log and JSON and table.txt. Packages the machine
# lacks (diffusers, mlxtend, constriction) may be given as wheels in WHEELS (default: ./.whl): they are installed
# with --target into a scratch folder put on PYTHONPATH, without touching the machine's own packages.
set -uo pipefail

cd "$(dirname "$0")/.."
DRY=0
if [[ "${1:-}" == "--cpu-dry-run" ]]; then DRY=1; elif [[ $# -gt 0 ]]; then
    echo "gpu_suite.sh: error: expected no argument or --cpu-dry-run, got '$*'" >&2
    exit 2
fi
OUT="${OUT:-$PWD/gpu_suite_out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
WHEELS="${WHEELS:-$PWD/.whl}"
if ! "$PY" -c "import diffusers, mlxtend" 2>/dev/null && compgen -G "$WHEELS/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/pixelprior-site \
        "$WHEELS"/*.whl || { echo "gpu_suite.sh: error: the wheels in $WHEELS did not install" >&2; exit 2; }
    export PYTHONPATH="/tmp/pixelprior-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
"$PY" -c "import pixelprior" || { echo "gpu_suite.sh: error: pixelprior does not import (see above)" >&2; exit 2; }

if [[ $DRY == 1 ]]; then
    DEVICE=cpu
    TRAIN_ARGS=(--device cpu --steps 2 --warmup 1 --batch_size 4 --no-isolate
        --model_kwargs '{"hidden_channels": 16, "num_layers": 1, "sample_size": 8}')
    VARIANTS_PP=(fp32 bf16) VARIANTS_SNAIL=(bf16)
    SAMPLE_KWARGS='{"hidden_channels": 16, "num_layers": 1, "sample_size": 8}'
    RUN_MODEL_KWARGS='{"hidden_channels": 16, "num_layers": 1, "num_mixtures": 2, "in_channels": 1, "sample_size": 28}'
    RUN_STEPS=4 RUN_BATCH=8 FSDP_STEPS=2
else
    DEVICE=cuda
    TRAIN_ARGS=(--device cuda --steps 20 --warmup 5)
    VARIANTS_PP=(fp32 bf16 bf16+compile bf16+channels_last+cudagraphs) VARIANTS_SNAIL=(fp32 bf16 bf16+cudagraphs)
    SAMPLE_KWARGS='{}'
    RUN_MODEL_KWARGS='{"in_channels": 1, "sample_size": 28}'
    RUN_STEPS=150 RUN_BATCH=64 FSDP_STEPS=10
fi
STATUS=()
part() {  # part NAME TIMEOUT_S CMD...: run one part with a time limit, its log under $OUT, its exit status kept
    local name=$1 limit=$2
    shift 2
    echo "=== $name ($(date +%T))"
    timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
    local rc=${PIPESTATUS[0]}
    STATUS+=("$name=$rc")
    echo "=== $name: exit $rc"
}

# 1. training speed
part train_pp 180 "$PY" benchmarks/training.py --models pixelcnn_pp_cifar10 "${TRAIN_ARGS[@]}" \
    --variants "${VARIANTS_PP[@]}" --json "$OUT/train_pp.json"
part train_snail 120 "$PY" benchmarks/training.py --models pixelsnail_vqvae2_top "${TRAIN_ARGS[@]}" \
    --variants "${VARIANTS_SNAIL[@]}" --json "$OUT/train_snail.json"

# 2. sampling 25 images of pixelcnn_pp_cifar10
part sample_pp 300 "$PY" - "$DEVICE" "$SAMPLE_KWARGS" "$OUT/sample_pp.json" <<'EOF'
import json, sys, time
import torch
from pixelprior import create_prior

device, kwargs, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
prior = create_prior("pixelcnn_pp_cifar10", **kwargs).to(device).eval()
rows = []
for name, compile in (("cached eager", False), ("compiled", True), ("compiled + CUDA graphs", "reduce-overhead")):
    if compile == "reduce-overhead" and device != "cuda":
        continue  # CUDA graphs need a GPU (sample raises a ValueError saying so)
    try:
        times = []
        for _ in range(2):  # the first call compiles (warm-up), the second is timed
            start = time.perf_counter()
            # a generator on the model's device: a CPU one would copy its uniforms to the GPU at every step
            x = prior.sample(25, generator=torch.Generator(device).manual_seed(0), compile=compile, progress=False)
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        rows.append({"sampler": name, "first_s": times[0], "seconds": times[1], "shape": list(x.shape)})
    except (ValueError, NotImplementedError, RuntimeError) as error:
        rows.append({"sampler": name, "error": str(error).splitlines()[0][:100]})
    print(rows[-1])
json.dump(rows, open(out, "w"), indent=1)
EOF

# 3. bf16 vs fp32, a short real run each (same seed, steps, batches)
for precision in no bf16; do
    part "run_$precision" 150 "$PY" -m pixelprior train --model pixelcnn_pp_cifar10 --model_kwargs "$RUN_MODEL_KWARGS" \
        --dataset mnist5k --output_dir "$OUT/run_$precision" --overwrite_output_dir --max_steps "$RUN_STEPS" \
        --batch_size "$RUN_BATCH" --mixed_precision "$precision" --seed 0 --num_sample_images 0 --no_use_ema
done

# 4. FSDP on the one GPU: a checkpointed run, then a resume to twice the steps
FSDP=(-m accelerate.commands.launch --config_file integrations/accelerate/fsdp.yaml --num_processes 1)
[[ $DRY == 1 ]] && FSDP=(-m accelerate.commands.launch --cpu --num_processes 1)  # no FSDP without a GPU: the flags
FSDP_TRAIN=(-m pixelprior train --model pixelcnn_mnist --model_kwargs '{"hidden_channels": 16, "num_layers": 2}'
    --dataset mnist5k --binarize --output_dir "$OUT/fsdp" --batch_size 8 --checkpointing_steps "$FSDP_STEPS"
    --seed 0 --num_sample_images 0 --no_use_ema)
rm -rf "$OUT/fsdp"
part fsdp_train 120 "$PY" "${FSDP[@]}" "${FSDP_TRAIN[@]}" --max_steps "$FSDP_STEPS"
part fsdp_resume 120 "$PY" "${FSDP[@]}" "${FSDP_TRAIN[@]}" --max_steps $((2 * FSDP_STEPS)) \
    --resume_from_checkpoint latest --allow_config_change max_steps

# the table
"$PY" - "$OUT" "${STATUS[@]}" <<'EOF' | tee "$OUT/table.txt"
import json, os, sys

out, status = sys.argv[1], dict(s.split("=") for s in sys.argv[2:])
print("\n| part | row | figure |\n| --- | --- | --- |")
for name in ("train_pp", "train_snail"):
    path = os.path.join(out, f"{name}.json")
    for row in json.load(open(path)) if os.path.exists(path) else []:
        figure = f"{row['images_per_s']:.1f} img/s, peak {row['peak_GiB']:.2f} GiB, loss {row['loss_bpd']:.3f} bpd"
        print(f"| {name} | {row['model']} b{row['batch']} {row['variant']} | {figure} |")
path = os.path.join(out, "sample_pp.json")
for row in json.load(open(path)) if os.path.exists(path) else []:
    figure = f"{row['seconds']:.3f} s (first call {row['first_s']:.1f} s)" if "seconds" in row else row["error"]
    print(f"| sample_pp | 25 images, {row['sampler']} | {figure} |")
for precision in ("no", "bf16"):
    path = os.path.join(out, f"run_{precision}", "train_results.json")
    if os.path.exists(path):
        r = json.load(open(path))
        print(f"| run | {'fp32' if precision == 'no' else precision}, {r['steps']} steps | test {r['test_bits_per_dim']:.4f} bits/dim |")
path = os.path.join(out, "fsdp", "train_results.json")
if os.path.exists(path):
    r = json.load(open(path))
    print(f"| fsdp | resumed from {r.get('resumed_from')} to {r['steps']} steps | test {r['test_bits_per_dim']:.4f} bits/dim |")
print("| status | " + ", ".join(f"{k}={v}" for k, v in status.items()) + " | exit codes |")
EOF
for s in "${STATUS[@]}"; do [[ ${s#*=} == 0 ]] || exit 1; done
