"""Neural surrogates of a crossbar's non-ideal MVM, learned from ngspice datasets.

Public API::

    from surrogate import load_surrogate
    mvm = load_surrogate("results/surrogate/paper1_64.h5", expect_spec=spec, device="cuda")
    f = mvm.bind(g_s)          # g_s [T, rows, cols] (S): all G-only work, once per tile
    i_a = f(v_v)               # v_v [T, B, rows] (V) -> i_a [T, B, cols] (A), differentiable

Modules: params (training settings, torch-free), data (splits by conductance matrix), physics
(closed-form crossbar physics), models (the designs: transfer, mlp, ridge), baselines (ideal / analytic /
ridge), train (one design, or ``design: auto``: the candidate with the lowest validation error),
fidelity, io (HDF5 files), cli. The names below load their module on first use, so that
``surrogate.params`` can be imported without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"SurrogateFileError": "io", "load_surrogate": "io", "save_surrogate": "io",
            "GeniexMLP": "models", "RidgeMVM": "models", "SurrogateMVM": "models", "TransferNet": "models"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'surrogate' has no attribute {name!r}")
    return getattr(importlib.import_module(f"surrogate.{_EXPORTS[name]}"), name)
