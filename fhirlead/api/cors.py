"""CORS for browser apps (SMART apps run in a browser on their own origin; SMART App Launch 2.2.0 expects
the FHIR API, the token endpoint and discovery to be callable cross-origin).

Bearer tokens travel in a header, never in cookies, so any origin may call (`*`, no credentials).
The HTML sign-in and consent pages are left out on purpose: no other origin may read them (their forms
carry CSRF tokens), and they are reached by navigation, which needs no CORS.
"""

from __future__ import annotations

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from fhirlead.api.direct import route_path

CROSS_ORIGIN_PATHS = ("/fhir", "/auth/token", "/auth/revoke", "/auth/introspect", "/auth/jwks", "/auth/launch")
ALLOWED_HEADERS = ["authorization", "content-type", "accept", "if-match", "if-none-match", "if-none-exist",
                   "if-modified-since", "prefer", "x-request-id"]
EXPOSED_HEADERS = ["location", "content-location", "etag", "last-modified", "www-authenticate", "x-progress",
                   "retry-after"]


class ApiCors:
    """Starlette's CORSMiddleware (preflights answered before any authorization), on the API paths only."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app, allow_origins=["*"], allow_methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=ALLOWED_HEADERS, expose_headers=EXPOSED_HEADERS, allow_credentials=False, max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = route_path(scope) if scope["type"] == "http" else ""  # behind a proxy's root path too
        if path.startswith(CROSS_ORIGIN_PATHS):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
