"""`fhirlead serve`: run the server with uvicorn.

    fhirlead serve [--host 127.0.0.1] [--port 8080] [--store sqlite:///./fhirlead.db] [--sample-data]

Every flag can also come from the environment (FHIRLEAD_HOST, FHIRLEAD_PORT, FHIRLEAD_STORE).
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from fhirlead.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    defaults = Settings()
    parser = subparsers.add_parser("serve", help="run the FHIR server")
    parser.add_argument("--host", default=defaults.host, help="interface to listen on (FHIRLEAD_HOST)")
    parser.add_argument("--port", type=int, default=defaults.port, help="port (FHIRLEAD_PORT)")
    parser.add_argument("--store", default=defaults.store, help="store URL (FHIRLEAD_STORE)")
    parser.add_argument("--sample-data", action="store_true",
                        help="load fhirlead's small sample data set into the store first (skips what exists)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from fhirlead.api.app import create_app
    from fhirlead.samples import load_samples

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings(host=args.host, port=args.port, store=args.store)
    if args.sample_data:
        created = asyncio.run(load_samples(settings))
        logging.getLogger("fhirlead").info("sample data: %d resources created", created)
    # No access log: request lines carry search parameters, which can hold PHI.
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info", access_log=False)
    return 0
