"""Fuzzing the FHIR API through its own OpenAPI document (schemathesis) against a live `fhirlead serve`:
whatever the generated requests hold, no answer is a 5xx, and afterwards the store still answers.

Bounded for CI: the clinical types the Lead works with most, a few examples per operation, with a
system token (authorization stays on). The sweep over all 1,318 operations is a manual run:
`schemathesis run http://HOST/openapi.json -H "Authorization: Bearer …" --checks not_a_server_error`.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import hypothesis
import pytest
import schemathesis

from tests.clients.live import LiveServer, live_server
from tests.fuzz import DERANDOMIZE

TYPES = ("Patient", "Observation", "Encounter", "Condition", "Group", "CareTeam", "CarePlan")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("fuzz")) as live:
        yield live


@pytest.fixture(scope="module")
def token(server: LiveServer) -> str:
    return server.backend_token("system/*.cruds")


def test_no_operation_answers_5xx(server: LiveServer, token: str) -> None:
    api = schemathesis.openapi.from_url(f"{server.root}/openapi.json").include(
        path_regex=rf"^/({'|'.join(TYPES)})(/|$)")
    headers = {"Authorization": f"Bearer {token}"}
    failures: list[tuple[str, str, int, str]] = []
    calls = []
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 6 * len(TYPES)

    for operation in operations:
        @hypothesis.given(case=operation.as_strategy())
        @hypothesis.settings(max_examples=3, deadline=None, database=None, derandomize=DERANDOMIZE,
                             suppress_health_check=list(hypothesis.HealthCheck))
        def call(case: schemathesis.Case) -> None:
            response = case.call(headers=headers, timeout=30)
            calls.append(response.status_code)
            if response.status_code >= 500:
                failures.append((case.method, case.formatted_path, response.status_code, response.text[:300]))

        call()
    assert not failures, (failures, server.output()[-3000:])  # the log names the exception type
    assert len(calls) >= 2 * len(operations) and any(status < 300 for status in calls)  # it did call the API


def test_the_store_still_answers_after_fuzzing(server: LiveServer, token: str) -> None:
    for type_ in TYPES:
        answer = httpx.get(f"{server.fhir}/{type_}?_total=accurate&_count=5",
                           headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert answer.status_code == 200 and isinstance(answer.json()["total"], int), type_
    assert "Traceback" not in server.output()
