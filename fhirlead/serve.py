"""`fhirlead serve`: run the server with uvicorn.

    fhirlead serve [--host 127.0.0.1] [--port 8080] [--store sqlite:///./fhirlead.db] [--sample-data]
                   [--auth on|off]

Every flag can also come from the environment (FHIRLEAD_HOST, FHIRLEAD_PORT, FHIRLEAD_STORE, FHIRLEAD_AUTH).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from dataclasses import replace

from fhirlead.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    defaults = Settings()
    parser = subparsers.add_parser("serve", help="run the FHIR server")
    parser.add_argument("--host", default=defaults.host, help="interface to listen on (FHIRLEAD_HOST)")
    parser.add_argument("--port", type=int, default=defaults.port, help="port (FHIRLEAD_PORT)")
    parser.add_argument("--store", default=defaults.store, help="store URL (FHIRLEAD_STORE)")
    parser.add_argument("--sample-data", action="store_true",
                        help="load fhirlead's small sample data set (and sample accounts) first; skips what exists")
    parser.add_argument("--auth", choices=("on", "off"), default="on" if defaults.auth else "off",
                        help="SMART on FHIR authorization (FHIRLEAD_AUTH); off leaves every record open")
    parser.set_defaults(run=run)


async def _sample_accounts(settings: Settings, root: str) -> None:
    from fhirlead.auth.samples import add_sample_accounts
    from fhirlead.server import Server

    server = await Server.start(settings)
    try:
        if server.auth is not None:
            await add_sample_accounts(server.auth.registry, [f"{root}/callback", "http://localhost:3000/callback"])
    finally:
        await server.stop()


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from fhirlead.api.app import create_app
    from fhirlead.samples import load_samples
    from fhirlead.validation import ahead as validation_ahead

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("fhirlead")
    settings = replace(Settings(host=args.host, port=args.port, store=args.store), auth=args.auth == "on")
    root = f"http://{settings.host}:{settings.port}"
    if args.sample_data:
        created = asyncio.run(load_samples(settings))
        log.info("sample data: %d resources created", created)
        if settings.auth:
            asyncio.run(_sample_accounts(settings, root))
            from fhirlead.auth.samples import how_to

            log.info("sample accounts ready%s", how_to(root))
    if not settings.auth:
        log.warning("*** AUTHORIZATION IS OFF (--auth off): every record on %s is open to anyone who can reach "
                    "it. Never run like this with real data. ***", root)
    # No access log: request lines carry search parameters, which can hold PHI.
    ahead = settings.validation_worker and validation_ahead.available()
    uvicorn.run(create_app(settings, freeze_heap=True, validate_ahead=ahead), host=settings.host,
                port=settings.port, log_level="info", access_log=False, limit_concurrency=settings.max_connections,
                timeout_keep_alive=settings.keep_alive_seconds)
    return 0
