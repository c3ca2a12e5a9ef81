"""Use a surrogate file: load it for a circuit, evaluate MVMs with it, and run a DNN layer through it.

A surrogate file (``results/surrogate/<circuit>.h5`` from the workflow, or one a colleague made for
the same circuit) depends on the circuit only, never on a DNN. Given a path it is used as is:

    python examples/02_use_a_surrogate_file.py results/surrogate/paper1_64.h5

Without a path, the example first makes a small one the way the workflow does, with the same library
calls as ``python -m spice simulate`` and ``python -m surrogate train``: ngspice solves an 8x8
Paper-1 array (resistive cells, 1 kOhm driver and sense, 5 Ohm wires) for 12 conductance matrices,
and a ``ridge`` surrogate (closed form, physics features) is fitted to it. That takes seconds.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dnn import CrossbarConfig, convert_to_crossbar
from spice import CircuitSpec, spec_from_config
from spice.io import write_dataset
from spice.ngspice import ACCURACY_OPTIONS, check_circuit, info, solve
from spice.sampling import SamplingConfig
from spice.simulate import simulate_shard
from surrogate import SurrogateFileError, load_surrogate, save_surrogate
from surrogate.data import load_splits
from surrogate.io import read_metadata
from surrogate.params import TrainParams
from surrogate.train import train

REPO = Path(__file__).resolve().parents[1]


def make_surrogate_file(folder: Path) -> Path:
    """A small surrogate file, made as the workflow's spice_shard and surrogate_train rules make one."""
    spec = spec_from_config("paper1_8", {"preset": "paper1_32_w5", "rows": 8, "cols": 8,
                                         "netlist": str(REPO / "data/circuits/resistive.cir")})
    sampling = SamplingConfig.from_dict({"n_conductance": 12, "n_vectors": 64, "v_zero_fraction": 0.3, "seed": 1})
    check = check_circuit(spec)
    shard = simulate_shard(spec, sampling, 0, progress=False, check=check)
    ng = info()
    data = folder / "paper1_8.spice.h5"
    write_dataset(data, spec, shard.arrays(), {
        "ngspice_version": ng.version, "ngspice_klu": ng.has_klu, "pyspice_version": ng.pyspice_version,
        "ngspice_options": ACCURACY_OPTIONS, "seed": sampling.seed, "sampling": sampling.to_json(), "shard": 0,
        "cell_current_max_a": check.cell_current_max_a, "column_current_bound_a": check.column_current_bound_a})
    params = TrainParams.from_dict({"design": "ridge", "seed": 0})
    splits = load_splits(data, params.val_fraction, params.test_fraction, params.seed)
    result = train(splits, params, progress=False)
    out = folder / "paper1_8.surrogate.h5"
    save_surrogate(out, result.model, splits.spec, train_params=params.to_dict(), history=result.history,
                   data_sha256=splits.sha256, data_path=str(data), split=splits.split_json())
    return out


def main(path: Path) -> None:
    meta = read_metadata(path)  # kind and format version checked; json attributes decoded
    spec = CircuitSpec.from_json(meta["circuit_spec"])
    print(f"surrogate file: design {meta['design']}, circuit {spec.name} {spec.rows}x{spec.cols}")
    mvm = load_surrogate(path, expect_spec=spec)  # refuses a file made for another array

    # 1. MVMs: bind the conductances once (all G-only work), then every input vector is cheap.
    rng = np.random.default_rng(7)
    g_s = rng.uniform(spec.g_off_s, spec.g_on_s, size=(1, spec.rows, spec.cols))
    v_v = rng.uniform(0.0, spec.v_read_max_v, size=(1, 16, spec.rows))
    with torch.no_grad():
        i_surrogate = mvm.bind(torch.as_tensor(g_s, dtype=torch.float32))(torch.as_tensor(v_v, dtype=torch.float32))
    i_ngspice, _ = solve(spec, g_s[0], v_v[0])  # ground truth for this new matrix
    full_scale_a = spec.g_on_s * spec.v_read_max_v * spec.rows
    error = np.sqrt(np.mean((i_surrogate[0].numpy() - i_ngspice) ** 2)) / full_scale_a
    ideal = np.sqrt(np.mean((v_v[0] @ g_s[0] - i_ngspice) ** 2)) / full_scale_a
    print(f"new matrix, 16 vectors: surrogate error {error:.1e} of full scale, ideal v.G {ideal:.1e}")

    # 2. A DNN layer on crossbar tiles of this circuit, the surrogate as its tile model.
    torch.manual_seed(0)
    layer = convert_to_crossbar(nn.Conv2d(2, 4, 3), CrossbarConfig(), mvm)
    with torch.no_grad():
        out = layer(torch.rand(2, 2, 6, 6))
    print(f"crossbar conv layer output {tuple(out.shape)}")

    # 3. The same file for a circuit of another size is refused, naming the file and the mismatch.
    other = CircuitSpec(**{**spec.to_dict(), "rows": spec.rows * 2})
    try:
        load_surrogate(path, expect_spec=other)
    except SurrogateFileError as err:
        print(f"refused: {err}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(make_surrogate_file(Path(tmp)))
