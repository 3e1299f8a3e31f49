"""The MNIST loader: raw and gzip files, checksum verification, clear failures."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from train import data
from train.data import SHA256, DataError, decode_idx, read_verified


@pytest.fixture
def idx_files(monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """Four small IDX files, with the expected checksums set to theirs."""
    generator = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": generator.integers(0, 256, (5, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": generator.integers(0, 10, (5,), dtype=np.uint8),
        "t10k-images-idx3-ubyte": generator.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": generator.integers(0, 10, (3,), dtype=np.uint8),
    }
    files = {name: data._encode_idx(array) for name, array in arrays.items()}
    for name, content in files.items():
        monkeypatch.setitem(SHA256, name, hashlib.sha256(content).hexdigest())
    return files


def write(folder: Path, files: dict[str, bytes], packed: bool) -> None:
    """Write the files raw or gzip-compressed."""
    for name, content in files.items():
        if packed:
            (folder / f"{name}.gz").write_bytes(gzip.compress(content))
        else:
            (folder / name).write_bytes(content)


@pytest.mark.parametrize("packed", [False, True], ids=["raw", "gz"])
def test_reads_raw_and_gzip_files(
    tmp_path: Path, idx_files: dict[str, bytes], packed: bool
) -> None:
    """Both the plain and the `.gz` files are read and verified."""
    write(tmp_path, idx_files, packed)
    assert read_verified(tmp_path) == idx_files


def test_load_uses_data_dir_and_fills_the_cache(
    tmp_path: Path, idx_files: dict[str, bytes]
) -> None:
    """`--data DIR` is used first; the verified files land in the cache for next time."""
    source, cache = tmp_path / "source", tmp_path / "cache"
    source.mkdir()
    write(source, idx_files, packed=True)
    mnist = data.load_mnist(source, cache_dir=cache)
    assert mnist.train_images.shape == (5, 28, 28) and mnist.test_labels.shape == (3,)
    assert read_verified(cache) == idx_files


def test_checksum_mismatch_is_refused(tmp_path: Path, idx_files: dict[str, bytes]) -> None:
    """A file whose SHA-256 differs is refused with its name in the message."""
    tampered = dict(idx_files)
    tampered["t10k-labels-idx1-ubyte"] = idx_files["t10k-labels-idx1-ubyte"][:-1] + b"\x09"
    write(tmp_path, tampered, packed=False)
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte has SHA-256"):
        read_verified(tmp_path)


def test_missing_file_is_named(tmp_path: Path, idx_files: dict[str, bytes]) -> None:
    """A folder lacking one of the four files says which."""
    write(
        tmp_path,
        {k: v for k, v in idx_files.items() if k != "train-labels-idx1-ubyte"},
        packed=False,
    )
    with pytest.raises(DataError, match="train-labels-idx1-ubyte missing"):
        read_verified(tmp_path)


def test_corrupt_gzip_is_a_data_error(tmp_path: Path, idx_files: dict[str, bytes]) -> None:
    """A truncated `.gz` gives a DataError, not a crash."""
    write(tmp_path, idx_files, packed=True)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DataError, match="gzip"):
        read_verified(tmp_path)


def test_idx_round_trip_and_bad_headers() -> None:
    """IDX decoding checks the magic number and the declared size."""
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(decode_idx(data._encode_idx(array)), array)
    with pytest.raises(DataError):
        decode_idx(b"\x00\x00\x0d\x01" + b"\x00" * 8)
    with pytest.raises(DataError):
        decode_idx(data._encode_idx(array)[:-1])
