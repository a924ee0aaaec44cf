"""A streamed answer (`FhirResponse.stream`) that fails after its status was sent must not look complete:
the transfer is broken off (no final body message), and the failure is logged without its message."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from fhirlead.api.messages import FhirResponse
from fhirlead.api.render import StreamAborted, http_response
from fhirlead.errors import FhirError, Issue


async def failing() -> AsyncIterator[bytes]:
    yield b'{"resourceType":"Parameters","parameter":['
    raise FhirError(422, [Issue("processing", "evaluating for Patient/secret-id failed")])


async def run(response: FhirResponse) -> list[dict]:
    sent: list[dict] = []

    async def receive() -> dict:  # the client stays connected
        await asyncio.Event().wait()
        return {}

    async def send(message: dict) -> None:
        sent.append(message)

    await http_response(response, pretty=False)({"type": "http", "method": "GET", "headers": []}, receive, send)
    return sent


async def test_a_failing_stream_breaks_off_the_transfer(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    with pytest.raises(StreamAborted):
        await run(FhirResponse(200, stream=failing()))
    assert "secret-id" not in caplog.text and "422" in caplog.text


async def test_a_stream_that_ends_completes_the_transfer() -> None:
    async def parts() -> AsyncIterator[bytes]:
        yield b'{"resourceType":'
        yield b'"Parameters"}'

    sent = await run(FhirResponse(200, stream=parts()))
    assert sent[0]["status"] == 200
    assert b"".join(m.get("body", b"") for m in sent[1:]) == b'{"resourceType":"Parameters"}'
    assert sent[-1].get("more_body") is False
