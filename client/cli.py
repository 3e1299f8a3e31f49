"""The command line: `python -m client predict FILE...`, `stream FILE`, `correct FILE LABEL`.

    python -m client predict digit.png other.jpg       # one JSON line per file, over /ws
    python -m client predict --http digit.png          # the same over POST /api/predict
    python -m client stream client/examples/seven.json # replay a drawing, live updates
    python -m client correct client/examples/four.json 4  # "it was a 4": a stored correction

Each answer says its digit, or "not a digit" when the server found ink but no one digit, and
(from a v2 server) the drawing read as a number: `"number": {"text": "42", "confidence": ...}`.

Exit status: 0 when every answer is a prediction; 1 when the server answered an error or an
input file could not be read; 2 for a usage error; 3 when the server could not be reached,
closed the connection, timed out or broke the protocol. Failures print one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from client.errors import DigitsError, ProtocolTimeout, RecordingError, ServerError
from client.http import correct_http, http_url_for, predict_http
from client.messages import Prediction
from client.recording import (
    SEND_INTERVAL_MS,
    Recording,
    ScheduledSend,
    load_recording,
    replay_schedule,
)
from client.session import DEFAULT_TIMEOUT_S, DEFAULT_URL, DigitsClient

EXIT_OK = 0
EXIT_ANSWERED_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    arguments = _parser().parse_args(argv)
    try:
        if arguments.command == "correct":
            return _correct(arguments.file, arguments.label, arguments.url, arguments.timeout)
        if arguments.command == "predict":
            predict = _predict_http if arguments.http else _predict_socket
            return asyncio.run(predict(arguments.files, arguments.url, arguments.timeout))
        return asyncio.run(
            _stream(arguments.recording, arguments.url, arguments.timeout, arguments.speed)
        )
    except (ServerError, RecordingError) as error:
        _report(str(error))
        return EXIT_ANSWERED_ERROR
    except DigitsError as error:
        _report(str(error))
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m client",
        description="Ask a digits server which digit a picture shows.",
        epilog="exit status: 0 every answer a prediction; 1 an error answer or an unreadable "
        "input; 2 a usage error; 3 the server unreachable, gone, silent or off-protocol",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    connection = argparse.ArgumentParser(add_help=False)
    connection.add_argument(
        "--url", default=DEFAULT_URL,
        help=f"the server: its WebSocket URL (default {DEFAULT_URL}) or its own address "
        "(http://127.0.0.1:8000); either works for every command",
    )
    connection.add_argument(
        "--timeout", type=_positive_float, default=DEFAULT_TIMEOUT_S,
        help=f"seconds to wait for the connection and each answer (default {DEFAULT_TIMEOUT_S:g})",
    )
    predict = commands.add_parser(
        "predict", parents=[connection], help="print one JSON line per image file",
        description="Print one JSON line per image file: path, reading (the digit, "
        '"not a digit" or "empty"), digit, confidence, probabilities, empty, not_digit, and '
        "number (the drawing read as a number: text and confidence; null from a v1 server).",
    )
    predict.add_argument("files", nargs="+", metavar="FILE", help="image files (PNG, JPEG, ...)")
    predict.add_argument(
        "--http", action="store_true", help="use POST /api/predict instead of the WebSocket"
    )
    stream = commands.add_parser(
        "stream", parents=[connection], help="replay a recorded drawing over the WebSocket",
        description="Replay a stroke recording as the page would send it while drawing; "
        'print each live update, then the final answer ({"type": "update" | "final", ...}).',
    )
    stream.add_argument("recording", metavar="STROKES.json", help="a stroke recording")
    stream.add_argument(
        "--speed", type=_positive_float, default=1.0,
        help="replay this many times faster than recorded (default 1)",
    )
    correct = commands.add_parser(
        "correct", parents=[connection], help="tell the server the right reading of a drawing",
        description="Send a correction: FILE (a picture, or a stroke recording .json, sent as "
        "ink) shows LABEL (one or more digits, or not_digit). Prints the stored id as JSON.",
    )
    correct.add_argument("file", metavar="FILE", help="a picture or a stroke recording (.json)")
    correct.add_argument("label", metavar="LABEL", help='the right reading: "4", "2026", not_digit')
    return parser


def _correct(path: str, label: str, url: str, timeout: float) -> int:
    """Post one correction of a picture or a recording's ink; print its id."""
    if path.endswith(".json"):
        recording = load_recording(path)
        ink = {
            "width": recording.width,
            "height": recording.height,
            "line_width": recording.line_width,
            "strokes": [[[point.x, point.y] for point in stroke] for stroke in recording.strokes],
        }
        correction_id = correct_http(url, label, ink=ink, timeout=timeout)
    else:
        image = _read(path)
        if image is None:
            return EXIT_ANSWERED_ERROR
        correction_id = correct_http(url, label, image=image, timeout=timeout)
    _print_line({"path": path, "label": label, "id": correction_id})
    return EXIT_OK


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number: {text!r}")
    return value


async def _predict_socket(files: Sequence[str], url: str, timeout: float) -> int:
    """Predict each file over one WebSocket connection."""
    async with DigitsClient.connect(url, timeout=timeout) as client:
        return await _predict_each(files, client.predict)


async def _predict_http(files: Sequence[str], url: str, timeout: float) -> int:
    """Predict each file with one `POST /api/predict` each."""
    base = http_url_for(url)
    return await _predict_each(
        files, lambda image: asyncio.to_thread(predict_http, base, image, timeout)
    )


async def _predict_each(
    files: Sequence[str], ask: Callable[[bytes], Awaitable[Prediction]]
) -> int:
    """Print one JSON line per answered file, one stderr line per refused or unreadable one."""
    status = EXIT_OK
    for path in files:
        image = _read(path)
        if image is None:
            status = EXIT_ANSWERED_ERROR
            continue
        try:
            prediction = await ask(image)
        except ServerError as error:
            _report(f"{path}: the server answered {error.code}: {error.message}")
            status = EXIT_ANSWERED_ERROR
            continue
        _print_line({"path": path, **_answer(prediction)})
    return status


async def _stream(path: str, url: str, timeout: float, speed: float) -> int:
    """Replay a recording in real time, printing every answer as it arrives."""
    recording = load_recording(path)
    async with DigitsClient.connect(url, timeout=timeout) as client:
        # Never faster than the server's rate limit, even if it is tighter than the page's.
        limit = client.hello.max_messages_per_s
        interval_ms = max(SEND_INTERVAL_MS, 1000.0 / limit if limit > 0 else 0.0)
        schedule = replay_schedule(recording, interval_ms)
        final_seq = client.last_seq + len(schedule)
        sender = asyncio.create_task(_send_schedule(client, recording, schedule, speed))
        try:
            await _print_answers(client, sender, final_seq, timeout)
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
    return EXIT_OK


async def _send_schedule(
    client: DigitsClient, recording: Recording, schedule: Sequence[ScheduledSend], speed: float
) -> None:
    """Send each strokes message at its time, measured from the start of the replay."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for send in schedule:
        delay = start + send.at_ms / 1000.0 / speed - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await client.send_strokes(
            send.strokes, recording.width, recording.height, recording.line_width
        )


async def _print_answers(
    client: DigitsClient, sender: asyncio.Task[None], final_seq: int, timeout: float
) -> None:
    """Print updates until the answer to `final_seq`; `timeout` counts from the last send.

    While the drawing goes on, silence is normal (the pen may rest); once the last
    message is out, its answer must come within `timeout`. A `rate_limited` error about a
    message that was not the last only means that live update was dropped.
    """
    loop = asyncio.get_running_loop()
    deadline: float | None = None
    receiving = asyncio.create_task(client.next_answer(None))
    try:
        while True:
            waiting: set[asyncio.Task[Any]] = {receiving}
            if not sender.done():
                waiting.add(sender)
            remaining = None if deadline is None else max(0.0, deadline - loop.time())
            done, _ = await asyncio.wait(
                waiting, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
            if sender.done() and deadline is None:
                sender.result()  # A failed send (a closed connection) ends the replay here.
                deadline = loop.time() + timeout
            if not done:
                raise ProtocolTimeout(
                    f"no answer to the last drawing (seq {final_seq}) within {timeout:g} s"
                )
            if receiving not in done:
                continue
            answer = receiving.result()
            if isinstance(answer, ServerError):
                stale = answer.seq is not None and answer.seq < final_seq
                if not (stale and answer.code == "rate_limited"):
                    raise answer
            elif answer.seq is not None and answer.seq >= final_seq:
                _print_line({"type": "final", **answer.as_json()})
                return
            else:
                _print_line({"type": "update", **answer.as_json()})
            receiving = asyncio.create_task(client.next_answer(None))
    finally:
        receiving.cancel()
        await asyncio.gather(receiving, return_exceptions=True)


def _read(path: str) -> bytes | None:
    """A file's bytes, or None after reporting why it cannot be read."""
    try:
        return Path(path).read_bytes()
    except OSError as error:
        _report(f"cannot read {path}: {error.strerror or error}")
        return None


def _answer(prediction: Prediction) -> dict[str, Any]:
    """What `predict` prints of an answer (the same over the WebSocket and HTTP).

    `reading` says it in words: the digit, "not a digit" when the server found ink but no
    one digit (v2), or "empty". `number` is the drawing read as a number (text and
    confidence), null from a v1 server and for an empty picture.
    """
    number = prediction.number
    return {
        "reading": _reading(prediction),
        "digit": prediction.digit,
        "confidence": prediction.confidence,
        "probabilities": _list(prediction.probabilities),
        "empty": prediction.empty,
        "not_digit": prediction.not_digit,
        "number": None if number is None else {
            "text": number.text, "confidence": number.confidence,
        },
    }


def _reading(prediction: Prediction) -> str:
    """The answer in words."""
    if prediction.empty:
        return "empty"
    if prediction.digit is None:
        return "not a digit"
    return str(prediction.digit)


def _list(values: Sequence[float] | None) -> list[float] | None:
    return None if values is None else list(values)


def _print_line(fields: dict[str, Any]) -> None:
    print(json.dumps(fields), flush=True)


def _report(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
