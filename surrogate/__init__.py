"""Neural surrogates of a crossbar's non-ideal MVM, learned from ngspice datasets.

Public API::

    from surrogate import load_surrogate
    mvm = load_surrogate("results/surrogate/paper1_64.h5", expect_spec=spec, device="cuda")
    f = mvm.bind(g_s)          # g_s [T, rows, cols] (S): all G-only work, once per tile
    i_a = f(v_v)               # v_v [T, B, rows] (V) -> i_a [T, B, cols] (A), differentiable

Modules: data (splits by conductance matrix), physics (closed-form crossbar physics), models (the
designs), baselines (ideal / analytic / ridge), train, fidelity, io (HDF5 files), cli.
"""

from surrogate.io import SurrogateFileError, load_surrogate, save_surrogate
from surrogate.models import GeniexMLP, SurrogateMVM, TransferNet

__all__ = ["GeniexMLP", "SurrogateFileError", "SurrogateMVM", "TransferNet", "load_surrogate", "save_surrogate"]
