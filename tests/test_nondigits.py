"""The synthetic non-digits: model inputs of every kind, reproducible, never from a font."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from train.nondigits import (
    EVALUATION_SHARES,
    EXCLUDED,
    FONT_CHARACTERS,
    FONT_SUFFIXES,
    KINDS,
    LETTERS,
    MIN_REMOVED_INK,
    SYMBOLS,
    cut_fragment,
    font_files,
    looks_like_a_digit,
    make_nondigits,
)
from train.nondigits import _digit_ink as digit_ink

Digits = tuple[NDArray[np.uint8], NDArray[np.uint8]]

# Every file opened while a test watches: the audit hook stays for the process, so it only
# records while `opened` is not None.
opened: list[str] | None = None


def _audit(event: str, arguments: tuple[object, ...]) -> None:
    if opened is not None and event == "open" and arguments:
        opened.append(str(arguments[0]))


sys.addaudithook(_audit)


@pytest.fixture(scope="module")
def digits() -> Digits:
    """Stand-in digits: thick strokes on 28x28 like MNIST's, labels 0-9 (no download)."""
    generator = np.random.default_rng(0)
    images = np.zeros((40, 28, 28), dtype=np.uint8)
    for index in range(len(images)):
        top, left = generator.integers(4, 8, 2)
        images[index, top : top + 18, left : left + 3] = 255
        images[index, top : top + 3, left : left + 12] = 255
        images[index, top + 15 : top + 18, left : left + 12] = 255
    return images, (np.arange(len(images)) % 10).astype(np.uint8)


@pytest.fixture
def watched() -> Iterator[list[str]]:
    """The paths of every file opened during the test."""
    global opened
    opened = []
    yield opened
    opened = None


def test_every_kind_is_a_model_input(digits: Digits) -> None:
    """Each kind comes out as 28x28 float32 in [0, 1] with ink, and all kinds appear."""
    count = 3 * len(KINDS)
    pictures, kinds = make_nondigits(*digits, count, seed=1, shares=EVALUATION_SHARES)
    assert pictures.shape == (count, 28, 28)
    assert pictures.dtype == np.float32
    assert pictures.min() >= 0.0
    assert pictures.max() <= 1.0
    assert np.all(pictures.reshape(count, -1).max(axis=1) > 0.5)
    assert sorted(set(kinds.tolist())) == sorted(KINDS)


def test_same_seed_same_pictures(digits: Digits) -> None:
    """The same seed gives the same pictures; another seed gives others."""
    first, first_kinds = make_nondigits(*digits, 30, seed=7)
    again, again_kinds = make_nondigits(*digits, 30, seed=7)
    other, _ = make_nondigits(*digits, 30, seed=8)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first_kinds, again_kinds)
    assert not np.array_equal(first, other)


def test_processes_do_not_change_the_pictures(digits: Digits) -> None:
    """Each picture has its own seed, so splitting the work among processes changes nothing."""
    alone, _ = make_nondigits(*digits, 240, seed=3)
    shared, _ = make_nondigits(*digits, 240, seed=3, processes=2)
    np.testing.assert_array_equal(alone, shared)


def test_training_generator_reads_no_font(digits: Digits, watched: list[str]) -> None:
    """Making every kind of training non-digit opens no font file."""
    make_nondigits(*digits, 4 * len(KINDS), seed=2, shares=EVALUATION_SHARES)
    fonts = [path for path in watched if Path(path).suffix.lower() in FONT_SUFFIXES]
    fonts += [path for path in watched if "fonts" in Path(path).parts]
    assert fonts == []


def test_fragments_remove_enough_ink(digits: Digits) -> None:
    """A fragment keeps at most 1 - MIN_REMOVED_INK of its digit's ink and is not digit-like."""
    generator = np.random.default_rng(5)
    made = 0
    for _ in range(300):
        ink = digit_ink(generator, *digits)
        piece = cut_fragment(ink, generator)
        if piece is None:
            continue
        made += 1
        assert piece.sum() <= (1.0 - MIN_REMOVED_INK) * ink.sum() + 1e-3
        assert not looks_like_a_digit(piece)
    assert made > 30


def test_tall_thin_pieces_and_loops_look_like_digits() -> None:
    """A bar taller than wide reads as a 1 and a ring as a 0; a flat bar does not."""
    bar = np.zeros((30, 6), dtype=np.float32)
    bar[:, 1:5] = 1.0
    ring = np.zeros((30, 24), dtype=np.float32)
    ring[2:28, 2:22] = 1.0
    ring[6:24, 6:18] = 0.0
    assert looks_like_a_digit(bar)
    assert looks_like_a_digit(ring)
    assert not looks_like_a_digit(bar.T.copy())


def test_digit_like_characters_have_no_template() -> None:
    """No excluded character (O, l, S, Z, b, g, B, ...) is drawn or rendered."""
    assert not set(EXCLUDED) & set(LETTERS)
    assert not set(EXCLUDED) & set(SYMBOLS)
    assert not set(EXCLUDED) & set(FONT_CHARACTERS)
    assert {"O", "o", "l", "I", "S", "Z", "b", "g", "q", "B"} <= set(EXCLUDED)


def test_font_files_are_only_font_files(tmp_path: Path) -> None:
    """The evaluation's font search finds TrueType and OpenType files and nothing else."""
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "face.ttf").write_bytes(b"")
    (tmp_path / "face.OTF").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a font")
    assert [path.name for path in font_files([tmp_path])] == ["face.OTF", "face.ttf"]


def test_calibrated_model_divides_logits_by_its_temperature(tmp_path: Path) -> None:
    """The saved eleven-class model gives softmax(logits / T) and reloads without Lambda."""
    import keras

    from model.architecture import build_model

    plain = build_model(11, temperature=1.0, deeper=True)
    calibrated = build_model(11, temperature=2.5, deeper=True)
    calibrated.set_weights(plain.get_weights())
    calibrated.save(tmp_path / "digits.keras")
    reloaded = keras.saving.load_model(tmp_path / "digits.keras", compile=False)
    inputs = np.random.default_rng(4).random((3, 28, 28, 1), dtype=np.float32)
    logits = keras.Model(plain.inputs[0], plain.get_layer("logits").output)(inputs).numpy()
    expected = np.exp(logits / 2.5) / np.exp(logits / 2.5).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(reloaded(inputs).numpy(), expected, rtol=1e-5, atol=1e-6)
    assert all(type(layer).__name__ != "Lambda" for layer in reloaded.layers)
