"""A small, realistic sample data set so a newcomer's first `make run` shows something real.

A Lead organisation with two practitioners, three attributed patients (two diabetics, one with an
HbA1c above 9%), their conditions, observations and encounters, a care team, a care plan and the
attribution list. Loaded through the same interaction code as the API, so it is validated and indexed.
"""

from __future__ import annotations

from importlib import resources

from fhirlead import fhirjson
from fhirlead.interaction.update import update
from fhirlead.server import Server
from fhirlead.settings import Settings


def sample_resources() -> list[dict]:
    return fhirjson.loads(resources.files(__package__).joinpath("lead-sample.json").read_bytes())


async def load_samples(settings: Settings) -> int:
    """Create the sample resources that do not exist yet; return how many were created."""
    server = await Server.start(settings)
    created = 0
    try:
        async with server.store.unit_of_work() as uow:
            for resource in sample_resources():
                if await uow.read(resource["resourceType"], resource["id"]) is None:
                    await update(server, uow, resource["resourceType"], resource["id"], resource)
                    created += 1
    finally:
        await server.stop()
    return created
