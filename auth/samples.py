"""Sample accounts and clients beside the sample data (`fhirlead serve --sample-data`, `./dev run`), so a
newcomer can sign in and make an authorised request at once. Their passwords and secret are printed at
start-up and written here in the open: they are for a development server on loopback only."""

from __future__ import annotations

from fhirlead.auth.registry import Client, Registry, User, hash_secret

USERS = (
    ("okafor", "okafor-sample-pw", "Practitioner/pcp-okafor", False),
    ("maria", "maria-sample-pw", "Patient/maria-garcia", False),
    ("admin", "admin-sample-pw", "Practitioner/pcp-okafor", True),
)
APP = "sample-app"
APP_SCOPES = ("launch launch/patient openid fhirUser offline_access online_access "
              "patient/*.rs patient/*.cruds user/*.rs user/*.cruds")
WORKLIST = "fhirlead-worklist"  # the care team's worklist app served at /app/ (docs/worklist.md)
WORKLIST_SCOPES = "launch openid fhirUser user/CareTeam.rs user/Task.rus user/Patient.rs"
BACKEND = "sample-backend"
BACKEND_SECRET = "sample-backend-secret"
BACKEND_SCOPES = "system/*.rs system/*.cruds"


async def add_sample_accounts(registry: Registry, redirect_uris: list[str]) -> None:
    """Create what is missing (existing accounts, perhaps changed by their owner, are left alone)."""
    for username, password, fhir_user, admin in USERS:
        if await registry.user(username) is None:
            await registry.save_user(User(username, hash_secret(password), fhir_user, admin))
    if await registry.client(APP) is None:
        await registry.save_client(Client(APP, "Sample SMART app", APP_SCOPES.split(), redirect_uris))
    root = redirect_uris[0].removesuffix("/callback") if redirect_uris else None
    if root and await registry.client(WORKLIST) is None:  # a public client: the app runs in the browser
        await registry.save_client(Client(WORKLIST, "Care team worklist", WORKLIST_SCOPES.split(),
                                          [f"{root}/app/index.html"], f"{root}/app/launch.html"))
    if await registry.client(BACKEND) is None:
        await registry.save_client(Client(BACKEND, "Sample backend service", BACKEND_SCOPES.split(),
                                          secret_hash=hash_secret(BACKEND_SECRET)))


def how_to(root: str) -> str:
    """What the start-up output shows: one copy-paste to an authorised request, and where to sign in."""
    token = (f"TOKEN=$(curl -s -u {BACKEND}:{BACKEND_SECRET} -d grant_type=client_credentials "
             f"-d 'scope=system/*.rs' {root}/auth/token | python3 -c 'import json,sys; "
             "print(json.load(sys.stdin)[\"access_token\"])')")
    read = f"curl -H \"Authorization: Bearer $TOKEN\" '{root}/fhir/Observation?code=http://loinc.org|4548-4'"
    users = ", ".join(f"{name} / {password}" for name, password, _user, _admin in USERS)
    return (
        "\n  Authorization is ON. Make an authorised request (HbA1c results) in one copy-paste:\n\n"
        f"    {token} && {read}\n\n"
        f"  SMART apps: discovery at {root}/fhir/.well-known/smart-configuration; the public client {APP!r}\n"
        f"  (redirect {root}/callback) signs users in at {root}/auth/authorize — sample users: {users}\n"
        f"  The care team worklist app {WORKLIST!r}: fhirlead launch --client-id {WORKLIST} --patient maria-garcia\n"
        f"  --user okafor --store <this store> prints its EHR launch URL ({root}/app/launch.html?iss=…&launch=…)\n"
        "  These sample accounts are for local development only.\n"
    )
