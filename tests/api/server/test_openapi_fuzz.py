"""Property-based: requests generated from the app's own OpenAPI schema never get a 5xx (fake job backend)."""

from __future__ import annotations

import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings

from tests.api.support import TOKEN

EXAMPLES_PER_OPERATION = 10


def test_no_server_errors(app: FastAPI) -> None:
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 13  # every endpoint of the service is in its schema
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def no_5xx(case) -> None:
            response = case.call(headers={"Authorization": f"Bearer {TOKEN}"})
            where = f"{case.method} {case.formatted_path}"
            assert response.status_code < 500, f"{where}: {response.status_code} {response.text}"
            if response.status_code >= 400 and response.headers.get("content-type") == "application/json":
                assert "detail" in response.json(), where

        no_5xx()
