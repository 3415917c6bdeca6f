"""/api/v1: token login, pagination, clear 4xx bodies without stack traces, the OpenAPI schema."""

from __future__ import annotations

import pytest

from .conftest import WebWorld

TRACE_MARKERS = ("Traceback", 'File "', "duckdb", "sqlite3", "Error:")


def _bearer(world: WebWorld, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {world.token(role)}"}


def test_token_login_and_logout(world: WebWorld) -> None:
    client = world.client(None)
    acct = world.accounts["counselor"]
    bad = client.post("/api/v1/session", json={"username": acct.username, "password": "wrong-password-123"})
    assert bad.status_code == 401
    assert bad.json() == {"error": {"status": 401, "message": "invalid credentials"}}
    no_mfa = client.post("/api/v1/session", json={"username": acct.username, "password": acct.password})
    assert no_mfa.status_code == 401
    assert no_mfa.json()["error"]["message"] == "MFA code required"
    ok = client.post(
        "/api/v1/session",
        json={"username": acct.username, "password": acct.password, "totp": world.totp("counselor")},
    )
    assert ok.status_code == 201
    headers = {"Authorization": f"Bearer {ok.json()['token']}"}
    assert client.get("/api/v1/me", headers=headers).json()["roles"] == ["counselor"]
    assert client.delete("/api/v1/session", headers=headers).status_code == 204
    assert client.get("/api/v1/me", headers=headers).status_code == 401


def test_pagination_walks_every_row_once(world: WebWorld) -> None:
    client = world.client(None)
    headers = _bearer(world, "principal")
    first = client.get("/api/v1/students?limit=7", headers=headers).json()
    total = first["total"]
    assert total > 14
    seen = [r["person_id"] for r in first["items"]]
    offset = first["next_offset"]
    assert offset == 7
    while offset is not None:
        page = client.get(f"/api/v1/students?limit=7&offset={offset}", headers=headers).json()
        assert page["offset"] == offset
        assert len(page["items"]) <= 7
        seen += [r["person_id"] for r in page["items"]]
        offset = page["next_offset"]
    assert len(seen) == total == len(set(seen))
    risks = [
        r["probability"] for r in client.get("/api/v1/students?limit=50", headers=headers).json()["items"]
    ]
    scored = [p for p in risks if p is not None]
    assert scored == sorted(scored, reverse=True), "students come by descending risk"


@pytest.mark.parametrize(
    ("path", "status", "fragment"),
    [
        ("/api/v1/students?limit=0", 422, "limit"),
        ("/api/v1/students?limit=501", 422, "limit"),
        ("/api/v1/students?offset=-1", 422, "offset"),
        ("/api/v1/students?limit=abc", 422, "limit"),
        ("/api/v1/alerts?status=bogus", 422, "status"),
        ("/api/v1/students/S99999999", 404, "no such student in your scope"),
        ("/api/v1/sections/nope/students", 404, "no such section in your scope"),
        ("/api/v1/state", 404, "Not Found"),
        ("/api/v1/trends", 403, "may not"),
    ],
)
def test_clear_4xx_without_stack_traces(world: WebWorld, path: str, status: int, fragment: str) -> None:
    response = world.client(None).get(path, headers=_bearer(world, "principal"))
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["status"] == status
    assert fragment in body["error"]["message"]
    assert not any(marker in response.text for marker in TRACE_MARKERS)


def test_unknown_page_renders_html_404(world: WebWorld) -> None:
    response = world.client("teacher").get("/no/such/page")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "Traceback" not in response.text


def test_openapi_schema_lists_versioned_routes(world: WebWorld) -> None:
    schema = world.client(None).get("/api/v1/openapi.json").json()
    assert schema["openapi"].startswith("3.")
    paths = set(schema["paths"])
    for path in ("/api/v1/session", "/api/v1/students", "/api/v1/students/{person_id}", "/api/v1/alerts"):
        assert path in paths
    assert not any(p in paths for p in ("/login", "/caseload", "/students/{person_id}")), "pages stay out"
    params = {p["name"]: p for p in schema["paths"]["/api/v1/students"]["get"]["parameters"]}
    assert params["limit"]["schema"]["maximum"] == 500
    assert "404" in schema["paths"]["/api/v1/students/{person_id}"]["get"]["responses"]


def test_security_headers_and_cookie_flags(world: WebWorld) -> None:
    client = world.client(None)
    login = client.get("/login")
    csp = login.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "http" not in csp
    assert login.headers["x-content-type-options"] == "nosniff"
    assert login.headers["cache-control"] == "no-store"
    csrf = login.headers["set-cookie"]
    assert "HttpOnly" in csrf
    assert "SameSite=strict" in csrf.replace("Strict", "strict")
    acct = world.accounts["parent"]
    token = client.cookies.get("edsight_csrf")
    response = client.post(
        "/login",
        data={"username": acct.username, "password": acct.password, "csrf_token": token},
        follow_redirects=False,
    )
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    assert "edsight_session=" in cookie
    assert "HttpOnly" in cookie
    assert "samesite=strict" in cookie.lower()
    assert "Secure" not in cookie, "plain HTTP on loopback: no Secure flag (the browser would drop it)"
    remote = world.client(None)
    remote.base_url = "https://edsight.example.org"  # type: ignore[assignment]
    remote.get("/login")
    secure = remote.post(
        "/login",
        data={
            "username": acct.username,
            "password": acct.password,
            "csrf_token": remote.cookies.get("edsight_csrf"),
        },
        follow_redirects=False,
    )
    assert "Secure" in secure.headers["set-cookie"]


def test_forms_refuse_missing_csrf(world: WebWorld) -> None:
    client = world.client(None)
    acct = world.accounts["parent"]
    response = client.post("/login", data={"username": acct.username, "password": acct.password})
    assert response.status_code == 403
    assert "reload the page" in response.text
