"""schemathesis against the served OpenAPI: generated requests, valid and invalid, never get a
server error, and every answer matches the schema. `FLEXGRID_API_FUZZ_EXAMPLES` sets the
examples per operation (`make fuzz-api`: 30, over 1,000 cases; `make test`: 4)."""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.api.conftest import Api

pytestmark = [pytest.mark.chain, pytest.mark.xdist_group("api")]

EXAMPLES = int(os.environ.get("FLEXGRID_API_FUZZ_EXAMPLES", "4"))


@pytest.mark.parametrize("who", ["nobody", "provider", "dso", "operator"])
def test_no_server_error_on_generated_requests(api: Api, who: str) -> None:
    account = {"provider": api.demo.providers[0], "dso": api.demo.dso, "operator": api.demo.operator}.get(who)
    headers = {"Authorization": f"Bearer {api.token(account)}"} if account is not None else {}
    # The event stream is endless unless max_events is given; it has its own test.
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json").exclude(path="/events/rounds")
    failures: list[str] = []
    cases = 0
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an invalid operation raises here, failing the test

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None)
        def run(case: schemathesis.Case) -> None:
            nonlocal cases
            cases += 1
            if case.path == "/auth/logout":
                return  # would end the shared session
            response = case.call(base_url=api.url, timeout=60, headers=headers)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}")
            elif response.status_code >= 400:
                content_type = response.headers.get("content-type") or response.headers.get("Content-Type") or [""]
                if not str(content_type[0] if isinstance(content_type, list) else content_type).startswith(
                        "application/problem+json"):
                    failures.append(f"{case.method} {case.formatted_path}: {response.status_code} is not a problem")

        run()
    print(f"{cases} generated requests as {who}")
    assert cases >= EXAMPLES * 10
    assert not failures, "\n".join(failures[:20])
