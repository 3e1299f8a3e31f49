"""Settings from defaults, `DIGITS_*` variables and flags, and the CLI's answers to bad ones."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from model import MODEL_PATH
from server.__main__ import main
from server.config import MIB, Settings
from server.serving import hypercorn_config
from server.workers import settings_per_worker
from tests.conftest import STARTUP_TIMEOUT_S, free_port


def test_defaults() -> None:
    """With no flags or variables: the contract's defaults."""
    settings = Settings.from_sources([], {})
    assert settings == Settings()
    assert settings.bind == "127.0.0.1:8000"
    assert (settings.debounce_ms, settings.max_wait_ms) == (15, 100)
    assert settings.max_message_bytes == MIB
    assert settings.max_pixels == 4096 * 4096
    assert settings.max_stroke_points == 20_000
    assert settings.model_path == MODEL_PATH
    assert settings.model_threads == 1


def test_variables_then_flags() -> None:
    """`DIGITS_*` variables override defaults; flags override variables."""
    environ = {"DIGITS_DEBOUNCE_MS": "40", "DIGITS_MAX_WAIT_MS": "250", "DIGITS_MODEL": "a.keras"}
    settings = Settings.from_sources(["--max-wait-ms", "300", "--bind", "0.0.0.0:9000"], environ)
    assert settings.debounce_ms == 40
    assert settings.max_wait_ms == 300
    assert settings.model_path == Path("a.keras")
    assert (settings.host, settings.port) == ("0.0.0.0", 9000)


def test_every_knob_has_a_flag_and_a_variable() -> None:
    """Each limit can be set both ways, under its own name with its unit."""
    flags = [
        "--max-message-bytes", "1000", "--max-pixels", "2000", "--max-stroke-points", "30",
        "--max-messages-per-s", "40", "--max-connections", "50", "--decode-processes", "1",
        "--model-threads", "0",
    ]
    settings = Settings.from_sources(flags, {"DIGITS_BATCH_WAIT_MS": "0"})
    assert settings.max_message_bytes == 1000
    assert settings.max_pixels == 2000
    assert settings.max_stroke_points == 30
    assert settings.max_messages_per_s == 40
    assert settings.max_connections == 50
    assert settings.decode_processes == 1
    assert settings.batch_wait_ms == 0
    assert settings.model_threads == 0
    assert Settings.from_sources([], {"DIGITS_MODEL_THREADS": "2"}).model_threads == 2


@pytest.mark.parametrize(
    ("argv", "environ"),
    [
        (["--debounce-ms", "soon"], {}),
        (["--debounce-ms", "-1"], {}),
        (["--max-pixels", "0"], {}),
        (["--bind", "8000"], {}),
        ([], {"DIGITS_MAX_WAIT_MS": "later"}),
        (["--no-such-flag"], {}),
    ],
    ids=["not-a-number", "negative", "zero-limit", "no-host", "bad-variable", "unknown-flag"],
)
def test_bad_settings_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], environ: dict[str, str]
) -> None:
    """A bad flag or variable exits with status 2 and a one-line message, no traceback."""
    with pytest.raises(SystemExit) as exited:
        Settings.from_sources(argv, environ)
    assert exited.value.code == 2
    message = capsys.readouterr().err
    assert message.count("\n") == 1 and "error:" in message


def test_missing_model_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """`main` refuses a model path that is not a file, in one line and before serving."""
    assert main(["--model", str(tmp_path / "missing.keras")]) == 2
    message = capsys.readouterr().err
    assert message.count("\n") == 1 and "missing.keras" in message


def test_unreadable_model_exits_1(tmp_path: Path) -> None:
    """A model file that cannot be loaded stops the server with status 1 and says why."""
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a model")
    finished = subprocess.run(
        [sys.executable, "-m", "server", "--bind", f"127.0.0.1:{free_port()}",
         "--model", str(broken), "--database-url", f"sqlite:///{tmp_path}/c.sqlite3"],
        capture_output=True, text=True, timeout=STARTUP_TIMEOUT_S, check=False,
    )
    assert finished.returncode == 1
    assert "cannot load model" in finished.stderr


def test_hypercorn_gets_the_limits() -> None:
    """Hypercorn binds where asked, pings, and buffers frames up to four times the limit."""
    config = hypercorn_config(Settings(bind="127.0.0.1:9999", max_message_bytes=1000))
    assert config.bind == ["127.0.0.1:9999"]
    assert config.websocket_max_message_size == 4000
    assert config.websocket_ping_interval == 20.0
    assert config.read_timeout == 40


def test_hardening_knobs() -> None:
    """Idle timeout, rate-limit close, allowed origins and workers: defaults, flags, variables."""
    defaults = Settings.from_sources([], {})
    assert (defaults.idle_timeout_s, defaults.rate_limit_close_after_s) == (300.0, 5.0)
    assert (defaults.allowed_origins, defaults.origins, defaults.workers) == ("", None, 1)
    flags = [
        "--idle-timeout-s", "1.5", "--allowed-origins", "https://digits.example", "--workers", "3",
    ]
    settings = Settings.from_sources(flags, {"DIGITS_RATE_LIMIT_CLOSE_AFTER_S": "2"})
    assert (settings.idle_timeout_s, settings.rate_limit_close_after_s) == (1.5, 2.0)
    assert settings.origins == frozenset({"https://digits.example:443"})
    assert settings.workers == 3


def test_workers_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    """`--workers 0` is refused in one line, like any other bad limit."""
    with pytest.raises(SystemExit) as exited:
        Settings.from_sources(["--workers", "0"], {})
    assert exited.value.code == 2
    assert "workers must be positive" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("workers", "decode_processes", "each"), [(1, 2, 2), (2, 2, 1), (3, 2, 1), (2, 0, 0), (2, 4, 2)]
)
def test_decode_processes_are_shared_out_among_workers(
    workers: int, decode_processes: int, each: int
) -> None:
    """`--decode-processes` is the total: each worker gets its share, at least one."""
    settings = Settings(workers=workers, decode_processes=decode_processes)
    assert settings_per_worker(settings).decode_processes == each
