"""Every knob of the server in one frozen dataclass, read from `DIGITS_*` variables and flags.

Each field becomes a command-line flag (`max_wait_ms` -> `--max-wait-ms`) and an environment
variable (`DIGITS_MAX_WAIT_MS`); a flag overrides the variable, which overrides the default.
`model_path` is the one exception to the naming rule: `--model` and `DIGITS_MODEL`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from PIL import Image

from corrections.store import DEFAULT_DATABASE_URL, engine_url
from model import MODEL_PATH
from server.origins import parse_origins

ROOT = Path(__file__).resolve().parent.parent
WEB_DIR = ROOT / "web"
ENV_PREFIX = "DIGITS_"
MIB = 1024 * 1024
# Knobs for which zero makes sense: no debounce, no waiting to fill a batch, TensorFlow's own
# threads, decoding in a thread of the server process rather than in processes of its own.
ZERO_ALLOWED = frozenset(
    {"debounce_ms", "batch_wait_ms", "model_threads", "decode_processes", "proxy_hops"}
)


def _knob(help_text: str, *, name: str | None = None) -> dict[str, Any]:
    """Field metadata: the help line, and a flag/variable name when it differs from the field."""
    return {"help": help_text, "name": name}


class _Parser(argparse.ArgumentParser):
    """argparse, answering a bad value with one line rather than the whole usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


@dataclass(frozen=True)
class Settings:
    """Configuration of one server process; units are in the names."""

    bind: str = field(default="127.0.0.1:8000", metadata=_knob("HOST:PORT to listen on"))
    model_path: Path = field(
        default=MODEL_PATH, metadata=_knob("trained model file (.keras)", name="model")
    )
    web_dir: Path = field(default=WEB_DIR, metadata=_knob("folder of the page's static files"))
    debounce_ms: int = field(
        default=15, metadata=_knob("wait this long after a snapshot for a newer one")
    )
    max_wait_ms: int = field(
        default=100, metadata=_knob("answer at least this often while snapshots keep coming")
    )
    max_message_bytes: int = field(
        default=MIB, metadata=_knob("largest WebSocket frame or uploaded picture, in bytes")
    )
    max_pixels: int = field(
        default=4096 * 4096, metadata=_knob("largest picture, in pixels (width x height)")
    )
    max_stroke_points: int = field(
        default=20_000, metadata=_knob("most points in one strokes message")
    )
    max_messages_per_s: int = field(
        default=200, metadata=_knob("messages one connection may send per second")
    )
    max_cost_ms_per_s: float = field(
        default=100.0,
        metadata=_knob(
            "estimated milliseconds of CPU work one connection may ask for a second (bytes"
            " parsed, pixels decoded, points drawn); more waits, latest wins"
        ),
    )
    max_waiting_uploads: int = field(
        default=64,
        metadata=_knob("HTTP uploads admitted at once per worker; more get 503 overloaded"),
    )
    max_connections: int = field(
        default=1000,
        metadata=_knob("open WebSocket connections per worker; more are closed with 1013"),
    )
    max_queued_errors: int = field(
        default=16, metadata=_knob("error messages kept for a client that does not read")
    )
    max_batch_size: int = field(default=64, metadata=_knob("most pictures in one model call"))
    batch_wait_ms: float = field(
        default=1.0, metadata=_knob("longest wait for more pictures to fill a model call")
    )
    model_threads: int = field(
        default=1,
        metadata=_knob(
            "threads one model call may use; 0: TensorFlow's own choice, one per core (which"
            " costs a call of a few pictures twice the CPU, its threads spinning)"
        ),
    )
    decode_processes: int = field(
        default=2,
        metadata=_knob(
            "processes that decode and preprocess pictures (one per core), shared out among"
            " the workers; 0: one thread of each server process"
        ),
    )
    ping_interval_s: float = field(
        default=20.0, metadata=_knob("WebSocket ping period, to notice vanished clients")
    )
    ping_timeout_s: float = field(
        default=20.0, metadata=_knob("drop a connection silent this long after a ping")
    )
    shutdown_grace_s: float = field(
        default=5.0, metadata=_knob("on SIGTERM, time to answer pending snapshots")
    )
    idle_timeout_s: float = field(
        default=300.0,
        metadata=_knob("close a connection that sends nothing this long, with code 1000"),
    )
    rate_limit_close_after_s: float = field(
        default=5.0,
        metadata=_knob("close a connection over its message rate this long, with code 1008"),
    )
    allowed_origins: str = field(
        default="",
        metadata=_knob(
            "comma-separated origins whose pages may open /ws, or * for any;"
            " empty: the page's own origin and localhost"
        ),
    )
    workers: int = field(
        default=1, metadata=_knob("server processes sharing the port, each with its own model")
    )
    database_url: str = field(
        default=DEFAULT_DATABASE_URL,
        metadata=_knob(
            "where corrections are stored: sqlite:///PATH (created on first use) or"
            " postgresql://USER:PASSWORD@HOST/NAME, shared by every worker and host"
        ),
    )
    admin_token: str = field(
        default="",
        metadata=_knob(
            "bearer token for exporting and deleting corrections (prefer the variable: a flag"
            " shows in ps); empty: those routes do not exist"
        ),
    )
    max_corrections_per_minute: int = field(
        default=30,
        metadata=_knob(
            "corrections one client address may send a minute to each worker; more get 429"
        ),
    )
    proxy_hops: int = field(
        default=0,
        metadata=_knob(
            "trusted reverse proxies in front (1 behind the shipped nginx): the client's"
            " address is then read from X-Forwarded-For; 0: the connection's own address"
        ),
    )

    def __post_init__(self) -> None:
        host, _, port = self.bind.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"bind must be HOST:PORT, got {self.bind!r}")
        for knob in dataclasses.fields(self):
            value = getattr(self, knob.name)
            if not isinstance(value, int | float):
                continue
            if knob.name in ZERO_ALLOWED and value < 0:
                raise ValueError(f"{knob.name} must not be negative, got {value}")
            if knob.name not in ZERO_ALLOWED and value <= 0:
                raise ValueError(f"{knob.name} must be positive, got {value}")
        if self.max_batch_size > 1024:
            raise ValueError(f"max_batch_size must be at most 1024, got {self.max_batch_size}")
        if Image.MAX_IMAGE_PIXELS is not None and self.max_pixels > Image.MAX_IMAGE_PIXELS:
            # Pillow refuses such pictures itself, so a larger limit would be a false promise.
            raise ValueError(f"max_pixels must be at most {Image.MAX_IMAGE_PIXELS}")
        parse_origins(self.allowed_origins)
        engine_url(self.database_url)

    @property
    def origins(self) -> frozenset[str] | None:
        """The allowed origins, normalised; None for the default policy (own origin, localhost)."""
        return parse_origins(self.allowed_origins)

    @property
    def host(self) -> str:
        """The host part of `bind`."""
        return self.bind.rpartition(":")[0]

    @property
    def port(self) -> int:
        """The port part of `bind`."""
        return int(self.bind.rpartition(":")[2])

    @classmethod
    def from_sources(
        cls, argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
    ) -> Settings:
        """Settings from defaults, then `DIGITS_*` variables, then flags.

        Raises SystemExit (via argparse) with a one-line message on a bad value.
        """
        environ = os.environ if environ is None else environ
        parser = _Parser(
            prog="python -m server", description="Serve the digits recogniser."
        )
        types = typing.get_type_hints(cls)
        defaults: dict[str, Any] = {}
        for knob in dataclasses.fields(cls):
            name = knob.metadata["name"] or knob.name
            convert = types[knob.name]
            variable = ENV_PREFIX + name.upper()
            shown = "empty" if knob.default == "" else knob.default
            if variable in environ:
                try:
                    defaults[knob.name] = convert(environ[variable])
                except ValueError:
                    value = environ[variable]
                    parser.error(f"{variable}: not a valid {convert.__name__}: {value!r}")
            parser.add_argument(
                "--" + name.replace("_", "-"),
                dest=knob.name,
                type=convert,
                metavar=convert.__name__.upper(),
                help=f"{knob.metadata['help']} (env {variable}, default {shown})",
            )
        parser.set_defaults(**defaults)
        arguments = vars(parser.parse_args(argv))
        chosen = {key: value for key, value in arguments.items() if value is not None}
        try:
            return cls(**chosen)
        except ValueError as error:
            parser.error(str(error))
