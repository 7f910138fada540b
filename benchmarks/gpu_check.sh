#!/usr/bin/env bash
# What matters on an accelerator, in one go: the rules, the pipelines and the training on
# the device (the test subset that runs there), the step and digits benchmarks, and a
# `jaxprop train`. The suite itself never needs a GPU; this is for a machine that has one.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]        # default: gpu_check/ (must not exist)
#
# Run from the repository root, with jaxprop installed (pip install -e ".[test,bench]") and
# a jax that sees the accelerator (e.g. pip install -U "jax[cuda12]"). Every stage is
# bounded by a timeout and logged to OUT_DIR/<stage>.log; the script goes on after a failed
# stage and exits non-zero if any failed. OUT_DIR/report.txt gathers the figures: the step
# ratio against plain JAX and the step time against the device's GEMM floor (from
# train_step.py), the digits training ratio, and the run's summary.
#
# JAXPROP_GPU_CHECK_ALLOW_CPU=1 runs it on a CPU-only machine (to try the script itself).
set -u

OUT=${1:-gpu_check}
if [ -e "$OUT" ]; then
  echo "gpu_check: $OUT already exists; give another OUT_DIR (nothing is overwritten)" >&2
  exit 2
fi
mkdir -p "$OUT"
PY=${PYTHON:-python}
failed=()

stage() {  # stage NAME SECONDS COMMAND...: runs it with a timeout, logs, records failure
  local name=$1 limit=$2
  shift 2
  echo "== $name (at most ${limit} s)"
  local t0=$SECONDS
  if timeout "$limit" "$@" >"$OUT/$name.log" 2>&1; then
    echo "   ok in $((SECONDS - t0)) s; last line: $(tail -n 1 "$OUT/$name.log")"
  else
    echo "   FAILED (exit $?) after $((SECONDS - t0)) s; see $OUT/$name.log"
    tail -n 5 "$OUT/$name.log" | sed 's/^/   | /'
    failed+=("$name")
  fi
}

backend=$($PY -c "import jax; print(jax.default_backend())" 2>"$OUT/backend.log")
if [ -z "$backend" ]; then
  echo "gpu_check: jax does not start; see $OUT/backend.log" >&2
  exit 2
fi
if [ "$backend" = "cpu" ] && [ "${JAXPROP_GPU_CHECK_ALLOW_CPU:-0}" != "1" ]; then
  echo "gpu_check: jax sees no accelerator (default backend: cpu). Install a jax for the" \
       "device, or set JAXPROP_GPU_CHECK_ALLOW_CPU=1 to try the script on the CPU" >&2
  exit 2
fi

{
  echo "gpu_check, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  $PY -c "import jax, jaxlib; print('jax', jax.__version__, 'jaxlib', jaxlib.__version__);
print('devices:', jax.devices())"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
    --format=csv,noheader
} | tee "$OUT/report.txt"

# The rules, the pipelines and training on the device; tests that pin the CPU (the
# multi-process and device-count tests start CPU subprocesses) run as they would anywhere.
stage tests 1800 $PY -m pytest -q -x -p no:cacheprovider \
  tests/gates/test_gates.py tests/verify/test_check.py tests/test_gate_contract.py tests/test_pipelines.py \
  tests/test_tracer.py tests/test_losses.py tests/test_models.py tests/test_properties.py \
  tests/train/test_train.py tests/train/test_sweep.py tests/train/test_resume.py
stage train_step 900 $PY benchmarks/train_step.py --rounds 20 --json "$OUT/train_step.json"
stage train_digits 900 $PY benchmarks/train_digits.py --json "$OUT/train_digits.json"
stage jaxprop_train 600 jaxprop train --out "$OUT/run" --quiet

{
  echo
  echo "train step (N=200 D=3072 H=100 C=10), from train_step.log:"
  grep -E "GEMM floor|of the floor|/ plain JAX|/ PyTorch" "$OUT/train_step.log" | sed 's/^/  /'
  echo "digits training: $(grep -E '^jaxprop / plain JAX' "$OUT/train_digits.log")"
  echo "jaxprop train: $($PY -c "import json, sys; s = json.load(open(sys.argv[1]));
print(f\"test accuracy {s['test_accuracy']:.4f}, {s['devices']} x {s['device_kind']}, \"
      f\"train {s['train_seconds']:.2f} s + compile {s['compile_seconds']:.2f} s\")" \
      "$OUT/run/summary.json" 2>/dev/null || echo 'no summary')"
  if [ ${#failed[@]} -eq 0 ]; then echo "all stages passed"; else
    echo "FAILED stages: ${failed[*]}"; fi
} | tee -a "$OUT/report.txt"
[ ${#failed[@]} -eq 0 ]
