"""FHIRLEAD_REQUIRED_PROFILES: a Lead makes every attribution-list Group meet ATR's atr-group, whether or not
it claims it; other Groups (cohorts) are left alone."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

from fhirlead.api.app import create_app
from fhirlead.settings import Settings, required_profiles
from tests.conftest import BASE, FHIR_JSON
from tests.tokens import bearer

ATR = Path(__file__).resolve().parents[3] / "shared" / "data" / "atr-2.1.0" / "examples"
ATR_GROUP = "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/atr-group"
STATUS = "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/ext-attributionListStatus"
RULES = f'[{{"type": "Group", "profile": "{ATR_GROUP}", "when": "extension.where(url = \'{STATUS}\').exists()"}}]'

pytestmark = pytest.mark.skipif(not ATR.is_dir(), reason="../shared/data (the ATR 2.1.0 examples) is absent")


@pytest.fixture
async def lead(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    application: FastAPI = create_app(dataclasses.replace(settings, required_profiles=required_profiles(RULES)))
    async with application.router.lifespan_context(application):
        headers = {"Accept": FHIR_JSON, **await bearer(application)}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url=BASE,
                                     headers=headers) as client:
            yield client


def attribution_list() -> dict[str, Any]:
    group = orjson.loads((ATR / "group-fullexample.json").read_bytes())
    return {key: value for key, value in group.items() if key not in ("id", "meta")}  # claims no profile


async def test_an_attribution_list_must_meet_atr_group_unclaimed(lead: httpx.AsyncClient) -> None:
    created = await lead.post("Group", json=attribution_list())
    assert created.status_code == 201, created.text
    unmanaged = {key: value for key, value in attribution_list().items() if key != "managingEntity"}
    refused = await lead.post("Group", json=unmanaged)
    assert refused.status_code == 400
    issues = refused.json()["issue"]
    assert [(issue["expression"], "Davinci ATR Group" in issue["diagnostics"]) for issue in issues] == [
        (["Group.managingEntity"], True)]
    cohort = {"resourceType": "Group", "type": "person", "actual": False, "name": "Diabetics over 65"}
    assert (await lead.post("Group", json=cohort)).status_code == 201  # not an attribution list


async def test_validate_as_a_create_applies_them(lead: httpx.AsyncClient) -> None:
    unmanaged = {key: value for key, value in attribution_list().items() if key != "managingEntity"}
    as_create = (await lead.post("Group/$validate?mode=create", json=unmanaged)).json()["issue"]
    assert any(issue["severity"] == "error" and issue["expression"] == ["Group.managingEntity"] for issue in as_create)
    content_only = (await lead.post("Group/$validate", json=unmanaged)).json()["issue"]
    assert not any(issue["severity"] == "error" for issue in content_only)  # no mode: only what it claims


def test_the_setting_is_checked() -> None:
    assert required_profiles("") == ()
    assert required_profiles(RULES)[0][:2] == ("Group", ATR_GROUP)
    for wrong in ("Group=atr-group", '[{"type": "Group"}]', '[{"type": 1, "profile": "x"}]'):
        with pytest.raises(ValueError, match="FHIRLEAD_REQUIRED_PROFILES"):
            required_profiles(wrong)
