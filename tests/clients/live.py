"""A live fhirlead for clients that speak real HTTP (a browser, the `requests`-based Python `fhirclient`):
`fhirlead serve --sample-data` as a subprocess on a free loopback port, on a fresh SQLite store, and the
`fhirlead` command line against the same store (clients and launches take effect while it runs).

The sample data gives Practitioner/pcp-okafor three patients (maria-garcia, james-wilson, aiko-tanaka);
the sample users are okafor / okafor-sample-pw (that practitioner) and maria / maria-sample-pw (her own
record); the sample backend client is sample-backend / sample-backend-secret (system/*.rs, system/*.cruds).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

OKAFOR = ("okafor", "okafor-sample-pw")
BACKEND = ("sample-backend", "sample-backend-secret")
START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def environment() -> dict[str, str]:
    """This environment without FHIRLEAD_* settings: the base URL must come from each request's Host."""
    return {key: value for key, value in os.environ.items() if not key.startswith("FHIRLEAD_")}


def fhirlead(*args: str, stdin: str | None = None) -> str:
    """Run the `fhirlead` command line; its standard output, or AssertionError with what it said."""
    done = subprocess.run([sys.executable, "-m", "fhirlead.cli", *args], input=stdin, capture_output=True,
                          text=True, env=environment(), timeout=60)
    assert done.returncode == 0, f"fhirlead {' '.join(args)} failed ({done.returncode}): {done.stderr}{done.stdout}"
    return done.stdout


@dataclass
class LiveServer:
    root: str  # http://127.0.0.1:PORT
    store: str  # the store URL, for the command line
    log: Path  # what the server printed

    @property
    def fhir(self) -> str:
        return f"{self.root}/fhir"

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def add_public_client(self, client_id: str, scope: str, redirect_uris: list[str],
                          launch_url: str | None = None) -> None:
        args = ["clients", "add", "--store", self.store, "--client-id", client_id, "--public", "--scope", scope]
        for uri in redirect_uris:
            args += ["--redirect-uri", uri]
        if launch_url:
            args += ["--launch-url", launch_url]
        fhirlead(*args)

    def launch(self, client_id: str, patient: str, user: str | None = None) -> tuple[str, str | None]:
        """An EHR launch context: (launch id, the app's launch URL with iss and launch filled in)."""
        args = ["launch", "--store", self.store, "--client-id", client_id, "--patient", patient,
                "--base-url", self.fhir]
        if user:
            args += ["--user", user]
        lines = fhirlead(*args).split()
        return lines[0], lines[1] if len(lines) > 1 else None

    def backend_token(self, scope: str = "system/*.cruds") -> str:
        """An access token for the sample backend client (client_credentials, client_secret_basic)."""
        answer = httpx.post(f"{self.root}/auth/token", auth=BACKEND,
                            data={"grant_type": "client_credentials", "scope": scope}, timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()["access_token"]


def spawn(folder: Path) -> tuple[subprocess.Popen, LiveServer]:
    """Start `fhirlead serve --sample-data` on a free loopback port and the store `folder`/live.db (new, or
    the one an earlier server there left), and wait until it answers."""
    port = free_port()
    store = f"sqlite:///{folder / 'live.db'}"
    log = folder / "server.log"
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "fhirlead.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
             "--store", store, "--sample-data"],
            stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=environment(),
        )
    server = LiveServer(f"http://127.0.0.1:{port}", store, log)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            raise AssertionError(f"fhirlead serve exited ({process.returncode}):\n{server.output()}")
        try:
            if httpx.get(f"{server.root}/healthz", timeout=2).status_code == 200:
                return process, server
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"fhirlead serve did not answer in {START_TIMEOUT:.0f} s:\n{server.output()}")
        time.sleep(0.1)


@contextmanager
def live_server(folder: Path) -> Iterator[LiveServer]:
    """`fhirlead serve --sample-data` on a free loopback port and a new store in `folder`, until the block ends."""
    process, server = spawn(folder)
    try:
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
