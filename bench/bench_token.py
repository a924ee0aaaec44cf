"""A bearer token for benchmarks against a live `fhirlead serve` (authorization is on by default).

Registers a confidential client in the store with `fhirlead clients add` (which works while the server
runs) and asks the server's token endpoint for a `system/` token with client_secret_basic.
"""

from __future__ import annotations

import secrets
import subprocess
import sys

import httpx


def bench_token(store: str, root: str, scope: str = "system/*.cruds") -> str:
    secret = secrets.token_urlsafe(24)
    subprocess.run(
        [sys.executable, "-m", "fhirlead.cli", "clients", "add", "--store", store, "--client-id", "bench",
         "--secret-stdin", "--scope", scope],
        input=secret + "\n", text=True, check=True, stdout=subprocess.DEVNULL,
    )
    answer = httpx.post(f"{root}/auth/token", auth=("bench", secret),
                        data={"grant_type": "client_credentials", "scope": scope})
    answer.raise_for_status()
    return answer.json()["access_token"]
