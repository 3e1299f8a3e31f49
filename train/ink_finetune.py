"""Fine-tune the committed model on MNIST training digits written as uniform-pen ink.

Run:  .venv/bin/python -m train.ink_finetune [--out artifacts/model-ink] [--model PATH]
                                              [--ink-digits 12000] [--epochs 5] [--data DIR]

The web page sends strokes drawn with a pen of one width, which `model.strokes` renders into
the 28x28 input; the model, trained on MNIST's pictures, reads such ink less well than the
pictures. This module owns the cure:
- data: MNIST training digits (never training's validation split, never test digits) traced
  along their skeletons into 1-3 pen strokes by `train.ink_numbers` and written alone on the
  page's wide canvas (random size, slant, pen width relative to size), rendered through
  `model.strokes.strokes_to_model_input` exactly as the server renders ink.
- train: `train.finetune`'s loop with these ink digits in place of corrections: every epoch
  a fresh MNIST replay (part of it canvas-like augmented), synthetic non-digits, all the ink.
- evaluate: MNIST test (digit outputs), calibration error, false rejection of MNIST test
  and canvas pictures, training's evaluation non-digits and font letters, and ink digits
  traced from MNIST test, before and after, all at the base model's threshold.
- save: `digits.keras` without optimizer state, the confusion matrix and reliability diagram,
  and `metrics.json` with every key of the base model's, re-measured where measured here;
  temperature and threshold are kept.

Refuses, writing nothing (exit 3), when `train.finetune`'s guard refuses (MNIST test below
99.4 %, false rejection above 0.5 %, ECE above 1 %, non-digits rejected below 95 %, ink test
digits read worse than before) or canvas false rejection is above 0.5 %.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from numpy.typing import NDArray

from model import MODEL_PATH
from model.architecture import NOT_DIGIT
from model.numbers import Piece, candidates, ink_pieces
from model.preprocess import FloatArray
from model.strokes import strokes_to_model_input
from train import finetune, train
from train.data import DataError, load_mnist
from train.ink_numbers import InkConfig, draw_ink_number
from train.nondigits import font_nondigits, make_nondigits

DEFAULT_OUT = Path("artifacts/model-ink")
EXIT_ERROR = 1
EXIT_REFUSED = 3
# Training's own evaluation sets, so the figures compare with model/metrics.json's.
TRAINING = train.Config()
EVALUATION_NONDIGIT_SEED = TRAINING.seed + 303
FONT_SEED = TRAINING.seed + 404


@dataclass(frozen=True)
class Config:
    """Ink fine-tuning defaults; metrics.json records the ones used."""

    seed: int = 4321  # Seeds NumPy, TensorFlow, the ink digits and the replay.
    # Passes over the ink digits, each with fresh MNIST replay: 3 read 98.3 % of the ink test
    # digits, 5 read 98.5 % (2,000 non-digits replayed), MNIST test and ECE unchanged. The
    # served model is a second run on top of the first: 40,000 ink digits, 40,000 replayed,
    # 6 epochs at 3e-4 (ink test digits 98.37 % -> 98.83 %, false rejection 0.28 -> 0.18 %).
    epochs: int = 5
    batch_size: int = 128
    learning_rate: float = 1e-4  # Adam's starting rate, cosine-decayed to 0 (as finetune).
    replay_size: int = 20000  # MNIST training digits replayed per epoch, drawn afresh.
    augmented_fraction: float = 0.2  # Share of the replay made canvas-like.
    # Synthetic non-digits replayed each epoch. With finetune's 2,000 the ink digits taught
    # the model to accept scribbles: non-digits rejected fell from 98.3 % to 97.0 % (font
    # letters 83.6 % to 74.0 %) and a slanted 17 drawn as a picture read as a 0; with
    # 4,000, 98.2 % (79.5 %), ink test digits 98.4 %, MNIST test false rejection 0.28 %.
    nondigit_replay: int = 4000
    # Ink digits traced from MNIST training digits, all of them in every epoch.
    ink_digits: int = 12000
    # Groups of a number's strokes that hold two or more of its whole digits, drawn as the
    # server draws a group when it splits ink: "not a digit", so that the search does not
    # merge a 1 into its neighbour (21 read 2, 10 read 6). Off: single digits pay for it.
    # 20,000 groups that also held a digit and a piece of the next (5 epochs at 2e-4 from the
    # served model) read the ink test digits worse (98.83 % -> 98.70 %) and doubled false
    # rejection (0.18 % -> 0.34 %): refused. Whole digits only, 3,000 of them with 30,000
    # ink digits and 30,000 replayed (5 epochs at 1e-4, seed 4324): ink numbers of seeds 11
    # and 12 (600 each) 92.2 % -> 93.2 % and 90.5 % -> 91.8 %, but the ink test digits
    # 98.83 % -> 98.77 % (refused) and MNIST test digits as one-character numbers 99.35 % ->
    # 99.26 %, below the 99.3 % the numbers issue holds; 5,000 of them (4 epochs, 20,000
    # ink digits): 93.7 % and 91.5 %, one-character numbers 99.16 %.
    ink_pairs: int = 0
    # Training ink: digit heights (CSS pixels) on the page's 900x300 canvas with its 14-18 px
    # pen, wider than the evaluation's 130-230 so the pen ranges from a twentieth of the
    # digit's height (a digit filling the canvas) to a seventh.
    ink_height_px: tuple[int, int] = (100, 280)
    ink_test_digits: int = 3000  # Ink digits traced from MNIST test, measured before/after.
    ink_test_seed: int = 2028  # Differs from `train.numbers`' ink set (2027).
    canvas_images: int = 10000  # MNIST test digits as canvas pictures (training's set).
    evaluation_nondigits_per_kind: int = 500  # As training's evaluation (its seed + 303).
    # The guard, as `train.finetune`'s, and canvas false rejection as MNIST test's.
    min_mnist_accuracy: float = 0.994
    max_false_rejection: float = 0.005
    max_calibration_error: float = 0.01
    min_nondigit_rejection: float = 0.95


def main(argv: list[str] | None = None) -> int:
    """Fine-tune on ink, check and save; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m train.ink_finetune", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--model", type=Path, default=MODEL_PATH, help="the model to start from")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the new model")
    parser.add_argument("--data", type=Path, default=None, help="folder with the MNIST IDX files")
    parser.add_argument("--epochs", type=int, default=Config.epochs)
    parser.add_argument("--ink-digits", type=int, default=Config.ink_digits)
    parser.add_argument("--learning-rate", type=float, default=Config.learning_rate)
    parser.add_argument("--replay-size", type=int, default=Config.replay_size)
    parser.add_argument("--ink-pairs", type=int, default=Config.ink_pairs)
    parser.add_argument("--nondigit-replay", type=int, default=Config.nondigit_replay)
    parser.add_argument("--seed", type=int, default=Config.seed,
                        help="another seed traces other training digits, other ways")
    arguments = parser.parse_args(argv)
    config = Config(
        seed=arguments.seed,
        nondigit_replay=arguments.nondigit_replay,
        epochs=arguments.epochs,
        ink_digits=arguments.ink_digits,
        learning_rate=arguments.learning_rate,
        replay_size=arguments.replay_size,
        ink_pairs=arguments.ink_pairs,
    )
    try:
        return ink_finetune(config, arguments.model, arguments.out, arguments.data)
    except (finetune.FinetuneError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR


def ink_finetune(config: Config, base_path: Path, out: Path, data_dir: Path | None) -> int:
    """The whole run; EXIT_REFUSED when the guard says no."""
    started = time.monotonic()
    if not base_path.is_file():
        raise finetune.FinetuneError(f"no model at {base_path}")
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise finetune.FinetuneError(f"{out} already exists and is not empty")

    # ---- data -------------------------------------------------------------------------
    base = finetune.load_base(base_path, config.seed)
    if not base.has_not_digit:
        raise finetune.FinetuneError(f"{base_path} has no not-a-digit output")
    mnist = load_mnist(data_dir)
    # Training's validation digits stay out of both the ink and the replay, so a threshold
    # or temperature could still be re-fitted on them.
    split = train._split(mnist, TRAINING)
    training_only = dataclasses.replace(
        mnist, train_images=split.train_images, train_labels=split.train_labels
    )
    training_ink = InkConfig(seed=config.seed, height_px=config.ink_height_px)
    ink = ink_digits(split.train_images, split.train_labels, training_ink, config.ink_digits)
    if config.ink_pairs:
        pairs = ink_pairs(
            split.train_images, split.train_labels,
            dataclasses.replace(training_ink, seed=config.seed + 7), config.ink_pairs,
        )
        ink = finetune.Examples(
            np.concatenate([ink.inputs, pairs.inputs]), np.concatenate([ink.labels, pairs.labels])
        )
    test_ink = ink_digits(
        mnist.test_images, mnist.test_labels, InkConfig(seed=config.ink_test_seed),
        config.ink_test_digits,
    )
    print(f"ink digits: {len(ink)} to train on, {len(test_ink)} from MNIST test "
          f"({time.monotonic() - started:.0f} s)", flush=True)
    guard = finetune.Config(
        seed=EVALUATION_NONDIGIT_SEED - 2,  # `evaluation_set` cuts them with its seed + 2.
        evaluation_nondigits_per_kind=config.evaluation_nondigits_per_kind,
        min_mnist_accuracy=config.min_mnist_accuracy,
        max_false_rejection=config.max_false_rejection,
        max_calibration_error=config.max_calibration_error,
        min_nondigit_rejection=config.min_nondigit_rejection,
    )
    evaluation = finetune.evaluation_set(mnist, test_ink, True, guard)
    canvas_inputs, canvas_styles = train._canvas_inputs(
        mnist, dataclasses.replace(TRAINING, canvas_images=config.canvas_images)
    )
    fonts, font_names = font_nondigits(seed=FONT_SEED)
    replayed_nondigits = make_nondigits(
        split.train_images, split.train_labels, config.nondigit_replay, seed=config.seed + 1
    )[0][..., None]
    print(f"evaluation sets ready ({time.monotonic() - started:.0f} s)", flush=True)

    # ---- model ------------------------------------------------------------------------
    import keras

    model = base.model
    before = finetune.measure(model, evaluation, base)[0]
    canvas_before = canvas_rejection(model, canvas_inputs, base.threshold)
    print(f"base {base.version}: {describe(before, canvas_before)}", flush=True)

    # ---- train ------------------------------------------------------------------------
    generator = np.random.default_rng(config.seed)
    replay = dataclasses.replace(
        guard,
        seed=config.seed,
        replay_size=config.replay_size,
        augmented_fraction=config.augmented_fraction,
    )
    per_epoch = config.replay_size + len(replayed_nondigits) + len(ink)
    steps = config.epochs * math.ceil(per_epoch / config.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, steps, alpha=0.0)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="sparse_categorical_crossentropy")
    losses = []
    for epoch in range(config.epochs):
        examples = finetune.epoch_examples(
            training_only, replayed_nondigits, ink, 1, epoch, generator, replay
        )
        history = model.fit(
            examples.inputs, examples.labels, batch_size=config.batch_size, epochs=1,
            shuffle=True, verbose=0,
        )
        losses.append(float(history.history["loss"][-1]))
        print(f"epoch {epoch + 1}/{config.epochs}: {len(examples)} examples, loss "
              f"{losses[-1]:.4f} ({time.monotonic() - started:.0f} s)", flush=True)

    # ---- evaluate ---------------------------------------------------------------------
    after, decided_mnist, decided_nondigits = finetune.measure(model, evaluation, base)
    canvas_after = canvas_rejection(model, canvas_inputs, base.threshold)
    print(f"ink fine-tuned: {describe(after, canvas_after, before, canvas_before)}", flush=True)
    reason = finetune.refusal(before, after, guard)
    if reason is None and canvas_after > config.max_false_rejection:
        reason = (f"false rejection of canvas pictures {canvas_after:.2%} is above "
                  f"{config.max_false_rejection:.2%}")
    if reason is not None:
        print(f"refused: {reason}; nothing written", file=sys.stderr)
        return EXIT_REFUSED

    # ---- save -------------------------------------------------------------------------
    mnist_probabilities = finetune.probabilities(model, evaluation.mnist_inputs)
    canvas_probabilities = finetune.probabilities(model, canvas_inputs)
    font_rejected = finetune.decided(finetune.probabilities(model, fonts[..., None]),
                                     base.threshold) == NOT_DIGIT
    metrics = new_metrics(base.metrics)
    labels = evaluation.mnist_labels
    bins = int(base.metrics.get("ece_bins", 15))
    # The temperature is built into the model: T * log(p) are the logits before it, up to a
    # constant that the softmax ignores.
    temperature = float(base.metrics.get("temperature", 1.0))
    uncalibrated = train._softmax(temperature * np.log(np.maximum(mnist_probabilities, 1e-30)))
    not_digit_rows = np.full(len(decided_nondigits), NOT_DIGIT, dtype=np.uint8)
    confusion = train.confusion_matrix(
        np.concatenate([labels, not_digit_rows]),
        np.concatenate([decided_mnist, decided_nondigits]),
        int(model.output_shape[-1]),
    )
    nondigits = finetune.nondigit_figures(decided_nondigits, evaluation.nondigit_kinds)
    nondigits["nondigit_rejection"]["fonts"] = font_figures(font_rejected, font_names)
    canvas = train._canvas_figures(
        canvas_probabilities, labels[: len(canvas_inputs)], canvas_styles, base.threshold
    )
    metrics.update(
        test_accuracy=after.mnist_accuracy,
        test_images=len(labels),
        per_class_accuracy=train.per_class_accuracy(confusion, metrics["class_names"]),
        confusion_matrix=confusion.tolist(),
        ece_before=train.expected_calibration_error(uncalibrated, labels, bins),
        ece_after=after.calibration_error,
        canvas=canvas,
        **nondigits,
    )
    metrics["false_rejection"] = {
        **metrics.get("false_rejection", {}),
        "mnist_test": after.false_rejection,
        "canvas": canvas["false_rejection"],
    }
    metrics["versions"] = train.library_versions()
    metrics["ink_finetune"] = {
        "base_version": base.version,
        "ink_digits": len(ink) - config.ink_pairs,
        "ink_pairs": config.ink_pairs,
        "ink_test_digits": len(test_ink),
        "ink_test_accuracy": {"before": before.held_out["all"], "after": after.held_out["all"]},
        "mnist_test_accuracy": {"before": before.mnist_accuracy, "after": after.mnist_accuracy},
        "false_rejection": {"before": before.false_rejection, "after": after.false_rejection},
        "canvas_false_rejection": {"before": canvas_before, "after": canvas_after},
        "ece": {"before": before.calibration_error, "after": after.calibration_error},
        "nondigit_rejection": {
            "before": before.nondigit_rejection, "after": after.nondigit_rejection
        },
        "losses": losses,
        # Kept from the base model: not measured here.
        "carried": ["temperature", "not_digit_threshold", "false_rejection.validation",
                    "speed_ms", "validation_accuracy", "epochs", "history", "wall_time_s",
                    "config"],
        "config": dataclasses.asdict(config),
        "wall_time_s": round(time.monotonic() - started, 1),
    }
    # Rebuilt from its layers' config, the model has no optimizer (see `train.finetune`).
    inference_model = type(model).from_config(model.get_config())
    inference_model.set_weights(model.get_weights())
    finetune.save(inference_model, metrics, out)
    # The figures beside it, as training draws them: the learning curves are the base's.
    train._plot(metrics["history"], confusion, out, metrics["class_names"])
    train._plot_reliability(uncalibrated, mnist_probabilities, labels, bins, out)
    print(f"wrote {out}/ in {time.monotonic() - started:.0f} s", flush=True)
    return 0


def ink_digits(
    images: NDArray[np.uint8], labels: NDArray[np.uint8], config: InkConfig, count: int
) -> finetune.Examples:
    """`count` digits drawn from `images` as ink alone on the page's canvas, as model inputs."""
    generator = np.random.default_rng(config.seed)
    pairs = []
    while len(pairs) < count:
        drawn, _ = draw_ink_number(images, labels, config, generator, 1)
        model_input = strokes_to_model_input(
            list(drawn.strokes), drawn.width, drawn.height, drawn.line_width
        )
        if model_input is not None:
            pairs.append((model_input, int(drawn.text)))
    return finetune.examples(pairs)


def ink_pairs(
    images: NDArray[np.uint8], labels: NDArray[np.uint8], config: InkConfig, count: int
) -> finetune.Examples:
    """`count` groups of neighbouring strokes of numbers of 2-4 digits drawn from `images`
    that hold two or more whole digits (every stroke of each), as the server draws them:
    "not a digit". A digit and a piece of its neighbour are left out: a 1 beside the bar of
    a 4 is often a fair 4."""
    generator = np.random.default_rng(config.seed)
    pairs: list[tuple[FloatArray, int]] = []
    while len(pairs) < count:
        length = int(generator.integers(2, 5))
        drawn, _ = draw_ink_number(images, labels, config, generator, length)
        strokes = list(drawn.strokes)
        pieces = ink_pieces(strokes, drawn.line_width)
        found = candidates(pieces, strokes, canvas=(drawn.width, drawn.height, drawn.line_width))
        mixed = [
            candidate.model_input for candidate in found
            if candidate.model_input is not None
            and holds_whole_digits(pieces[candidate.first : candidate.last + 1],
                                   drawn.digit_strokes)
        ]
        # A few from each number, so that many numbers are seen.
        for chosen in generator.permutation(len(mixed))[:3]:
            pairs.append((mixed[int(chosen)], NOT_DIGIT))
    return finetune.examples(pairs[:count])


def holds_whole_digits(group: Sequence[Piece], digit_strokes: Sequence[Sequence[int]]) -> bool:
    """Whether a group of ink pieces holds two or more digits, every stroke of each (the
    digits' strokes as indices, `InkNumber.digit_strokes`)."""
    held = {index for piece in group for index in piece.strokes}
    digits = [set(indices) for indices in digit_strokes if held & set(indices)]
    return len(digits) > 1 and held == set().union(*digits)


def canvas_rejection(model: Any, inputs: NDArray[np.float32], threshold: float) -> float:
    """Share of canvas pictures of digits that the model rejects as not a digit."""
    decided = finetune.decided(finetune.probabilities(model, inputs), threshold)
    return float(np.mean(decided == NOT_DIGIT))


def font_figures(rejected: NDArray[np.bool_], names: list[str]) -> dict[str, Any]:
    """metrics.json's `nondigit_rejection.fonts`: font letters and symbols rejected."""
    if not names:
        return {"pictures": 0}
    characters = np.asarray([name.rsplit(":", 1)[1] for name in names])
    faces = np.asarray([name.rsplit(":", 1)[0] for name in names])
    return {
        "pictures": len(names),
        "rejected": float(rejected.mean()),
        "fonts": len(set(faces.tolist())),
        "by_character": {str(character): float(rejected[characters == character].mean())
                         for character in sorted(set(characters.tolist()))},
        "by_font": {str(face): float(rejected[faces == face].mean())
                    for face in sorted(set(faces.tolist()))},
    }


def new_metrics(base: dict[str, Any]) -> dict[str, Any]:
    """The base model's metrics with a new version; the caller fills in what it measured."""
    metrics = copy.deepcopy(base)
    metrics["version"] = datetime.datetime.now(datetime.UTC).strftime("%Y.%m.%d-%H%M")
    return metrics


def describe(
    figures: finetune.Measured, canvas: float,
    before: finetune.Measured | None = None, canvas_before: float | None = None,
) -> str:
    """The figures in one line, with the ink digits and canvas false rejection."""
    ink = figures.held_out["all"]
    earlier = "" if before is None else f"{before.held_out['all']:.2%} -> "
    canvas_earlier = "" if canvas_before is None else f"{canvas_before:.2%} -> "
    return (f"ink test digits {earlier}{ink:.2%}, canvas false rejection "
            f"{canvas_earlier}{canvas:.2%}; " + finetune.describe_figures(figures, before))


if __name__ == "__main__":
    sys.exit(main())
