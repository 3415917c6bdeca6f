"""POST /events/canvas on a real uvicorn server (127.0.0.1, free port, background thread),
driven with httpx: deny by default, shared secret and JWT, limits on size, nesting and
strings, both envelope formats, and what lands in the spool."""

from __future__ import annotations

import base64
import json
import logging
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from tests.web.live_server import LiveServer

from edsight.config import Settings
from edsight.ingest._events_spool import split_lines
from edsight.ingest.events import default_spool_dir, ingest_events
from edsight.store.warehouse import Warehouse
from edsight.web.events import EventsConfig, create_events_app

DATA = Path(__file__).parents[1] / "data" / "events"
SECRET = "edsight-test-secret-" + "k" * 48
MAX_BYTES = 64 * 1024
MAX_STRING = 4096
NOT_ENABLED = "live events are not enabled on this server"


@contextmanager
def _serve(home: Path, secret: str | None, **limits: Any) -> Iterator[tuple[LiveServer, Settings]]:
    settings = Settings(home=home)
    config = EventsConfig(secret=secret, max_bytes=MAX_BYTES, max_string=MAX_STRING, **limits)
    with LiveServer(create_events_app(settings, config)) as server:
        yield server, settings


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Settings]]:
    with _serve(tmp_path_factory.mktemp("secured"), SECRET) as served:
        yield served


@pytest.fixture(scope="module")
def unconfigured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Settings]]:
    with _serve(tmp_path_factory.mktemp("open"), None) as served:
        yield served


@pytest.fixture
def server(secured: tuple[LiveServer, Settings]) -> LiveServer:
    """The secured server, with an empty spool."""
    live, settings = secured
    folder = default_spool_dir(settings)
    if folder.is_dir():
        for path in folder.rglob("*.jsonl"):
            path.unlink()
    return live


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as c:
        yield c


def spool_records(settings: Settings) -> list[dict[str, Any]]:
    folder = default_spool_dir(settings)
    out = []
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        lines, torn = split_lines(path.read_bytes())
        assert not torn
        out += [json.loads(line) for _, line in lines]
    return out


def fixture_bytes(name: str) -> bytes:
    return (DATA / name).read_bytes()


def canvas_event(n: int = 0) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(fixture_bytes("canvas_events.json"))[0]
    event["metadata"]["request_id"] = f"req-{n}"
    return event


def post(
    client: httpx.Client,
    server: LiveServer,
    body: bytes | object,
    *,
    token: str | None = SECRET,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", **(headers or {})}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    return client.post(server.url + "/events/canvas", content=content, headers=sent)


def token(**claims: Any) -> str:
    now = int(time.time())
    payload = {"iat": now, "exp": now + 300, "iss": "canvas-relay", **claims}
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, SECRET, algorithm="HS256")


def assert_refused(response: httpx.Response, status: int, detail: str) -> None:
    assert response.status_code == status, response.text
    assert response.json() == {"detail": detail}
    assert "Traceback" not in response.text


# -- authentication ----------------------------------------------------------------------------


def test_without_a_configured_secret_everything_is_refused(
    unconfigured: tuple[LiveServer, Settings], client: httpx.Client
) -> None:
    live, settings = unconfigured
    for credentials in (None, SECRET, "anything"):
        assert_refused(post(client, live, canvas_event(), token=credentials), 403, NOT_ENABLED)
    assert spool_records(settings) == []


def test_a_short_secret_counts_as_no_secret(tmp_path: Path, client: httpx.Client) -> None:
    with _serve(tmp_path, "too-short") as (live, _):
        assert_refused(post(client, live, canvas_event(), token="too-short"), 403, NOT_ENABLED)


def test_credentials_are_required_and_checked(
    server: LiveServer, secured: tuple[LiveServer, Settings], client: httpx.Client
) -> None:
    missing = post(client, server, canvas_event(), token=None)
    assert_refused(missing, 401, "missing credentials")
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert_refused(post(client, server, canvas_event(), token=SECRET + "x"), 401, "invalid credentials")
    assert_refused(post(client, server, canvas_event(), token=SECRET[:-1]), 401, "invalid credentials")
    basic = post(client, server, canvas_event(), token=None, headers={"Authorization": "Basic " + SECRET})
    assert_refused(basic, 401, "missing credentials")
    assert spool_records(secured[1]) == []
    assert post(client, server, canvas_event(1)).status_code == 202
    header = post(client, server, canvas_event(2), token=None, headers={"X-Edsight-Events-Secret": SECRET})
    assert header.status_code == 202
    assert len(spool_records(secured[1])) == 2


def _unsigned(payload: dict[str, Any]) -> str:
    def b64(part: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(payload)}."


def test_jwt_signed_with_the_secret(server: LiveServer, client: httpx.Client) -> None:
    now = int(time.time())
    assert post(client, server, canvas_event(1), token=token()).status_code == 202
    cases = {
        "token expired": token(iat=now - 7200, exp=now - 3600),
        "token lifetime too long": token(exp=now + 86400),
        "invalid credentials": token(exp=None),  # no exp
    }
    for detail, bad in cases.items():
        assert_refused(post(client, server, canvas_event(), token=bad), 401, detail)
    forged = {
        "alg none": _unsigned({"iat": now, "exp": now + 300}),
        "other key": jwt.encode({"iat": now, "exp": now + 300}, "k" * 40, algorithm="HS256"),
        "HS512": jwt.encode({"iat": now, "exp": now + 300}, SECRET, algorithm="HS512"),
        "not a jwt": "a.b.c",
    }
    for name, bad in forged.items():
        response = post(client, server, canvas_event(), token=bad)
        assert (name, response.status_code, response.json()) == (name, 401, {"detail": "invalid credentials"})


# -- payload limits and hostile JSON --------------------------------------------------------------


def test_bodies_past_the_size_limit_are_refused_while_reading(
    server: LiveServer, secured: tuple[LiveServer, Settings], client: httpx.Client
) -> None:
    too_big = b'{"metadata": {"event_name": "logged_in", "pad": "' + b"x" * MAX_BYTES + b'"}}'
    assert_refused(post(client, server, too_big), 413, f"body larger than {MAX_BYTES} bytes")

    def chunks() -> Iterator[bytes]:  # no Content-Length: only counting while reading catches it
        yield b'{"metadata": {"event_name": "logged_in", "pad": "'
        for _ in range(3):
            yield b"x" * (MAX_BYTES // 2)
        yield b'"}}'

    streamed = client.post(
        server.url + "/events/canvas",
        content=chunks(),
        headers={"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"},
    )
    assert_refused(streamed, 413, f"body larger than {MAX_BYTES} bytes")
    assert spool_records(secured[1]) == []


HOSTILE: dict[str, tuple[bytes, str]] = {
    "deep nesting": (b"[" * 30_000 + b"]" * 30_000, "JSON nested too deeply"),
    "nesting past the limit": (
        b'{"metadata": {"event_name": "logged_in", "x": ' + b"[" * 40 + b"]" * 40 + b"}}",
        "JSON nested deeper than 32 levels",
    ),
    "huge string": (
        b'{"metadata": {"event_name": "logged_in", "x": "' + b"y" * (MAX_STRING + 1) + b'"}}',
        f"a string is longer than {MAX_STRING} characters",
    ),
    "huge key": (b'{"' + b"k" * (MAX_STRING + 1) + b'": 1}', f"a key is longer than {MAX_STRING} characters"),
    "huge number": (b'{"n": ' + b"9" * 5000 + b"}", "body is not valid JSON"),
    "NaN": (b'{"metadata": {"event_name": "logged_in", "score": NaN}}', "body is not valid JSON"),
    "truncated": (b'{"metadata": {"event_name": "logg', "body is not valid JSON"),
    "not UTF-8": (b'{"metadata": {"event_name": "logged_in", "x": "\xff\xfe"}}', "body is not UTF-8 text"),
    "Latin-1": ('{"metadata": {"event_name": "caf\u00e9"}}'.encode("latin-1"), "body is not UTF-8 text"),
    "empty": (b"", "body is not valid JSON"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_json_gets_a_short_400_and_nothing_is_spooled(
    case: str, server: LiveServer, secured: tuple[LiveServer, Settings], client: httpx.Client
) -> None:
    body, detail = HOSTILE[case]
    assert_refused(post(client, server, body), 400, detail)
    assert spool_records(secured[1]) == []


WRONG_SHAPES: dict[str, tuple[object, str]] = {
    "a string": ("hello", "expected a Canvas live event"),
    "a number": (5, "expected a Canvas live event"),
    "empty array": ([], "empty array: expected a Canvas live event"),
    "array of numbers": ([1, 2], "item 1: expected a Canvas live event"),
    "metadata not an object": ({"metadata": "x", "body": {}}, "metadata must be an object"),
    "event_name a number": ({"metadata": {"event_name": 7}, "body": {}}, "metadata.event_name must be"),
    "body a list": ({"metadata": {"event_name": "logged_in"}, "body": [1]}, "body must be an object"),
    "data not an array": ({"sensor": "s", "data": {"a": 1}}, "data must be a non-empty array"),
    "caliper event a string": ({"data": ["x"]}, "data[0]: a Caliper event must be an object"),
    "caliper type missing": ({"data": [{"action": "LoggedIn"}]}, "data[0]: type must be a non-empty string"),
    "caliper actor a list": (
        {"data": [{"type": "SessionEvent", "action": "LoggedIn", "actor": []}]},
        "data[0]: actor must be an object",
    ),
    "sendTime a number": (
        {"sendTime": 5, "data": [{"type": "A", "action": "B"}]},
        "sendTime must be a string",
    ),
    "second item bad": ([{"metadata": {"event_name": "logged_in"}}, {"x": 1}], "item 2: expected"),
}


@pytest.mark.parametrize("case", list(WRONG_SHAPES))
def test_wrong_shapes_and_types_get_a_400_naming_the_problem(
    case: str, server: LiveServer, secured: tuple[LiveServer, Settings], client: httpx.Client
) -> None:
    body, expected = WRONG_SHAPES[case]
    response = post(client, server, body)
    assert response.status_code == 400
    assert expected in response.json()["detail"]
    assert len(response.text) < 300
    assert spool_records(secured[1]) == []


def test_a_dropped_connection_spools_nothing_and_the_server_carries_on(
    server: LiveServer, secured: tuple[LiveServer, Settings], client: httpx.Client
) -> None:
    body = json.dumps(canvas_event()).encode()
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as raw:
        raw.sendall(
            b"POST /events/canvas HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {SECRET}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body[: len(body) // 2]
        )
    assert spool_records(secured[1]) == []
    assert post(client, server, canvas_event(1)).status_code == 202
    assert len(spool_records(secured[1])) == 1


def test_only_json_bodies_are_accepted(server: LiveServer, client: httpx.Client) -> None:
    text = post(client, server, canvas_event(), headers={"Content-Type": "text/plain"})
    assert_refused(text, 415, "expected Content-Type: application/json")
    missing = client.post(
        server.url + "/events/canvas", content=b"{}", headers={"Authorization": f"Bearer {SECRET}"}
    )
    assert missing.status_code == 415
    gzipped = post(client, server, canvas_event(), headers={"Content-Encoding": "gzip"})
    assert_refused(gzipped, 415, "compressed or encoded bodies are not accepted")
    charset = post(
        client, server, canvas_event(1), headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert charset.status_code == 202


def test_too_many_events_in_one_request(tmp_path: Path, client: httpx.Client) -> None:
    with _serve(tmp_path, SECRET, max_events=3) as (live, settings):
        assert_refused(
            post(client, live, [canvas_event(n) for n in range(4)]), 413, "more than 3 events in one request"
        )
        assert post(client, live, [canvas_event(n) for n in range(3)]).json() == {"accepted": 3, "ignored": 0}
        assert len(spool_records(settings)) == 3


def test_a_spool_that_cannot_be_written_answers_503(tmp_path: Path, client: httpx.Client) -> None:
    home = tmp_path / "home"
    default_spool_dir(Settings(home=home)).parent.mkdir(parents=True)
    default_spool_dir(Settings(home=home)).write_text("a file where the spool folder should be")
    with _serve(home, SECRET) as (live, _):
        assert_refused(
            post(client, live, canvas_event()), 503, "the event spool is not writable; retry later"
        )


# -- both formats, batches, the spool ----------------------------------------------------------------


def test_both_envelope_formats_and_batch_arrays_are_accepted(
    server: LiveServer, secured: tuple[LiveServer, Settings], client: httpx.Client
) -> None:
    canvas = json.loads(fixture_bytes("canvas_events.json"))
    caliper = json.loads(fixture_bytes("caliper_envelope.json"))
    bare_caliper = caliper["data"][2]
    teacher_view = json.loads(json.dumps(canvas[0]))
    teacher_view["body"]["role"] = "TeacherEnrollment"
    cases = [
        (canvas[0], {"accepted": 1, "ignored": 0}),
        (canvas, {"accepted": 5, "ignored": 0}),
        (caliper, {"accepted": 5, "ignored": 1}),  # the MessageEvent is not used
        ([canvas[3], caliper], {"accepted": 6, "ignored": 1}),
        (bare_caliper, {"accepted": 1, "ignored": 0}),
        ({"metadata": {"event_name": "course_created"}, "body": {}}, {"accepted": 0, "ignored": 1}),
        (teacher_view, {"accepted": 0, "ignored": 1}),  # staff browsing is not spooled
    ]
    for body, counts in cases:
        response = post(client, server, body)
        assert (response.status_code, response.json()) == (202, counts)
    # A UTF-8 byte-order mark is tolerated.
    assert post(client, server, b"\xef\xbb\xbf" + json.dumps(canvas[1]).encode()).status_code == 202
    records = spool_records(secured[1])
    assert len(records) == 1 + 5 + 5 + 6 + 1 + 1
    assert {r["format"] for r in records} == {"canvas", "caliper"}


def test_the_spool_holds_slimmed_events_durably(
    server: LiveServer, secured: tuple[LiveServer, Settings], client: httpx.Client
) -> None:
    assert post(client, server, json.loads(fixture_bytes("canvas_events.json"))).status_code == 202
    assert post(client, server, json.loads(fixture_bytes("caliper_envelope.json"))).status_code == 202
    files = sorted(default_spool_dir(secured[1]).glob("*.jsonl"))
    assert files  # one per minute: two when the posts straddle a minute
    assert {oct(f.stat().st_mode & 0o777) for f in files} == {"0o600"}
    raw = b"".join(f.read_bytes() for f in files)
    assert raw.endswith(b"\n")
    records = spool_records(secured[1])
    assert [r["format"] for r in records] == ["canvas"] * 5 + ["caliper"] * 5
    assert records[0]["event"]["metadata"]["event_name"] == "asset_accessed"
    assert records[5]["event"]["id"] == "urn:uuid:4f6b2c1e-8a3d-4e5f-9b0c-1d2e3f4a5b6c"
    # IPs, user agents, logins, names and the text of a submission never reach the disk.
    for secret_text in (b"203.0.113.17", b"Mozilla", b"student11@example.edu", b"My answers", b"worksheet"):
        assert secret_text not in raw
    # What the mapping needs is still there.
    assert records[3]["event"]["body"]["submitted_at"] == "2024-09-11T01:00:00Z"
    assert records[9]["event"]["generated"]["scoreGiven"] == 8.5


def test_concurrent_senders_each_get_their_events_spooled(
    server: LiveServer, secured: tuple[LiveServer, Settings]
) -> None:
    def send(sender: int) -> list[int]:
        with httpx.Client(timeout=10) as own:
            return [post(own, server, canvas_event(sender * 100 + i)).status_code for i in range(20)]

    with ThreadPoolExecutor(8) as pool:
        statuses = [s for batch in pool.map(send, range(8)) for s in batch]
    assert statuses == [202] * 160
    records = spool_records(secured[1])
    assert len({r["event"]["metadata"]["request_id"] for r in records}) == len(records) == 160


def test_logs_carry_counts_not_payloads(
    server: LiveServer, client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="edsight"):
        assert post(client, server, json.loads(fixture_bytes("canvas_events.json"))).status_code == 202
        post(client, server, b"{bad")
    assert "events: 5 accepted, 0 ignored" in caplog.text
    for identifier in ("S-1001", "21070000000000011", "student11"):
        assert identifier not in caplog.text


# -- through to the warehouse --------------------------------------------------------------------------

WORLD: dict[str, list[str]] = {
    "organization": ["org_id,name,org_type", "s1,Lakeside High,school"],
    "term": [
        "term_id,name,term_type,school_year,start_date,end_date",
        "t1,2024-25,school_year,2024,2024-08-01,2025-06-30",
    ],
    "course": ["course_id,title", "c-alg,Algebra I"],
    "section": ["section_id,course_id,term_id,school_id", "sec-alg,c-alg,t1,s1"],
    "person": [
        "person_id,role,local_id,directory_opt_out",
        "p1,student,S-1001,false",
        "p2,student,S-1002,false",
    ],
    "enrollment": [
        "section_id,person_id,role,start_date",
        "sec-alg,p1,student,2024-08-26",
        "sec-alg,p2,student,2024-08-26",
    ],
    "assignment": ["assignment_id,section_id,due_at,points_possible", "asg-1,sec-alg,2024-09-10 23:59:00,10"],
    "id_map": [
        "source_system,entity,source_id,edsight_id",
        "canvas,person,11,p1",
        "canvas,person,12,p2",
        "canvas,section,101,sec-alg",
        "canvas,assignment,501,asg-1",
    ],
}


def test_posted_events_reach_the_warehouse_through_the_spool(tmp_path: Path, client: httpx.Client) -> None:
    home = tmp_path / "home"
    warehouse = Warehouse(Settings(home=home))
    warehouse.init()
    world = tmp_path / "world"
    world.mkdir()
    for name, lines in WORLD.items():
        (world / f"{name}.csv").write_text("\n".join(lines) + "\n")
    assert warehouse.load_directory(world).rows_quarantined == 0
    with _serve(home, SECRET) as (live, _):
        assert post(client, live, json.loads(fixture_bytes("caliper_envelope.json"))).json()["accepted"] == 5
        # The endpoint never opens the warehouse: a load can run while it serves.
        result = ingest_events(warehouse)
        assert result.source_tables["live_event"].rows_valid == 5
    with warehouse.connect(read_only=True) as con:
        assert con.execute(
            "SELECT person_id, page_views FROM lms_activity WHERE page_views > 0"
        ).fetchall() == [("p1", 2)]
        assert con.execute("SELECT score, late, workflow_state FROM submission").fetchall() == [
            (8.5, True, "graded")
        ]


def test_every_setting_is_documented() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "ingest-events.md").read_text()
    for name, field in EventsConfig.model_fields.items():
        assert f"`EDSIGHT_EVENTS_{name.upper()}`" in docs, name
        assert field.description, name
    assert EventsConfig(_env_file=None).max_bytes == 1 << 20  # the documented default: 1 MiB
