"""`POST /api/corrections`, the export and deletion, against a real server and its store."""

from __future__ import annotations

import base64
import io
import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, PngImagePlugin

from bench.postgres import PostgresCluster
from client.cli import main as client_main
from tests.conftest import TIMEOUT_S, RunningServer

TOKEN = "a-long-random-admin-token-for-tests"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
INK = {
    "width": 440, "height": 440, "line_width": 18,
    "strokes": [[[120, 80], [300, 80], [200, 380]], [[150, 230], [260, 230]]],
}
ANSWER = {"digit": 1, "confidence": 0.61, "probabilities": [0.0] * 10, "empty": False}
# A user agent and a cookie the store must not keep.
TRACE = "TraceableAgent/9.9 (unique-marker-5b1f)"


@pytest.fixture(scope="module")
def admin_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server with an admin token and its own SQLite store."""
    from tests.conftest import start_server

    folder = tmp_path_factory.mktemp("corrections")
    running = start_server(
        folder, "--database-url", f"sqlite:///{folder}/store.sqlite3",
        env={"DIGITS_ADMIN_TOKEN": TOKEN, "DIGITS_MAX_CORRECTIONS_PER_MINUTE": "100000"},
    )
    running.database = folder / "store.sqlite3"  # type: ignore[attr-defined]
    yield running
    running.stop(TIMEOUT_S)


@pytest.fixture
def http(admin_server: RunningServer) -> Iterator[httpx.Client]:
    """A keep-alive client of the admin server."""
    with httpx.Client(base_url=admin_server.http_url, timeout=TIMEOUT_S) as client:
        yield client


def export(client: httpx.Client) -> list[dict[str, Any]]:
    """Every stored correction, from the NDJSON export."""
    response = client.get("/api/corrections/export", headers=ADMIN)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in response.text.splitlines()]


def post(client: httpx.Client, body: Any, **options: Any) -> httpx.Response:
    """POST a correction body (JSON unless `content` is given)."""
    if "content" in options:
        return client.post("/api/corrections", **options)
    return client.post("/api/corrections", json=body, **options)


def png_with_metadata() -> bytes:
    """A PNG of a drawn 7 carrying a text chunk that must not be kept."""
    image = Image.new("RGB", (120, 120), "white")
    image.paste((0, 0, 0), (20, 20, 100, 32))
    image.paste((0, 0, 0), (80, 20, 92, 110))
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "Jane Doe, 12 Secret Street")
    output = io.BytesIO()
    image.save(output, format="PNG", pnginfo=info)
    return output.getvalue()


def jpeg_with_exif() -> bytes:
    """A JPEG with EXIF (a camera and a comment) that must not be kept."""
    image = Image.new("L", (64, 64), 255)
    image.paste(0, (28, 8, 36, 56))
    exif = Image.Exif()
    exif[0x010F] = "SpyCam Inc."  # Make
    exif[0x9286] = "GPS 51.5,-0.12"  # UserComment
    output = io.BytesIO()
    image.save(output, format="JPEG", exif=exif)
    return output.getvalue()


def test_an_ink_correction_is_stored_and_exported_once(http: httpx.Client) -> None:
    """201 with an id; the export holds that correction once, with the documented fields."""
    response = post(http, {"label": "7", "ink": INK, "answer": ANSWER, "model_version": "v9"})
    assert response.status_code == 201, response.text
    correction_id = response.json()["id"]
    lines = [line for line in export(http) if line["id"] == correction_id]
    assert len(lines) == 1
    line = lines[0]
    assert set(line) == {"id", "label", "created_at", "ink", "answer", "model_version"}
    assert line["label"] == "7" and line["answer"] == ANSWER and line["model_version"] == "v9"
    assert line["ink"]["width"] == 440 and line["ink"]["line_width"] == 18
    assert line["ink"]["strokes"] == INK["strokes"]


@pytest.mark.parametrize("label", ["0", "9", "2026", "1" * 32, "not_digit"])
def test_every_kind_of_label_is_accepted(http: httpx.Client, label: str) -> None:
    """A digit, a number up to 32 digits, and "not_digit" are right readings."""
    response = post(http, {"label": label, "ink": INK})
    assert response.status_code == 201, response.text
    assert any(line["id"] == response.json()["id"] and line["label"] == label
               for line in export(http))


@pytest.mark.parametrize("picture", [png_with_metadata, jpeg_with_exif])
def test_pictures_are_stored_without_their_metadata(
    http: httpx.Client, picture: Callable[[], bytes]
) -> None:
    """An uploaded picture is kept as a fresh PNG of the same pixels, and nothing else."""
    data = picture()
    text = "data:image/png;base64," + base64.b64encode(data).decode()
    response = post(http, {"label": "7", "image": text})
    assert response.status_code == 201, response.text
    line = next(line for line in export(http) if line["id"] == response.json()["id"])
    prefix = "data:image/png;base64,"
    assert line["image"].startswith(prefix) and "ink" not in line
    stored = base64.b64decode(line["image"][len(prefix):])
    kept = Image.open(io.BytesIO(stored))
    assert kept.format == "PNG" and kept.size == Image.open(io.BytesIO(data)).size
    assert not kept.info.get("Author") and not kept.getexif()
    assert b"Secret Street" not in stored and b"SpyCam" not in stored


BAD_BODIES: list[tuple[str, Any, int, str]] = [
    ("label with a letter", {"label": "12a", "ink": INK}, 400, "bad_request"),
    ("empty label", {"label": "", "ink": INK}, 400, "bad_request"),
    ("10 kB of digits", {"label": "7" * 10_240, "ink": INK}, 400, "bad_request"),
    ("label as a number", {"label": 4, "ink": INK}, 400, "bad_request"),
    ("no label", {"ink": INK}, 400, "bad_request"),
    ("no drawing", {"label": "4"}, 400, "bad_request"),
    ("ink and image", {"label": "4", "ink": INK, "image": "aGk="}, 400, "bad_request"),
    ("ink not an object", {"label": "4", "ink": [1, 2]}, 400, "bad_request"),
    ("ink without points", {"label": "4", "ink": {**INK, "strokes": [[]]}}, 400, "bad_request"),
    ("ink with a bad point", {"label": "4", "ink": {**INK, "strokes": [[[1, "x"]]]}},
     400, "bad_request"),
    ("ink with a zero width", {"label": "4", "ink": {**INK, "width": 0}}, 400, "bad_request"),
    ("ink over the point limit",
     {"label": "4", "ink": {**INK, "strokes": [[[1.0, 2.0]] * 20_001]}}, 413, "too_large"),
    ("image not base64", {"label": "4", "image": "%%%"}, 400, "bad_image"),
    ("image not a picture", {"label": "4", "image": base64.b64encode(b"hello" * 50).decode()},
     400, "bad_image"),
    ("image as a number", {"label": "4", "image": 12}, 400, "bad_request"),
    ("image over the byte limit",
     {"label": "4", "image": base64.b64encode(b"\x89PNG" + b"\0" * (1024 * 1024)).decode()},
     413, "too_large"),
    ("answer not an object", {"label": "4", "ink": INK, "answer": "9"}, 400, "bad_request"),
    ("answer too large", {"label": "4", "ink": INK, "answer": {"x": "y" * 5000}},
     413, "too_large"),
    ("model version too long", {"label": "4", "ink": INK, "model_version": "v" * 65},
     400, "bad_request"),
    ("body not an object", ["label", "4"], 400, "bad_request"),
]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [(body, status, code) for _, body, status, code in BAD_BODIES],
    ids=[name for name, _, _, _ in BAD_BODIES],
)
def test_bad_corrections_get_their_status_and_nothing_is_stored(
    http: httpx.Client, body: Any, status: int, code: str
) -> None:
    """Each bad body gets its documented status and code, and the store is unchanged."""
    before = export(http)
    response = post(http, body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert export(http) == before
    # The same keep-alive connection still carries a good correction.
    assert post(http, {"label": "3", "ink": INK}).status_code == 201


def test_a_large_canvas_within_the_pixel_limit_is_fine(http: httpx.Client) -> None:
    """A 4096x4096 canvas is within the default pixel limit: stored."""
    response = post(http, {"label": "4", "ink": {**INK, "width": 4096, "height": 4096}})
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("content", "content_type", "status", "code"),
    [
        (b'{"label": "4", "ink": ', "application/json", 400, "bad_request"),
        (b"\xff\xfe\x00garbage", "application/json", 400, "bad_request"),
        (b"label=4", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        (png_with_metadata(), "image/png", 415, "unsupported_media_type"),
    ],
    ids=["truncated JSON", "not UTF-8", "a form", "a bare picture"],
)
def test_malformed_bodies_are_refused(
    http: httpx.Client, content: bytes, content_type: str, status: int, code: str
) -> None:
    """Malformed JSON or another media type: a clear error, nothing stored."""
    before = export(http)
    response = post(http, None, content=content, headers={"Content-Type": content_type})
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert export(http) == before


def test_an_oversized_body_is_refused(http: httpx.Client) -> None:
    """A body over the upload limit gets 413 before it is read, and nothing is stored."""
    before = export(http)
    body = b'{"label": "4", "image": "' + b"A" * (3 * 1024 * 1024) + b'"}'
    response = post(http, None, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert export(http) == before


def test_nothing_that_identifies_a_person_is_stored(
    http: httpx.Client, admin_server: RunningServer
) -> None:
    """Neither the address, the user agent nor a cookie reaches the database file."""
    headers = {"User-Agent": TRACE, "Cookie": f"session={TRACE}", "X-Forwarded-For": "203.0.113.7"}
    response = post(http, {"label": "5", "ink": INK}, headers=headers)
    assert response.status_code == 201
    database: Path = admin_server.database  # type: ignore[attr-defined]
    # Checkpoint the WAL into the main file, then read every byte the store keeps.
    with sqlite3.connect(database) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    kept = b"".join(path.read_bytes() for path in database.parent.glob(database.name + "*"))
    assert response.json()["id"].encode() in kept
    for trace in (TRACE.encode(), b"unique-marker-5b1f", b"203.0.113.7", b"127.0.0.1"):
        assert trace not in kept


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer",
        "Bearer wrong",
        f"Bearer {TOKEN[:-1]}",
        f"Bearer {TOKEN}x",
        f"Basic {TOKEN}",
        TOKEN,
    ],
    ids=["missing", "no token", "wrong", "a prefix", "longer", "basic", "bare"],
)
def test_export_and_delete_need_the_token(
    http: httpx.Client, authorization: str | None
) -> None:
    """Without exactly the admin token, export and delete answer 401 and delete nothing."""
    correction_id = post(http, {"label": "2", "ink": INK}).json()["id"]
    headers = {} if authorization is None else {"Authorization": authorization}
    response = http.get("/api/corrections/export", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert http.delete(f"/api/corrections/{correction_id}", headers=headers).status_code == 401
    assert any(line["id"] == correction_id for line in export(http))


def test_probing_the_token_a_character_at_a_time_gets_nowhere(http: httpx.Client) -> None:
    """Tokens sharing ever longer prefixes with the real one are all refused alike."""
    for length in range(len(TOKEN)):
        guess = TOKEN[:length] + ("x" if TOKEN[length] != "x" else "y")
        response = http.get("/api/corrections/export", headers={"Authorization": f"Bearer {guess}"})
        assert response.status_code == 401


def test_delete_removes_one_correction(http: httpx.Client) -> None:
    """DELETE with the token: 204, then the id is gone; a second time or an unknown id: 404."""
    keep = post(http, {"label": "8", "ink": INK}).json()["id"]
    remove = post(http, {"label": "9", "ink": INK}).json()["id"]
    assert http.delete(f"/api/corrections/{remove}", headers=ADMIN).status_code == 204
    ids = [line["id"] for line in export(http)]
    assert remove not in ids and keep in ids
    response = http.delete(f"/api/corrections/{remove}", headers=ADMIN)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_without_an_admin_token_the_routes_do_not_exist(server: RunningServer) -> None:
    """A server with no token answers 404 to export and delete, even with a token sent."""
    with httpx.Client(base_url=server.http_url, timeout=TIMEOUT_S) as client:
        assert post(client, {"label": "1", "ink": INK}).status_code == 201
        for headers in ({}, ADMIN, {"Authorization": "Bearer"}):
            assert client.get("/api/corrections/export", headers=headers).status_code == 404
            deleted = client.delete("/api/corrections/anything", headers=headers)
            assert deleted.status_code == 404


def test_metrics_count_stored_and_refused_corrections(http: httpx.Client) -> None:
    """`digits_corrections_stored_total` and `..._refused_total{code}` move with each answer."""

    def counts() -> tuple[float, float]:
        text = http.get("/metrics").text
        return _metric(text, "digits_corrections_stored_total"), _metric(
            text, 'digits_corrections_refused_total{code="bad_request"}'
        )

    stored, refused = counts()
    assert post(http, {"label": "1", "ink": INK}).status_code == 201
    assert post(http, {"label": "x", "ink": INK}).status_code == 400
    assert counts() == (stored + 1, refused + 1)


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def test_too_many_corrections_from_one_client_are_refused(
    server_factory: Callable[..., RunningServer],
) -> None:
    """Past `--max-corrections-per-minute`: 429 with Retry-After, and nothing more stored."""
    running = server_factory("--max-corrections-per-minute", "3", "--admin-token", TOKEN)
    with httpx.Client(base_url=running.http_url, timeout=TIMEOUT_S) as client:
        statuses = [post(client, {"label": "4", "ink": INK}).status_code for _ in range(5)]
        assert statuses == [201, 201, 201, 429, 429]
        refused = post(client, {"label": "4", "ink": INK})
        assert refused.json()["error"]["code"] == "rate_limited"
        assert int(refused.headers["Retry-After"]) >= 1
        assert len(export(client)) == 3
        # Predictions are not corrections: they stay available.
        assert client.get("/api/model").status_code == 200


def test_the_client_sends_corrections_of_ink_and_pictures(
    admin_server: RunningServer, http: httpx.Client, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`python -m client correct FILE LABEL` posts a recording's ink or a picture."""
    picture = tmp_path / "seven.png"
    picture.write_bytes(png_with_metadata())
    url = admin_server.http_url
    assert client_main(["correct", "--url", url, "client/examples/four.json", "4"]) == 0
    assert client_main(["correct", "--url", url, str(picture), "not_digit"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    stored = {line["id"]: line for line in export(http)}
    assert stored[printed[0]["id"]]["label"] == "4"
    assert stored[printed[0]["id"]]["ink"]["width"] == 280
    assert stored[printed[1]["id"]]["label"] == "not_digit" and "image" in stored[printed[1]["id"]]
    assert client_main(["correct", "--url", url, "client/examples/four.json", "4x"]) == 1
    assert "bad_request" in capsys.readouterr().err


def test_postgresql_stores_corrections_through_the_server(
    server_factory: Callable[..., RunningServer], postgres: PostgresCluster
) -> None:
    """The same server code on PostgreSQL: stored, exported, deleted."""
    url = postgres.create_database("http_route")
    running = server_factory("--database-url", url, "--admin-token", TOKEN)
    with httpx.Client(base_url=running.http_url, timeout=TIMEOUT_S) as client:
        first = post(client, {"label": "2026", "ink": INK, "answer": ANSWER}).json()["id"]
        data = "data:image/png;base64," + base64.b64encode(png_with_metadata()).decode()
        second = post(client, {"label": "7", "image": data}).json()["id"]
        assert [line["id"] for line in export(client)] == [first, second]
        assert client.delete(f"/api/corrections/{first}", headers=ADMIN).status_code == 204
        assert [line["id"] for line in export(client)] == [second]


def test_behind_a_proxy_each_forwarded_client_has_its_own_allowance(
    server_factory: Callable[..., RunningServer],
) -> None:
    """With `--proxy-hops 1` the limit counts X-Forwarded-For's client; without, it is ignored."""
    behind = server_factory("--max-corrections-per-minute", "2", "--proxy-hops", "1")
    direct = server_factory("--max-corrections-per-minute", "2")

    def statuses(running: RunningServer, forwarded: str) -> list[int]:
        with httpx.Client(base_url=running.http_url, timeout=TIMEOUT_S) as client:
            headers = {"X-Forwarded-For": forwarded}
            return [post(client, {"label": "1", "ink": INK}, headers=headers).status_code
                    for _ in range(3)]

    assert statuses(behind, "198.51.100.1") == [201, 201, 429]
    assert statuses(behind, "198.51.100.2") == [201, 201, 429]
    # A client cannot dodge the limit by sending the header itself.
    assert statuses(direct, "198.51.100.1") == [201, 201, 429]
    assert statuses(direct, "198.51.100.2") == [429, 429, 429]


def test_a_retried_correction_with_its_idempotency_key_is_stored_once(
    http: httpx.Client,
) -> None:
    """The same Idempotency-Key twice: 201 with the same id both times, one stored row."""
    headers = {"Idempotency-Key": "page-3f9a1c-0001"}
    first = post(http, {"label": "6", "ink": INK}, headers=headers)
    again = post(http, {"label": "6", "ink": INK}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert [line["id"] for line in export(http)].count(first.json()["id"]) == 1
    other = post(http, {"label": "6", "ink": INK}, headers={"Idempotency-Key": "page-3f9a1c-0002"})
    assert other.json()["id"] != first.json()["id"]


@pytest.mark.parametrize("key", ["", "has space", "k" * 65, "semi;colon", "ünï"])
def test_a_malformed_idempotency_key_is_refused(http: httpx.Client, key: str) -> None:
    """A key that is not 1-64 letters, digits, - or _ gets 400, and nothing is stored."""
    before = export(http)
    response = post(
        http, None, content=json.dumps({"label": "6", "ink": INK}).encode(),
        headers={"Content-Type": "application/json", "Idempotency-Key": key.encode()},
    )
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["error"]["message"]
    assert export(http) == before


def test_a_database_that_goes_away_is_a_503_and_its_return_is_noticed(
    server_factory: Callable[..., RunningServer],
) -> None:
    """PostgreSQL stopped: 503 `unavailable` with Retry-After, predictions go on; back: 201."""
    cluster = PostgresCluster().start()
    try:
        running = server_factory("--database-url", cluster.url, "--admin-token", TOKEN)
        with httpx.Client(base_url=running.http_url, timeout=TIMEOUT_S) as client:
            stored = post(client, {"label": "1", "ink": INK}).json()["id"]
            cluster.stop_server()
            refused = post(client, {"label": "2", "ink": INK})
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["code"] == "unavailable"
            assert int(refused.headers["Retry-After"]) >= 1
            assert client.get("/healthz").status_code == 200
            assert client.get("/readyz").status_code == 200
            cluster.start_server()
            again = post(client, {"label": "3", "ink": INK})
            assert again.status_code == 201, again.text
            assert [line["label"] for line in export(client)] == ["1", "3"]
            assert export(client)[0]["id"] == stored
    finally:
        cluster.stop()
