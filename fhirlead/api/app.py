"""The ASGI application: FastAPI serving the FHIR API under /fhir, health at /healthz.

Every FHIR request goes through one endpoint that reads the request into a FhirRequest (body size
limit, media type), negotiates the format, dispatches, and renders the answer or the error. An
unexpected exception becomes a 500 OperationOutcome without any internals; its traceback is logged
(never the request body, which may hold PHI).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.datastructures import URL
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from fhirlead import heap
from fhirlead.api.cors import ApiCors
from fhirlead.api.direct import FhirApp
from fhirlead.api.dispatch import dispatch, route_target
from fhirlead.api.messages import FORM, FhirRequest
from fhirlead.api.openapi import openapi_bytes
from fhirlead.api.render import error_response, http_response, negotiate, wants_pretty
from fhirlead.app import files as worklist_app
from fhirlead.auth import routes as auth_routes
from fhirlead.auth.bearer import is_public, policy_for
from fhirlead.bulk import routes as bulk_routes
from fhirlead.errors import FhirError, Issue, internal_error, log_unexpected
from fhirlead.numbers import ascii_int
from fhirlead.server import Server
from fhirlead.settings import Settings
from fhirlead.storage.port import Store

log = logging.getLogger(__name__)

FHIR_PREFIX = "/fhir"
AUTH_PREFIX = "/auth"
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
# Methods FHIR does not use: answered by the FHIR endpoint (405 OperationOutcome with Allow), not by the
# framework's `{"detail": ...}`. OPTIONS preflights with an Origin are answered by the CORS layer first.
UNSUPPORTED_METHODS = ("OPTIONS", "TRACE")


async def read_body(request: Request, limit: int, seconds: float) -> bytes:
    """The body, refusing (413) anything over `limit` bytes before reading it all, and (408) a body
    that has not arrived within `seconds`: a client that declares 100 bytes and sends 10 must not hold
    a connection forever. A request that declares neither a length nor a transfer coding has no body
    (RFC 9112 §6.3): nothing is read for it."""
    declared = request.headers.get("content-length")
    if (declared == "0" or declared is None) and "transfer-encoding" not in request.headers:
        return b""
    too_large = FhirError(413, [Issue("too-costly", f"The request body is larger than {limit} bytes")])
    declared_size = ascii_int(declared)
    if declared_size is not None and declared_size > limit:
        raise too_large
    chunks, size = [], 0
    try:
        async with asyncio.timeout(seconds):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_large
                chunks.append(chunk)
    except TimeoutError:
        raise FhirError(408, [Issue("timeout", f"The request body did not arrive within {seconds:g} s")],
                        {"Connection": "close"}) from None
    return b"".join(chunks)


def check_headers(request: Request, limit: int) -> None:
    """431 for request headers larger than `limit` bytes in all (RFC 6585 §5)."""
    size = sum(len(name) + len(value) for name, value in request.scope.get("headers", ()))
    if size > limit:
        raise FhirError(431, [Issue("too-costly", f"The request headers are larger than {limit} bytes")],
                        {"Connection": "close"})


_BASES: dict[tuple[Any, ...], str] = {}  # (scheme, Host header, server, root path) -> the FHIR base
_BASES_LIMIT = 64  # Host headers come from clients: the cache is bounded


def base_url(request: Request, settings: Settings) -> str:
    """The FHIR base URL: `FHIRLEAD_BASE_URL`, else the request's scheme and host (as Starlette's URL
    reads them) with the root path. Worked out once per host, not per request."""
    if settings.base_url:
        return settings.base_url.rstrip("/")
    scope = request.scope
    host = next((value for key, value in scope["headers"] if key == b"host"), None)
    key = (scope.get("scheme", "http"), host, scope.get("server"), scope.get("root_path", ""))
    found = _BASES.get(key)
    if found is None:
        headers = [(b"host", host)] if host is not None else []
        url = URL(scope={"scheme": key[0], "server": key[2], "path": "/", "query_string": b"", "headers": headers})
        found = f"{url.scheme}://{url.netloc}{key[3]}{FHIR_PREFIX}"
        if len(_BASES) >= _BASES_LIMIT:
            _BASES.clear()
        _BASES[key] = found
    return found


def query_params(request: Request) -> list[tuple[str, str]]:
    """The query's (name, value) pairs in order, as Starlette's QueryParams reads them."""
    query = request.scope.get("query_string", b"")
    return parse_qsl(query.decode("latin-1"), keep_blank_values=True) if query else []


def last_param(params: list[tuple[str, str]], name: str) -> str | None:
    found = None
    for key, value in params:
        if key == name:
            found = value
    return found


async def to_fhir_request(request: Request, path: str, settings: Settings,
                          params: list[tuple[str, str]] | None = None) -> FhirRequest:
    """The request as a FhirRequest; `params` are its query's pairs when the caller has them already."""
    check_headers(request, settings.max_header_bytes)
    body = await read_body(request, settings.max_body_bytes, settings.body_timeout_seconds)
    headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in request.scope["headers"]}
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    params = list(query_params(request) if params is None else params)
    if request.method == "POST" and path.rstrip("/").endswith("_search"):
        if content_type not in ("", FORM):
            raise FhirError(415, [Issue("not-supported", f"_search takes a form body ({FORM})")])
        params += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    return FhirRequest(
        method=request.method,
        base_url=base_url(request, settings),
        path=path.strip("/"),
        params=params,
        headers=headers,
        body=body,
        content_type=content_type,
    )


async def fhir_endpoint(request: Request) -> Response:
    server: Server = request.app.state.server
    path = request.path_params.get("path", "")
    params = query_params(request)
    pretty = (last_param(params, "_pretty") or "").lower() == "true"
    segments = [segment for segment in path.split("/") if segment]
    public = is_public(request.method, segments)
    fhir_request: FhirRequest | None = None
    try:
        if request.method in UNSUPPORTED_METHODS:
            route_target(request.method, segments)  # 404 for no such path, else 405 with Allow
        fhir_request = await to_fhir_request(request, path, server.settings, params)
        pretty = wants_pretty(fhir_request)
        negotiate(fhir_request)
        if server.auth is not None and not public:
            fhir_request.access = await policy_for(server, request.headers.get("authorization"),
                                                   fhir_request.base_url)
        response = http_response(await dispatch(server, fhir_request, segments), pretty)
    except FhirError as error:
        response = error_response(error, pretty)
    except ClientDisconnect:  # the client went away mid-body: nobody is there to answer, nothing to log
        return Response(status_code=499)
    except Exception as error:
        log_unexpected(log, error, f"{request.method} on {segments[0] if segments else 'the base'}")
        response = error_response(internal_error(), pretty)
    audit = getattr(server, "audit", None)
    if audit is not None and not public:
        client = request.scope.get("client")
        try:  # queues the AuditEvent (fhirlead.audit): never awaits the store, never fails the request
            audit.rest(method=request.method, segments=segments, status=response.status_code, request=fhir_request,
                       headers=response.headers, body=getattr(response, "body", None),
                       address=client[0] if client else None)
        except Exception as error:
            log.error("could not record the audit event of a %s request (%s)", request.method,
                      type(error).__name__)
    if request.method == "HEAD":
        if isinstance(response, StreamingResponse):  # its status and headers, not its stream
            response = Response(status_code=response.status_code, headers=dict(response.headers))
        response.body = b""
    return response


async def openapi(request: Request) -> Response:
    server: Server = request.app.state.server
    return Response(openapi_bytes(server, base_url(request, server.settings)), media_type="application/json",
                    headers={"Access-Control-Allow-Origin": "*"})


async def docs(request: Request) -> Response:
    """Swagger UI over /openapi.json, its scripts and styles served from this server (no CDN)."""
    return get_swagger_ui_html(openapi_url="/openapi.json", title="fhirlead FHIR API",
                               swagger_js_url="/docs/assets/swagger-ui-bundle.js",
                               swagger_css_url="/docs/assets/swagger-ui.css",
                               swagger_favicon_url="/docs/assets/favicon-32x32.png")


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def create_app(settings: Settings | None = None, store: Store | None = None, freeze_heap: bool = False,
               validate_ahead: bool = False) -> FastAPI:
    """The application. `store` lets tests and tools hand in an already-built (closed) store.
    `validate_ahead` (`fhirlead serve`): a worker process validates transactions (`Server.validate_ahead`).

    `freeze_heap` (`fhirlead serve`): once started, everything the server holds for its lifetime (the
    definitions, search registry, compiled measures, ...) is moved out of the garbage collector's sight
    (`gc.freeze`), so a request that allocates many objects does not pay for walking them again: a
    `$aggregate-patient` of 3,000 resources spent ~40% of its time in the collector (bench/README.md);
    young collections are then rarer (`heap.settle_server`)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.server = await Server.start(settings, store)
        if validate_ahead:
            app.state.server.validate_ahead()
        await app.state.server.start_audit()
        await app.state.server.start_workers()
        if freeze_heap:
            heap.settle_server()
        try:
            yield
        finally:
            await app.state.server.stop()

    # FastAPI's own /openapi.json would describe none of the FHIR API, and its /docs loads assets from a
    # CDN: the FHIR API's document is generated from the CapabilityStatement instead.
    app = FhirApp(fhir_prefix=FHIR_PREFIX, fhir_endpoint=fhir_endpoint, title="fhirlead", version="0.1.0",
                  lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)
    app.add_middleware(ApiCors)
    # FHIR routes first (the specific ones before the catch-all): a FHIR request is matched against
    # them before the few other routes, none of which is under /fhir.
    app.add_route(FHIR_PREFIX + "/.well-known/smart-configuration", auth_routes.smart_configuration, methods=["GET"])
    app.add_route(FHIR_PREFIX + "/.well-known/openid-configuration", auth_routes.openid_configuration,
                  methods=["GET"])
    app.add_route(FHIR_PREFIX + "/$export-status/{job}", bulk_routes.status, methods=["GET", "DELETE"])
    app.add_route(FHIR_PREFIX + "/$export-file/{job}/{name}", bulk_routes.download, methods=["GET"])
    app.add_route(FHIR_PREFIX, fhir_endpoint, methods=[*METHODS, *UNSUPPORTED_METHODS])
    app.add_route(FHIR_PREFIX + "/{path:path}", fhir_endpoint, methods=[*METHODS, *UNSUPPORTED_METHODS])
    app.add_route("/healthz", health, methods=["GET"])
    app.add_route("/openapi.json", openapi, methods=["GET"])
    app.add_route("/docs", docs, methods=["GET"])
    app.mount("/docs/assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")
    app.add_route("/app", worklist_app.app_root, methods=["GET", "HEAD"])
    app.add_route("/app/{path:path}", worklist_app.app_file, methods=["GET", "HEAD"])
    for name, endpoint, methods in auth_routes.ENDPOINTS:
        app.add_route(f"{AUTH_PREFIX}/{name}", endpoint, methods=methods)
    return app
