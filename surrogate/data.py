"""Load a SPICE dataset and split it into train / validation / test sets by conductance matrix.

One conductance matrix G (with all its input vectors) goes to exactly one split, so the held-out
error measures how well a surrogate generalizes to conductances it never saw. Samples that did not
converge in ngspice (``/failed``) are dropped with a logged count; a matrix left without samples is
dropped too.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spice.circuit import CircuitSpec
from spice.io import DatasetFileError, SpiceDataset, read_dataset
from spice.sampling import DNN_SAMPLERS, SamplingConfig, matrix_sampler
from surrogate.params import TrainParams
from xbarchar.files import file_sha256

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


@dataclass
class Split:
    """Samples of one split. ``g_index`` indexes this split's own ``g_s``."""

    g_s: np.ndarray
    """Conductance matrices [n_g, rows, cols] (S)."""
    g_rows: np.ndarray
    """Row of each matrix in the dataset file's /g_s [n_g]."""
    g_index: np.ndarray
    """Matrix of each sample [n_samples] (index into ``g_s``)."""
    v_v: np.ndarray
    """Row input voltages [n_samples, rows] (V)."""
    i_a: np.ndarray
    """Column currents from ngspice [n_samples, cols] (A)."""
    i_ideal_a: np.ndarray
    """Ideal column currents v @ G [n_samples, cols] (A)."""
    p_w: np.ndarray | None = None
    """Read power drawn from the row sources [n_samples] (W), from the dataset's /p_w."""

    @property
    def n_samples(self) -> int:
        return len(self.v_v)

    @property
    def n_matrices(self) -> int:
        return len(self.g_s)


@dataclass
class SplitDataset:
    """A SPICE dataset split by conductance matrix, with its provenance."""

    spec: CircuitSpec
    train: Split
    val: Split
    test: Split
    path: str
    sha256: str
    """sha256 of the dataset file's bytes."""
    n_failed_dropped: int
    all_linear: bool
    """True when ngspice's linearity check passed for every matrix (exact transfer matrices stored)."""
    seed: int
    val_fraction: float
    test_fraction: float
    dnn_like_g_rows: tuple[int, ...] = ()
    """Rows of the file's /g_s drawn by a DNN-like sampler ('dnn_like', or 'from_file' DNN tiles; 'mixed'
    resolved per matrix): what the DNN stage reads (``design: auto`` scores every candidate on them too)."""

    def split(self, name: str) -> Split:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        return getattr(self, name)

    def split_json(self) -> dict:
        """Which rows of /g_s went to which split (stored in the surrogate file)."""
        return {
            "seed": self.seed,
            "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction,
            **{f"{name}_g_rows": [int(x) for x in self.split(name).g_rows] for name in SPLITS},
        }


def _split_counts(n_g: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    n_val = max(1, int(round(val_fraction * n_g))) if val_fraction > 0 else 0
    n_test = max(1, int(round(test_fraction * n_g))) if test_fraction > 0 else 0
    n_train = n_g - n_val - n_test
    return n_train, n_val, n_test


def _subset(ds: SpiceDataset, g_rows: np.ndarray, keep: np.ndarray) -> Split:
    g_rows = np.sort(g_rows)
    remap = -np.ones(len(ds.g_s), dtype=np.int64)
    remap[g_rows] = np.arange(len(g_rows))
    mask = keep & (remap[ds.g_index] >= 0)
    return Split(
        g_s=ds.g_s[g_rows].astype(np.float64),
        g_rows=g_rows.astype(np.int64),
        g_index=remap[ds.g_index[mask]],
        v_v=ds.v_v[mask].astype(np.float64),
        i_a=ds.i_a[mask].astype(np.float64),
        i_ideal_a=ds.i_ideal_a[mask].astype(np.float64),
        p_w=ds.p_w[mask].astype(np.float64),
    )


def valid_samples(ds: SpiceDataset, path: str | Path = "") -> np.ndarray:
    """Mask of the samples to learn from: not marked failed. A sample that is not marked failed but
    holds a non-finite number is a :class:`DatasetFileError` (the file is inconsistent: it was not
    written by this package, or was changed)."""
    keep = ~np.asarray(ds.failed, dtype=bool)
    finite = (np.all(np.isfinite(ds.i_a), axis=1) & np.all(np.isfinite(ds.v_v), axis=1)
              & np.all(np.isfinite(ds.i_ideal_a), axis=1) & np.isfinite(ds.p_w))
    bad = keep & ~finite
    if bad.any() or not np.all(np.isfinite(ds.g_s)):
        what = f"{int(bad.sum())} samples" if bad.any() else "conductance matrices"
        raise DatasetFileError(f"{path or 'dataset'}: {what} hold non-finite numbers without being marked in "
                               "/failed; the file is inconsistent, regenerate it with python -m spice")
    return keep


def split_dataset(ds: SpiceDataset, val_fraction: float = TrainParams.val_fraction,
                  test_fraction: float = TrainParams.test_fraction, seed: int = TrainParams.seed, path: str = "",
                  sha256: str = "") -> SplitDataset:
    """Split an in-memory dataset by conductance matrix (seeded permutation of the matrices).

    ``val_fraction`` and ``test_fraction`` are fractions of the matrices (each split gets at least
    one matrix when its fraction is > 0; a fraction of 0 leaves that split empty).
    """
    if not (0.0 <= val_fraction < 1.0 and 0.0 <= test_fraction < 1.0 and val_fraction + test_fraction < 1.0):
        raise ValueError(f"val_fraction={val_fraction}, test_fraction={test_fraction}: expected fractions "
                         "in [0, 1) that sum to less than 1")
    keep = valid_samples(ds, path)
    n_failed = int((~keep).sum())
    if n_failed:
        log.warning("%s: dropped %d of %d samples that failed in ngspice", path or "dataset", n_failed,
                    ds.n_samples)
    used = np.unique(ds.g_index[keep])
    n_empty = len(ds.g_s) - len(used)
    if n_empty:
        log.warning("%s: %d conductance matrices have no converged sample and are not used",
                    path or "dataset", n_empty)
    n_train, n_val, n_test = _split_counts(len(used), val_fraction, test_fraction)
    if n_train < 1:
        needed = next(n for n in range(len(used) + 1, len(used) + 1000)
                      if _split_counts(n, val_fraction, test_fraction)[0] >= 1)
        raise DatasetFileError(
            f"{path or 'dataset'}: {len(used)} usable conductance matrices cannot be split into train/val/test "
            f"with val_fraction={val_fraction}, test_fraction={test_fraction}: the split needs at least {needed}; "
            f"simulate {needed - len(used)} more (sampling.n_conductance >= {len(ds.g_s) + needed - len(used)})"
        )
    order = np.random.default_rng(seed).permutation(used)
    parts = np.split(order, [n_train, n_train + n_val])
    result = _split(ds, parts, keep, path, sha256, seed, val_fraction, test_fraction)
    log.info("%s: %s split by conductance matrix: train %d G / %d samples, val %d / %d, test %d / %d",
             path or "dataset", ds.spec.name, result.train.n_matrices, result.train.n_samples,
             result.val.n_matrices, result.val.n_samples, result.test.n_matrices, result.test.n_samples)
    return result


def split_by_matrices(ds: SpiceDataset, train_rows: np.ndarray, val_rows: np.ndarray, test_rows: np.ndarray,
                      path: str = "", sha256: str = "", seed: int = 0) -> SplitDataset:
    """Split an in-memory dataset by the given conductance-matrix indices (e.g. a learning curve: one fixed
    validation and test set, nested training sets). Failed samples are left out."""
    parts = [np.asarray(rows, dtype=np.int64) for rows in (train_rows, val_rows, test_rows)]
    n = sum(len(p) for p in parts)
    return _split(ds, parts, valid_samples(ds, path), path, sha256, seed, len(parts[1]) / n, len(parts[2]) / n)


def check_disjoint(ds: SpiceDataset, parts: list[np.ndarray], path: str | Path = "") -> None:
    """Every matrix index of ``parts`` (train, val, test) is a row of ``ds.g_s``, and none is in two splits
    or twice in one; every ``ds.g_index`` is a row of ``ds.g_s``. Else one :class:`DatasetFileError`."""
    n_g = len(ds.g_s)
    where = path or "dataset"
    if len(ds.g_index) and (ds.g_index.min() < 0 or ds.g_index.max() >= n_g):
        raise DatasetFileError(f"{where}: /g_index holds {int(ds.g_index.min())}..{int(ds.g_index.max())}, "
                               f"expected rows of /g_s in 0..{n_g - 1}")
    owner: dict[int, str] = {}
    for name, rows in zip(SPLITS, parts, strict=True):
        for row in np.asarray(rows).tolist():
            if not 0 <= row < n_g:
                raise DatasetFileError(f"{where}: {name} split names matrix {row}, expected rows of /g_s in "
                                       f"0..{n_g - 1}")
            if row in owner:
                raise DatasetFileError(f"{where}: matrix {row} is in both the {owner[row]} and the {name} split; "
                                       "splits must be disjoint")
            owner[row] = name


def dnn_like_rows(ds: SpiceDataset) -> tuple[int, ...]:
    """Rows of ``ds.g_s`` whose matrix a DNN-like sampler drew (from the file's sampling settings and /g_id);
    none when the file states no sampler."""
    text = ds.attrs.get("sampling")
    if not isinstance(text, str):
        return ()
    try:
        cfg = SamplingConfig.from_dict(json.loads(text))
    except (ValueError, TypeError):
        return ()
    return tuple(row for row, k in enumerate(ds.g_id.tolist()) if matrix_sampler(cfg, int(k)) in DNN_SAMPLERS)


def _split(ds: SpiceDataset, parts: list[np.ndarray], keep: np.ndarray, path: str, sha256: str, seed: int,
           val_fraction: float, test_fraction: float) -> SplitDataset:
    """The train, val and test splits of the matrices ``parts`` (three index arrays), samples masked by ``keep``."""
    check_disjoint(ds, parts, path)
    used = np.concatenate(parts)
    solvers = {s.decode() if isinstance(s, bytes) else str(s) for s in ds.solver[used]}
    linear = solvers == {"superposition"} and bool(np.all(np.isfinite(ds.transfer_a_per_v[used])))
    return SplitDataset(spec=ds.spec, train=_subset(ds, parts[0], keep), val=_subset(ds, parts[1], keep),
                        test=_subset(ds, parts[2], keep), path=path, sha256=sha256,
                        n_failed_dropped=int((~keep).sum()), all_linear=linear, seed=seed,
                        val_fraction=val_fraction, test_fraction=test_fraction, dnn_like_g_rows=dnn_like_rows(ds))


def load_splits(path: str | Path, val_fraction: float = TrainParams.val_fraction,
                test_fraction: float = TrainParams.test_fraction, seed: int = TrainParams.seed) -> SplitDataset:
    """Read a SPICE dataset file (:func:`spice.io.read_dataset`) and split it by conductance matrix."""
    ds = read_dataset(path)
    return split_dataset(ds, val_fraction, test_fraction, seed, path=str(path), sha256=file_sha256(path))


def load_whole_as_test(path: str | Path) -> SplitDataset:
    """Every converged sample of a SPICE dataset as the test split (train and val empty): for measuring
    a surrogate on data it never saw, e.g. DNN-distribution samples of the same circuit."""
    ds = read_dataset(path)
    keep = valid_samples(ds, str(path))
    n_failed = int((~keep).sum())
    if n_failed:
        log.warning("%s: dropped %d of %d samples that failed in ngspice", path, n_failed, ds.n_samples)
    used = np.unique(ds.g_index[keep])
    if len(used) == 0:
        raise DatasetFileError(f"{path}: no valid sample to measure fidelity on")
    none = np.array([], dtype=np.int64)
    return SplitDataset(spec=ds.spec, train=_subset(ds, none, keep), val=_subset(ds, none, keep),
                        test=_subset(ds, used, keep), path=str(path), sha256=file_sha256(path),
                        n_failed_dropped=n_failed, all_linear=False, seed=0, val_fraction=0.0, test_fraction=1.0)

