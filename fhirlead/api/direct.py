"""FHIR interactions handed straight to the FHIR endpoint, around Starlette's middleware and router.

For a FHIR interaction without an `Origin` header, the layers between the ASGI server and
`fhir_endpoint` do nothing it needs: CORS only adds `Vary: Origin`, the endpoint answers every error
itself as an OperationOutcome (nothing reaches the exception middlewares), it uses no FastAPI
dependencies, and its routes are known. Yet those layers cost ~35 µs of a ~190 µs read
(bench/read_ratio.py, bench/README.md). `FhirApp` is FastAPI with that shortcut: such a request is
routed here, by the same rules as the router (`/fhir` and `/fhir/{path:path}`, after the root path),
and answered with the same response plus the `Vary: Origin` the CORS middleware would have added.
Everything else takes the full stack: requests with `Origin` (browsers: CORS headers, preflights),
other methods, the other routes under `/fhir` (discovery, bulk export status and files), and every
path outside it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]
DIRECT_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"})


class FhirApp(FastAPI):
    """FastAPI whose FHIR interactions without `Origin` go straight to `fhir_endpoint` (see above)."""

    def __init__(self, *, fhir_prefix: str, fhir_endpoint: Endpoint, **settings: Any) -> None:
        super().__init__(**settings)
        self._prefix = fhir_prefix
        self._endpoint = fhir_endpoint
        self._elsewhere: tuple[str, ...] | None = None  # path prefixes of the other routes under the FHIR base

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        params = self._path_params(scope) if scope["type"] == "http" else None
        if params is None:
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        scope["endpoint"] = self._endpoint
        scope["path_params"] = params
        response = await self._endpoint(Request(scope, receive, send))
        _vary_on_origin(response)
        await response(scope, receive, send)

    def _path_params(self, scope: Scope) -> dict[str, str] | None:
        """The path parameters the FHIR endpoint's routes would give the request (none for the base
        itself, `path` below it), None for a request that takes the full stack."""
        if scope["method"] not in DIRECT_METHODS or any(key == b"origin" for key, _ in scope["headers"]):
            return None
        path = route_path(scope)
        prefix = self._prefix
        if path == prefix:
            return {}
        if not path.startswith(prefix + "/") or path.startswith(self._other_routes()):
            return None
        return {"path": path[len(prefix) + 1:]}

    def _other_routes(self) -> tuple[str, ...]:
        if self._elsewhere is None:
            self._elsewhere = tuple(
                route.path.split("{")[0] for route in self.routes
                if isinstance(route, Route) and route.path.startswith(self._prefix + "/")
                and route.endpoint is not self._endpoint)
        return self._elsewhere


def route_path(scope: Scope) -> str:
    """The request's path below the app's root path, as Starlette's router matches it."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


def _vary_on_origin(response: Response) -> None:
    """`Vary: Origin` as Starlette's CORS middleware adds it to an answer without `Origin` (merged into
    a `Vary` the response has), so caches keep browser and non-browser answers apart."""
    varies = [value for key, value in response.raw_headers if key == b"vary"]
    if not varies:
        response.raw_headers.append((b"vary", b"Origin"))
        return
    response.raw_headers[:] = [(key, value) for key, value in response.raw_headers if key != b"vary"]
    response.raw_headers.append((b"vary", b", ".join([*varies, b"Origin"])))
