"""The core shared by `server/` and `train/`: the CNN, preprocessing and inference."""

from __future__ import annotations

from pathlib import Path

MODEL_DIR = Path(__file__).resolve().parent
MODEL_PATH = MODEL_DIR / "digits.keras"
METRICS_PATH = MODEL_DIR / "metrics.json"
