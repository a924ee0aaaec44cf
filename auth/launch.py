"""EHR launch contexts (SMART App Launch 2.2.0 §EHR Launch): the EHR records who is open in front of the
user (patient, optionally encounter, the user, banner and style hints) under a one-time `launch` id; the
app passes that id to /auth/authorize with scope `launch`, and the context flows into its token.

Created with `fhirlead launch` (CLI) or `POST /auth/launch` with a system token allowed to read the
patient (`system/Patient.r…` or wider); both store it in the records, so any server process can redeem it.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlencode

from fhirlead.storage.records import RecordConflict, Records

KIND = "launch"
LIFETIME = 10 * 60


@dataclass
class LaunchContext:
    patient: str
    encounter: str | None = None
    user: str | None = None  # the username who must sign in
    need_patient_banner: bool = True
    smart_style_url: str | None = None
    client_id: str | None = None  # when set, only this client may redeem it


async def create_launch(records: Records, context: LaunchContext) -> str:
    launch_id = secrets.token_urlsafe(24)
    await records.put(KIND, launch_id, {**asdict(context), "used": False}, expires=time.time() + LIFETIME,
                      expected_rev=0)
    return launch_id


async def redeem_launch(records: Records, launch_id: str, client_id: str) -> LaunchContext | None:
    """The context, used up by this call; None if unknown, expired, used, or meant for another client."""
    record = await records.get(KIND, launch_id)
    if record is None or record.doc.get("used"):
        return None
    doc: dict[str, Any] = dict(record.doc)
    if doc.get("client_id") not in (None, client_id):
        return None
    try:
        await records.put(KIND, launch_id, {**doc, "used": True}, expires=record.expires, expected_rev=record.rev)
    except RecordConflict:
        return None
    doc.pop("used")
    return LaunchContext(**doc)


def launch_url(client_launch_url: str, fhir_base: str, launch_id: str) -> str:
    separator = "&" if "?" in client_launch_url else "?"
    return f"{client_launch_url}{separator}{urlencode({'iss': fhir_base, 'launch': launch_id})}"
