"""Property-based API checks with schemathesis against the OpenAPI schema: no 5xx for any
generated request, responses conform to the declared content type, no stack traces, and
every route but token login refuses anonymous callers."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from .conftest import WebWorld

schemathesis = pytest.importorskip("schemathesis")

pytestmark = pytest.mark.slow


def _operations(world: WebWorld) -> list[object]:
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", world.app)
    ops = [result.ok() for result in schema.get_all_operations()]
    return [op for op in ops if op.path.startswith("/api/v1/")]


def test_api_never_answers_5xx(world: WebWorld) -> None:
    headers = {"Authorization": f"Bearer {world.token('district_admin')}"}
    seen: list[str] = []
    for op in _operations(world):

        @given(case=op.as_strategy())  # type: ignore[attr-defined]
        @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: object) -> None:
            response = case.call(headers=headers)  # type: ignore[attr-defined]
            assert response.status_code < 500, (case, response.text[:200])
            assert "Traceback" not in response.text
            if response.status_code >= 400:
                assert set(response.json()) == {"error"}

        check()
        seen.append(f"{op.method.upper()} {op.path}")  # type: ignore[attr-defined]
    assert "GET /api/v1/students" in seen
    assert len(seen) >= 12


def test_api_requires_a_session(world: WebWorld) -> None:
    for op in _operations(world):
        if op.path == "/api/v1/session" and op.method.lower() == "post":  # type: ignore[attr-defined]
            continue

        @given(case=op.as_strategy())  # type: ignore[attr-defined]
        @settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: object) -> None:
            response = case.call()  # type: ignore[attr-defined]
            assert response.status_code in (401, 422), (case, response.status_code)

        check()
