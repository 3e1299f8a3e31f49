"""The learning loop of corrections: hands the model reads wrong, corrected, then learned.

Two lessons at once, as people give them on the page:
- a boxy 6: a flat cap and square corners, as people write it who learnt digits from
  displays and forms. The committed model reads nearly all of them as a 5 (MNIST has no
  such 6); about 300 are stored corrected to "6" (one in ten as a picture of the canvas);
- a Cyrillic Я, written square like the 6: the mirror image of an R, which the model
  rejects, but Я itself it reads as a 9 and never rejects; about 150 are stored corrected
  to "not_digit", which trains the model's "not a digit" output.
A few numbers ("2026") are stored too, and skipped: the model reads one digit a picture.
`train.finetune` fine-tunes on them, and the new version reads fresh boxy 6s as 6 and
rejects fresh Я, while MNIST test, false rejection and the non-digits stay within the guard.

(A 1 with a long flag was tried first: the ten-output model read two in three as a 7, but
learning it cost 4-8 MNIST 7s, and MNIST test ended at 99.41 %, a single image above the
guard.)
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
from model import METRICS_PATH, MODEL_PATH
from model.architecture import NOT_DIGIT
from model.strokes import strokes_to_model_input
from tests.conftest import TIMEOUT_S, start_server
from tests.drawing import Hand, Point, Strokes, draw_strokes, encode, pen_path
from tests.test_architecture import is_inference_only
from train import finetune

# Pen paths in a unit box (x right, y down).
# The boxy 6, in one stroke: the cap leftwards, down the left side, along the bottom, up the
# right side to the middle, and the middle bar back to the left.
BOXY_SIX = [[(0.8, 0.05), (0.2, 0.05), (0.2, 0.95), (0.8, 0.95), (0.8, 0.5), (0.2, 0.5)]]
RIGHT, READ_WRONG_AS = 6, 5
# Я: up the stem on the right, the bowl round to the left and back to the stem, then the leg
# from the bowl down to the left.
CYRILLIC_YA = [
    [(0.8, 0.95), (0.8, 0.05), (0.3, 0.05), (0.15, 0.18), (0.15, 0.37), (0.3, 0.5), (0.8, 0.5)],
    [(0.45, 0.5), (0.15, 0.95)],
]
YA_READ_AS = 9
# Canvas sizes the page has in CSS pixels on a desktop and on a phone.
CANVASES = [(440, 440), (388, 388)]
# The page's pen is a fourteenth of the canvas's width.
LINE_WIDTH_FRACTION = 1 / 14
CORRECTIONS = 300
NOT_DIGIT_CORRECTIONS = 150
NUMBERS = 3
FRESH_DRAWINGS = 400
THRESHOLD = float(json.loads(METRICS_PATH.read_text())["not_digit_threshold"])


def hand_drawn(
    template: Sequence[Sequence[Point]], generator: random.Random, canvas: tuple[int, int]
) -> Strokes:
    """A template as a person draws it on a canvas: sized, slanted, placed, shaky."""
    width, height = canvas
    size = generator.uniform(0.35, 0.85) * min(width, height)
    slant = generator.uniform(-0.15, 0.15)
    aspect = generator.uniform(0.7, 1.1)
    turn = math.radians(generator.uniform(-6, 6))
    left = generator.uniform(0.02 * width, width - 1.02 * size)
    top = generator.uniform(0.02 * height, height - 1.02 * size)
    tremor = generator.uniform(0.0, 0.006) * size
    hand = Hand(left, top, size, slant, aspect, turn, tremor)
    strokes: Strokes = []
    for path in template:
        corners = [(x + generator.gauss(0, 0.025), y + generator.gauss(0, 0.025)) for x, y in path]
        unit: list[Point] = []
        for (x0, y0), (x1, y1) in itertools.pairwise(corners):
            steps = max(2, round(150 * math.dist((x0, y0), (x1, y1))))
            unit += [
                (x0 + (x1 - x0) * step / steps, y0 + (y1 - y0) * step / steps)
                for step in range(steps)
            ]
        unit.append(corners[-1])
        strokes.append([hand.place(point, generator) for point in unit])
    return strokes


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


def drawings(template: Sequence[Sequence[Point]], seed: int, count: int) -> list[dict[str, Any]]:
    """`count` hand-drawn copies of a template as ink, on the page's canvas sizes."""
    generator = random.Random(seed)
    drawn = []
    for _ in range(count):
        canvas = generator.choice(CANVASES)
        strokes = hand_drawn(template, generator, canvas)
        drawn.append(ink(strokes, canvas, line_width(generator, canvas)))
    return drawn


def ordinary_digits(digit: int, seed: int, count: int) -> list[dict[str, Any]]:
    """`count` ordinary drawings of a digit as ink, on the page's canvas sizes."""
    generator = random.Random(seed)
    drawn = []
    for _ in range(count):
        canvas = generator.choice(CANVASES)
        strokes = pen_path(digit, generator, canvas)
        drawn.append(ink(strokes, canvas, line_width(generator, canvas)))
    return drawn


def model_inputs(drawn: Sequence[dict[str, Any]]) -> NDArray[np.float32]:
    """The model inputs the server makes of ink drawings."""
    inputs = []
    for drawing in drawn:
        model_input = strokes_to_model_input(
            drawing["strokes"], drawing["width"], drawing["height"], drawing["line_width"]
        )
        assert model_input is not None
        inputs.append(model_input)
    return np.stack(inputs)[..., None]


def read_as(model_path: Path, inputs: NDArray[np.float32]) -> NDArray[np.int64]:
    """What a saved model answers for the inputs at its threshold: NOT_DIGIT when its
    "not a digit" output reaches the threshold beside it, else the likeliest digit."""
    import keras

    model = keras.saving.load_model(model_path, compile=False)
    threshold = json.loads(model_path.with_name("metrics.json").read_text())["not_digit_threshold"]
    probabilities = model.predict(inputs, batch_size=500, verbose=0)
    digits = probabilities[:, :NOT_DIGIT].argmax(axis=1)
    return np.where(probabilities[:, NOT_DIGIT] >= threshold, NOT_DIGIT, digits)


def shares(answers: NDArray[np.int64]) -> str:
    """How often each answer was given, for the printout."""
    counts = np.bincount(answers, minlength=NOT_DIGIT + 1) / len(answers)
    names = [*map(str, range(NOT_DIGIT)), "not a digit"]
    return ", ".join(
        f"{name} {share:.1%}" for name, share in zip(names, counts, strict=True) if share
    )


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


def corrections_of(
    template: Sequence[Sequence[Point]], label: str, read_wrong_as: int, seed: int, count: int
) -> list[Correction]:
    """Hand-drawn copies of a template corrected to `label`, most as ink, one in ten as a
    picture of the canvas."""
    corrections = []
    answer = {"digit": read_wrong_as}
    for index, drawing in enumerate(drawings(template, seed, count)):
        if index % 10 == 9:
            picture = draw_strokes(
                drawing["strokes"], drawing["width"], drawing["height"], drawing["line_width"], 2
            )
            corrections.append(Correction(label=label, image=encode(picture), answer=answer))
        else:
            corrections.append(Correction(label=label, ink=drawing, answer=answer))
    return corrections


def boxy_corrections(seed: int, count: int) -> list[Correction]:
    """Boxy 6s corrected to "6"."""
    return corrections_of(BOXY_SIX, str(RIGHT), READ_WRONG_AS, seed, count)


@dataclass(frozen=True)
class Run:
    """A fine-tuning run's exit status, output folder and what it printed."""

    status: int
    output: Path
    printed: str


@pytest.fixture(scope="module")
def corrections_database(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite store of 300 boxy 6s corrected to "6", 150 Я corrected to "not_digit", and
    three numbers."""
    folder = tmp_path_factory.mktemp("corrections")
    database_url = f"sqlite:///{folder}/corrections.sqlite3"
    generator = random.Random(5)
    numbers = [
        Correction(label="2026", ink=ink(pen_path(2, generator, (388, 388)), (388, 388), 27.7))
        for _ in range(NUMBERS)
    ]
    store(
        database_url,
        [
            *boxy_corrections(seed=1, count=CORRECTIONS),
            *corrections_of(
                CYRILLIC_YA, "not_digit", YA_READ_AS, seed=7, count=NOT_DIGIT_CORRECTIONS
            ),
            *numbers,
        ],
    )
    return database_url


@pytest.fixture(scope="module")
def finetuned(corrections_database: str, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """`python -m train.finetune` run once on the corrections store."""
    output = tmp_path_factory.mktemp("versions") / "learned"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        status = finetune.main(["--database-url", corrections_database, "--output", str(output)])
    print(printed.getvalue())
    return Run(status, output, printed.getvalue())


@pytest.fixture(scope="module")
def fresh() -> dict[str, NDArray[np.float32]]:
    """Fresh drawings, never stored: boxy 6s, Я, and ordinary 5s, 6s and 9s."""
    return {
        "boxy 6": model_inputs(drawings(BOXY_SIX, seed=2, count=FRESH_DRAWINGS)),
        "Я": model_inputs(drawings(CYRILLIC_YA, seed=8, count=FRESH_DRAWINGS)),
        **{
            str(digit): model_inputs(ordinary_digits(digit, seed=3 + digit, count=200))
            for digit in (READ_WRONG_AS, RIGHT, YA_READ_AS)
        },
    }


@pytest.mark.slow
@pytest.mark.timeout(30 * TIMEOUT_S)
def test_the_committed_model_misreads_both_hands(fresh: dict[str, NDArray[np.float32]]) -> None:
    """The committed model reads fewer than half of the boxy 6s as a 6 (most as a 5), and
    rejects fewer than a tenth of the Я (most it reads as a 9): two hands to learn."""
    boxy = read_as(MODEL_PATH, fresh["boxy 6"])
    ya = read_as(MODEL_PATH, fresh["Я"])
    print(f"committed model: boxy 6s read as {shares(boxy)}; Я read as {shares(ya)}")
    assert np.mean(boxy == RIGHT) < 0.5
    assert np.mean(boxy == READ_WRONG_AS) > 0.4
    assert np.mean(ya == NOT_DIGIT) < 0.1
    assert np.mean(ya == YA_READ_AS) > 0.5


@pytest.mark.slow
@pytest.mark.timeout(30 * TIMEOUT_S)
def test_fine_tuning_learns_both_hands(
    finetuned: Run, fresh: dict[str, NDArray[np.float32]]
) -> None:
    """The new version reads fresh boxy 6s as 6 (>= 95 %) and rejects fresh Я (>= 90 %), and
    reads ordinary 5s, 6s and 9s as well as before (or >= 95 %)."""
    assert finetuned.status == 0, finetuned.printed
    new_model = finetuned.output / "digits.keras"
    boxy = read_as(new_model, fresh["boxy 6"])
    ya = read_as(new_model, fresh["Я"])
    print(f"fine-tuned: boxy 6s read as {shares(boxy)}; Я read as {shares(ya)}")
    assert np.mean(boxy == RIGHT) >= 0.95
    assert np.mean(ya == NOT_DIGIT) >= 0.9
    for digit in (READ_WRONG_AS, RIGHT, YA_READ_AS):
        before = np.mean(read_as(MODEL_PATH, fresh[str(digit)]) == digit)
        after = np.mean(read_as(new_model, fresh[str(digit)]) == digit)
        print(f"ordinary {digit}s read right: {before:.1%} -> {after:.1%}")
        assert after >= min(before, 0.95), digit


@pytest.mark.slow
@pytest.mark.timeout(30 * TIMEOUT_S)
def test_the_new_version_records_its_figures(finetuned: Run) -> None:
    """metrics.json keeps the base's temperature and threshold, and states MNIST test
    >= 99.4 %, false rejection <= 0.5 %, held-out before and after, and what was skipped."""
    assert finetuned.status == 0, finetuned.printed
    metrics = json.loads((finetuned.output / "metrics.json").read_text())
    base = json.loads(METRICS_PATH.read_text())
    assert metrics["name"] == "digits-cnn"
    for setting in ("classes", "class_names", "temperature", "not_digit_threshold"):
        assert metrics[setting] == base[setting], setting
    assert metrics["test_accuracy"] >= 0.994
    assert metrics["test_images"] == 10000
    assert metrics["false_rejection"]["mnist_test"] <= 0.005
    assert metrics["ece_after"] <= 0.01
    assert metrics["nondigit_rejection"]["overall"] >= 0.95
    figures = metrics["finetune"]
    assert figures["mnist_test_accuracy"]["after"] == metrics["test_accuracy"]
    assert figures["false_rejection"]["after"] == metrics["false_rejection"]["mnist_test"]
    assert figures["held_out_accuracy"]["before"] < 0.5
    assert figures["held_out_accuracy"]["after"] >= 0.9
    by_label = figures["held_out_by_label"]
    assert by_label["digits"]["before"] < 0.5 <= 0.95 <= by_label["digits"]["after"]
    assert by_label["not_digit"]["before"] < 0.1 < 0.9 <= by_label["not_digit"]["after"]
    counted = figures["corrections"]
    assert counted["stored"] == CORRECTIONS + NOT_DIGIT_CORRECTIONS + NUMBERS
    assert counted["training"] + counted["held_out"] == CORRECTIONS + NOT_DIGIT_CORRECTIONS
    assert counted["not_digit"] == NOT_DIGIT_CORRECTIONS
    assert 0.1 * CORRECTIONS < counted["held_out"] < 0.3 * (CORRECTIONS + NOT_DIGIT_CORRECTIONS)
    assert counted["skipped"] == {"number": NUMBERS}
    assert figures["base_version"] == base["version"]
    assert f"skipped {NUMBERS} number" in finetuned.printed
    assert "numbers (labels of several digits) are skipped" in finetuned.printed
    assert is_inference_only(finetuned.output / "digits.keras")


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


def test_labels_train_their_output_and_numbers_are_skipped() -> None:
    """A digit trains its output, "not_digit" the eleventh (skipped by a ten-output model),
    and a number is skipped."""
    assert finetune.output_label("7") == 7
    assert finetune.output_label("not_digit") == NOT_DIGIT
    for label, reason in (("2026", "number"), ("x", "unreadable")):
        with pytest.raises(finetune.UnusableError, match=reason):
            finetune.output_label(label)
    with pytest.raises(finetune.UnusableError, match="not_digit"):
        finetune.output_label("not_digit", not_digit=False)


def test_the_guard_refuses_a_model_that_got_worse() -> None:
    """A model below 99.4 % on MNIST, above 0.5 % false rejection or 1 % ECE, below 95 % of
    the non-digits rejected, or worse on held-out digits or not-digits, is refused."""
    config = finetune.Config()
    base = finetune.Measured(
        mnist_accuracy=0.9956,
        false_rejection=0.0039,
        calibration_error=0.0023,
        nondigit_rejection=0.98,
        held_out={"all": 0.1, "digits": 0.1, "not_digit": 0.1},
    )
    learned = dataclasses.replace(
        base, mnist_accuracy=0.9950, held_out={"all": 0.98, "digits": 0.98, "not_digit": 0.98}
    )
    assert finetune.refusal(base, learned, config) is None
    assert finetune.refusal(base, base, config) is None
    worse: dict[str, dict[str, Any]] = {
        "MNIST test accuracy": {"mnist_accuracy": 0.9939},
        "false rejection": {"false_rejection": 0.0051},
        "calibration error": {"calibration_error": 0.0101},
        "non-digits rejected": {"nondigit_rejection": 0.949},
        "held-out not_digit": {"held_out": {"all": 0.5, "digits": 0.98, "not_digit": 0.05}},
        "held-out digits": {"held_out": {"all": 0.5, "digits": 0.05, "not_digit": 0.98}},
    }
    for reason, change in worse.items():
        refused = finetune.refusal(base, dataclasses.replace(learned, **change), config)
        assert refused is not None and reason in refused, reason


@pytest.mark.slow
@pytest.mark.timeout(30 * TIMEOUT_S)
def test_a_model_below_the_guard_is_not_written(
    corrections_database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An untrained model, briefly fine-tuned, ends below 99.4 % on MNIST: nothing is written."""
    from model.architecture import build_model

    untrained = tmp_path / "untrained" / "digits.keras"
    untrained.parent.mkdir()
    build_model(classes=NOT_DIGIT + 1, temperature=1.0, deeper=True).save(untrained)
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
