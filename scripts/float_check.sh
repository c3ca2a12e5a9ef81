#!/usr/bin/env bash
# Reruns the tests that compare floats across two computation orders (batched vs per tile, folded vs
# unfused, float32 vs float64, einsum vs matmul, ...) under other rounding than `make test` sees:
#   pass 1: one thread, MKL's conditional-numerical-reproducibility kernels (torch matmul), OpenBLAS's
#           generic kernel (numpy matmul) and torch's non-vectorized elementwise kernels;
#   pass 2: two torch/OpenMP threads (reductions split differently) with the machine's own kernels.
# An exact comparison of two orders that passes on one CPU and fails on another fails here too.
# First it checks that the settings do change rounding, and warns where they do not (the rerun then
# proves less on that CPU).
# Usage: scripts/float_check.sh [extra pytest args]    (about 3 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
FILES=(tests/test_exact_nonlinear.py tests/test_spice_simulate.py tests/test_dnn_mapping.py tests/test_dnn_layers.py
       tests/test_surrogate_transfer.py tests/test_surrogate_mvm.py tests/test_surrogate_ridge.py
       tests/test_surrogate_cell_iv.py tests/test_read_noise_loaded.py)
OTHER_KERNELS=(OMP_NUM_THREADS=1 XBARCHAR_TORCH_THREADS=1 MKL_CBWR=COMPATIBLE OPENBLAS_CORETYPE=Prescott
               ATEN_CPU_CAPABILITY=default)
TWO_THREADS=(OMP_NUM_THREADS=2 XBARCHAR_TORCH_THREADS=2)

probe() {  # digests of a torch matmul, a numpy matmul and a torch sum: they move with the settings
  env "$@" "$PY" -c '
import hashlib, numpy as np, torch
import os
torch.set_num_threads(int(os.environ["XBARCHAR_TORCH_THREADS"]))
a = np.random.default_rng(0).uniform(size=(64, 100)); b = np.random.default_rng(1).uniform(size=(100, 37))
s = torch.rand(100000, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
for name, x in (("torch_mm", (torch.as_tensor(a) @ torch.as_tensor(b)).numpy()), ("numpy_mm", a @ b),
                ("torch_sum", s.sum().numpy())):
    print(name, hashlib.sha1(np.ascontiguousarray(x).tobytes()).hexdigest()[:12])'
}
one=$(probe "${OTHER_KERNELS[@]}")
two=$(probe "${TWO_THREADS[@]}")
printf 'float_check: rounding digests (pass 1 | pass 2):\n%s\n' "$(paste -d'|' <(echo "$one") <(echo "$two"))" >&2
if [[ "$one" == "$two" ]]; then
  echo "float_check: warning: the two passes round alike on this CPU; the rerun proves less here" >&2
fi
echo "float_check: pass 1: ${OTHER_KERNELS[*]}" >&2
env "${OTHER_KERNELS[@]}" "$PY" -m pytest -q -p no:cacheprovider -m "not slow" "${FILES[@]}" "$@"
echo "float_check: pass 2: ${TWO_THREADS[*]}" >&2
env "${TWO_THREADS[@]}" "$PY" -m pytest -q -p no:cacheprovider -m "not slow" "${FILES[@]}" "$@"
