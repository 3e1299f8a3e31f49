"""Serve the recogniser: `python -m server [--bind HOST:PORT] [--model PATH] ...` (`--help`).

Every flag also reads from a `DIGITS_*` environment variable (see `server/config.py`).
SIGTERM or SIGINT shut down gracefully: pending snapshots are answered, then sockets close
with 1001. `--workers N` runs N processes on the one port (see `server/workers.py`).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from server.config import Settings
from server.serving import configure_logging, serve_until_stopped
from server.workers import serve_workers


def main(argv: Sequence[str] | None = None) -> int:
    """Parse settings, then serve until a signal; returns the exit status."""
    settings = Settings.from_sources(argv)
    if not settings.model_path.is_file():
        print(f"python -m server: error: no model file at {settings.model_path}", file=sys.stderr)
        return 2
    configure_logging(settings)
    try:
        if settings.workers > 1:
            return serve_workers(settings)
        return asyncio.run(serve_until_stopped(settings))
    except OSError as error:
        print(f"python -m server: error: cannot serve on {settings.bind}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
