"""`python -m train`: see train/train.py."""

from __future__ import annotations

import sys

from train.train import main

sys.exit(main())
