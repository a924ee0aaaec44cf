"""An attribution list changed by `$member-add` / `$member-remove` records its source like any write
(docs/sources.md): the new Group version gets a Provenance in the same commit; a refused change none."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from fhirlead.interaction.update import update
from fhirlead.sources import client_uri
from tests.operations.test_attribution_operations import (  # noqa: F401 (lists: a fixture)
    MEMBER_IDS,
    attribution_list,
    invoke,
    lists,
)
from tests.rest.test_sources import provenances
from tests.tokens import SYSTEM_CLIENT


async def test_member_changes_get_a_provenance_of_the_new_version(lists: httpx.AsyncClient) -> None:  # noqa: F811
    before = await provenances(lists, "Group/open")
    assert [item["target"] for item in before] == [[{"reference": "Group/open/_history/1"}]]
    answer = await invoke(lists, "open", "member-add", patientReference={"reference": "Patient/ben"},
                          providerReference={"reference": "Organization/clinic"})
    assert answer.status_code == 200, answer.text
    refused = await invoke(lists, "open", "member-add", memberId={"system": MEMBER_IDS, "value": "nobody"},
                           providerReference={"reference": "Organization/clinic"})
    assert refused.status_code >= 400
    removed = await invoke(lists, "open", "member-remove", patientReference={"reference": "Patient/ben"},
                           providerReference={"reference": "Organization/clinic"})
    assert removed.status_code == 200, removed.text
    found = await provenances(lists, "Group/open")
    assert [item["target"][0]["reference"] for item in found] == [f"Group/open/_history/{n}" for n in (1, 2, 3)]
    assert [item["activity"]["coding"][0]["code"] for item in found] == ["CREATE", "UPDATE", "UPDATE"]
    assert found[1]["agent"][0]["who"]["identifier"]["value"] == SYSTEM_CLIENT
    group = (await lists.get("Group/open")).json()
    assert group["meta"]["source"] == client_uri(SYSTEM_CLIENT)
    assert (await lists.get("Group", params={"_source": client_uri(SYSTEM_CLIENT), "_id": "open"})).json()["total"] == 1


async def test_a_list_stored_without_a_source_gets_one_when_a_client_changes_it(
        app: FastAPI, lists: httpx.AsyncClient) -> None:  # noqa: F811
    server = app.state.server
    async with server.store.unit_of_work() as uow:  # as `fhirlead load` writes: no client, no source
        await update(server, uow, "Group", "loaded", attribution_list("loaded", "open"))
    assert "source" not in (await lists.get("Group/loaded")).json()["meta"]
    answer = await invoke(lists, "loaded", "member-add", patientReference={"reference": "Patient/ana"},
                          providerReference={"reference": "Organization/clinic"})
    assert answer.status_code == 200, answer.text
    assert (await lists.get("Group/loaded")).json()["meta"]["source"] == client_uri(SYSTEM_CLIENT)
    found = (await lists.get("Group", params={"_source": client_uri(SYSTEM_CLIENT), "_id": "loaded"})).json()
    assert found["total"] == 1
    assert [item["target"] for item in await provenances(lists, "Group/loaded")] == [
        [{"reference": "Group/loaded/_history/2"}]]
