"""The learning loop of corrections: a hand the model reads wrong, corrected, then learned.

The hand is a boxy 6: a flat cap and square corners, as people write it who learnt digits
from displays and forms. The committed model reads nearly all of them as a 5 (MNIST has no
such 6). About 300 of them are stored as corrections in a SQLite store (one in ten as a
picture), `train.finetune` fine-tunes on them, and the new version reads fresh ones right
while MNIST test stays above its guard.

(A 1 with a long flag was tried first: the model reads two in three as a 7, but learning it
costs 4-8 MNIST 7s, and MNIST test ended at 99.41 %, a single image above the guard.)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import itertools
import json
import math
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from numpy.typing import NDArray

from corrections.store import Correction, CorrectionStore, StoredCorrection, migrate
from model import MODEL_PATH
from model.strokes import strokes_to_model_input
from tests.conftest import TIMEOUT_S, start_server
from tests.drawing import Strokes, draw_strokes, encode, pen_path
from train import finetune

# The boxy 6's pen path in a unit box, in one stroke: the cap leftwards, down the left side,
# along the bottom, up the right side to the middle, and the middle bar back to the left.
BOXY_SIX = [(0.8, 0.05), (0.2, 0.05), (0.2, 0.95), (0.8, 0.95), (0.8, 0.5), (0.2, 0.5)]
RIGHT, READ_WRONG_AS = 6, 5
# Canvas sizes the page has in CSS pixels on a desktop and on a phone.
CANVASES = [(440, 440), (388, 388)]
# The page's pen is a fourteenth of the canvas's width.
LINE_WIDTH_FRACTION = 1 / 14
CORRECTIONS = 300
FRESH_DRAWINGS = 400


def boxy_six(generator: random.Random, canvas: tuple[int, int]) -> Strokes:
    """A boxy 6 as a person draws it on a canvas: sized, slanted, placed, shaky."""
    width, height = canvas
    size = generator.uniform(0.35, 0.85) * min(width, height)
    slant = generator.uniform(-0.15, 0.15)
    aspect = generator.uniform(0.7, 1.1)
    turn = math.radians(generator.uniform(-6, 6))
    left = generator.uniform(0.02 * width, width - 1.02 * size)
    top = generator.uniform(0.02 * height, height - 1.02 * size)
    tremor = generator.uniform(0.0, 0.006) * size
    corners = [
        (x + generator.gauss(0, 0.025), y + generator.gauss(0, 0.025)) for x, y in BOXY_SIX
    ]
    unit: list[tuple[float, float]] = []
    for (x0, y0), (x1, y1) in itertools.pairwise(corners):
        steps = max(2, round(150 * math.dist((x0, y0), (x1, y1))))
        unit += [
            (x0 + (x1 - x0) * step / steps, y0 + (y1 - y0) * step / steps) for step in range(steps)
        ]
    unit.append(corners[-1])
    stroke = []
    for x, y in unit:
        x, y = (x - 0.5) * aspect - slant * (y - 0.5), y - 0.5
        x, y = x * math.cos(turn) - y * math.sin(turn), x * math.sin(turn) + y * math.cos(turn)
        stroke.append(
            (
                left + size * (0.5 + x) + generator.gauss(0.0, tremor),
                top + size * (0.5 + y) + generator.gauss(0.0, tremor),
            )
        )
    return [stroke]


def ink(strokes: Strokes, canvas: tuple[int, int], line_width: float) -> dict[str, Any]:
    """The ink of a correction, as the page sends it."""
    width, height = canvas
    return {
        "width": width,
        "height": height,
        "line_width": round(line_width, 2),
        "strokes": [[[round(x, 1), round(y, 1)] for x, y in stroke] for stroke in strokes],
    }


def line_width(generator: random.Random, canvas: tuple[int, int]) -> float:
    """The page's pen, a little wider or thinner as zoom and devicePixelRatio make it."""
    return canvas[0] * LINE_WIDTH_FRACTION * generator.uniform(0.85, 1.15)


def boxy_sixes(seed: int, count: int) -> list[dict[str, Any]]:
    """`count` boxy 6s as ink, on the page's canvas sizes."""
    generator = random.Random(seed)
    drawings = []
    for _ in range(count):
        canvas = generator.choice(CANVASES)
        drawings.append(ink(boxy_six(generator, canvas), canvas, line_width(generator, canvas)))
    return drawings


def model_inputs(drawings: Sequence[dict[str, Any]]) -> NDArray[np.float32]:
    """The model inputs the server makes of ink drawings."""
    inputs = [
        strokes_to_model_input(
            drawing["strokes"], drawing["width"], drawing["height"], drawing["line_width"]
        )
        for drawing in drawings
    ]
    assert all(model_input is not None for model_input in inputs)
    return np.stack(inputs)[..., None]


def read_as(model_path: Path, inputs: NDArray[np.float32]) -> NDArray[np.int64]:
    """The digits a saved model reads in the inputs."""
    import keras

    model = keras.saving.load_model(model_path, compile=False)
    return np.asarray(model.predict(inputs, batch_size=500, verbose=0).argmax(axis=1))


def store(database_url: str, corrections: Sequence[Correction]) -> None:
    """Create the store's schema and add the corrections, as the server would."""
    migrate(database_url)

    async def add_all() -> None:
        corrections_store = CorrectionStore.open(database_url)
        try:
            for correction in corrections:
                await corrections_store.add(correction)
        finally:
            await corrections_store.close()

    asyncio.run(add_all())


def boxy_corrections(seed: int, count: int) -> list[Correction]:
    """Boxy 6s corrected to "6", most as ink, one in ten as a picture of the canvas."""
    corrections = []
    for index, drawing in enumerate(boxy_sixes(seed, count)):
        answer = {"digit": READ_WRONG_AS}
        if index % 10 == 9:
            picture = draw_strokes(
                drawing["strokes"], drawing["width"], drawing["height"], drawing["line_width"], 2
            )
            corrections.append(Correction(label=str(RIGHT), image=encode(picture), answer=answer))
        else:
            corrections.append(Correction(label=str(RIGHT), ink=drawing, answer=answer))
    return corrections


@dataclass(frozen=True)
class Run:
    """A fine-tuning run's exit status, output folder and what it printed."""

    status: int
    output: Path
    printed: str


@pytest.fixture(scope="module")
def corrections_database(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite store of about 300 boxy-6 corrections, plus numbers and "not a digit"."""
    folder = tmp_path_factory.mktemp("corrections")
    database_url = f"sqlite:///{folder}/corrections.sqlite3"
    generator = random.Random(5)
    others = [
        Correction(label="not_digit", ink=ink(pen_path(8, generator, (440, 440)), (440, 440), 31.4))
        for _ in range(4)
    ] + [
        Correction(label="2026", ink=ink(pen_path(2, generator, (388, 388)), (388, 388), 27.7))
        for _ in range(3)
    ]
    store(database_url, [*boxy_corrections(seed=1, count=CORRECTIONS), *others])
    return database_url


@pytest.fixture(scope="module")
def finetuned(corrections_database: str, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """`python -m train.finetune` run once on the corrections store."""
    output = tmp_path_factory.mktemp("versions") / "learned"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        status = finetune.main(["--database-url", corrections_database, "--output", str(output)])
    return Run(status, output, printed.getvalue())


@pytest.mark.slow
@pytest.mark.timeout(30 * TIMEOUT_S)
def test_the_committed_model_reads_boxy_sixes_wrong() -> None:
    """The committed model reads fewer than half of the boxy 6s as a 6: a hand to learn."""
    predicted = read_as(MODEL_PATH, model_inputs(boxy_sixes(seed=2, count=FRESH_DRAWINGS)))
    assert np.mean(predicted == RIGHT) < 0.5
    assert np.mean(predicted == READ_WRONG_AS) > 0.4


@pytest.mark.slow
@pytest.mark.timeout(30 * TIMEOUT_S)
def test_fine_tuning_learns_the_boxy_six(finetuned: Run) -> None:
    """The new version reads fresh boxy 6s right (>= 95 %), and ordinary 5s and 6s still."""
    assert finetuned.status == 0, finetuned.printed
    new_model = finetuned.output / "digits.keras"
    fresh = model_inputs(boxy_sixes(seed=2, count=FRESH_DRAWINGS))
    assert np.mean(read_as(new_model, fresh) == RIGHT) >= 0.95
    generator = random.Random(3)
    for digit in (READ_WRONG_AS, RIGHT):
        ordinary = []
        for _ in range(200):
            canvas = generator.choice(CANVASES)
            strokes = pen_path(digit, generator, canvas)
            ordinary.append(ink(strokes, canvas, line_width(generator, canvas)))
        before = np.mean(read_as(MODEL_PATH, model_inputs(ordinary)) == digit)
        after = np.mean(read_as(new_model, model_inputs(ordinary)) == digit)
        assert after >= min(before, 0.95), digit


@pytest.mark.slow
@pytest.mark.timeout(30 * TIMEOUT_S)
def test_the_new_version_records_its_figures(finetuned: Run) -> None:
    """metrics.json states MNIST test >= 99.4 %, held-out before and after, and what was skipped."""
    assert finetuned.status == 0, finetuned.printed
    metrics = json.loads((finetuned.output / "metrics.json").read_text())
    assert metrics["name"] == "digits-cnn"
    assert metrics["test_accuracy"] >= 0.994
    assert metrics["test_images"] == 10000
    figures = metrics["finetune"]
    assert figures["mnist_test_accuracy"]["after"] == metrics["test_accuracy"]
    assert figures["held_out_accuracy"]["before"] < 0.5
    assert figures["held_out_accuracy"]["after"] >= 0.95
    counted = figures["corrections"]
    assert counted["stored"] == CORRECTIONS + 7
    assert counted["training"] + counted["held_out"] == CORRECTIONS
    assert 0.1 * CORRECTIONS < counted["held_out"] < 0.3 * CORRECTIONS
    assert counted["skipped"] == {"not_digit": 4, "number": 3}
    assert (
        figures["base_version"]
        == json.loads(MODEL_PATH.with_name("metrics.json").read_text())["version"]
    )
    assert "skipped 4 not_digit, 3 number" in finetuned.printed


@pytest.mark.slow
@pytest.mark.timeout(30 * TIMEOUT_S)
def test_the_server_serves_the_new_version(finetuned: Run, tmp_path: Path) -> None:
    """`python -m server --model DIR/digits.keras` loads the new version and names it."""
    assert finetuned.status == 0, finetuned.printed
    metrics = json.loads((finetuned.output / "metrics.json").read_text())
    server = start_server(tmp_path, "--model", str(finetuned.output / "digits.keras"))
    try:
        answer = httpx.get(f"{server.http_url}/api/model", timeout=TIMEOUT_S).json()
    finally:
        server.stop(TIMEOUT_S)
    assert answer["version"] == metrics["version"]
    assert answer["test_accuracy"] == metrics["test_accuracy"]


def test_held_out_corrections_are_chosen_by_their_drawing() -> None:
    """The held-out fifth depends only on each drawing and label: runs and resends agree."""
    stored = [
        StoredCorrection(str(uuid.uuid4()), datetime.now(UTC), correction)
        for correction in boxy_corrections(seed=6, count=1000)
    ]
    chosen = [finetune.is_held_out(item, 0.2) for item in stored]
    resent = [dataclasses.replace(item, id=str(uuid.uuid4())) for item in stored]
    assert chosen == [finetune.is_held_out(item, 0.2) for item in resent]
    assert 0.16 < np.mean(chosen) < 0.24


def test_the_guard_refuses_a_model_that_got_worse() -> None:
    """A model below 99.4 % on MNIST, or worse on the held-out corrections, is refused."""
    config = finetune.Config()
    assert finetune.refusal(0.9950, 0.30, 0.98, config) is None
    assert finetune.refusal(0.9950, 0.98, 0.98, config) is None
    assert "MNIST" in str(finetune.refusal(0.9939, 0.30, 0.98, config))
    assert "held-out" in str(finetune.refusal(0.9950, 0.90, 0.85, config))


@pytest.mark.slow
@pytest.mark.timeout(30 * TIMEOUT_S)
def test_a_model_below_the_guard_is_not_written(
    corrections_database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An untrained model, briefly fine-tuned, ends below 99.4 % on MNIST: nothing is written."""
    from model.architecture import build_model

    untrained = tmp_path / "untrained" / "digits.keras"
    untrained.parent.mkdir()
    build_model().save(untrained)
    output = tmp_path / "refused"
    arguments = ["--database-url", corrections_database, "--model", str(untrained)]
    status = finetune.main(
        [*arguments, "--output", str(output), "--epochs", "1", "--replay-size", "2000"]
    )
    assert status == finetune.EXIT_REFUSED
    assert not output.exists()
    assert list(tmp_path.iterdir()) == [untrained.parent]
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1
    assert error[0].startswith("refused: MNIST test accuracy")


def test_too_few_corrections_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Twenty corrections are too few to learn from or to measure: one line, exit 1."""
    database_url = f"sqlite:///{tmp_path}/few.sqlite3"
    store(database_url, boxy_corrections(seed=4, count=20))
    output = tmp_path / "version"
    status = finetune.main(["--database-url", database_url, "--output", str(output)])
    assert status == finetune.EXIT_ERROR
    assert not output.exists()
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1
    assert error[0].startswith("error: too few usable corrections: 20")


@pytest.mark.parametrize(
    ("database_url", "message"),
    [
        ("mysql://localhost/digits", "error: unsupported database 'mysql'"),
        ("not a url", "error: not a database URL"),
        ("sqlite:///{tmp}/missing.sqlite3", "error: no corrections database at"),
        ("sqlite:///{tmp}/garbage.sqlite3", "error: cannot read corrections from"),
    ],
)
def test_a_bad_database_is_one_line(
    database_url: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad or unreadable database URL exits 1 with a one-line message, no traceback."""
    (tmp_path / "garbage.sqlite3").write_bytes(b"not a database" * 100)
    status = finetune.main(["--database-url", database_url.format(tmp=tmp_path)])
    assert status == finetune.EXIT_ERROR
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1
    assert error[0].startswith(message)
    assert not (tmp_path / "missing.sqlite3").exists()
