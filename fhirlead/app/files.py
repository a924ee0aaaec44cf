"""`/app/`: the worklist app's files, with a strict Content-Security-Policy (no inline script or style,
everything from this origin), no caching of stale code, and no Referer (the redirect URL carries the
authorization code)."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, RedirectResponse, Response

from fhirlead.app.assets import BUNDLE, assets_folder

HERE = Path(__file__).resolve().parent
FILES = {"index.html": "text/html; charset=utf-8", "launch.html": "text/html; charset=utf-8",
         "app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Cache-Control": "no-cache", "X-Frame-Options": "DENY"}


async def app_file(request: Request) -> Response:
    """GET /app/<file>: one of the app's files, `fhir-client.js` from the assets folder; 404 otherwise."""
    name = request.path_params.get("path", "") or "index.html"
    if name == BUNDLE:
        bundle = assets_folder() / BUNDLE
        if not bundle.is_file():
            return PlainTextResponse(f"/app/{BUNDLE} is not installed on this server: run `fhirlead app-assets`",
                                     404, headers=HEADERS)
        return FileResponse(bundle, media_type=FILES["app.js"], headers=HEADERS)
    if name not in FILES:
        return PlainTextResponse("Not found", 404, headers=HEADERS)
    return FileResponse(HERE / name, media_type=FILES[name], headers=HEADERS)


async def app_root(request: Request) -> Response:
    """GET /app: to /app/ (relative links of the pages resolve against it)."""
    return RedirectResponse(request.url.replace(path=request.url.path + "/"), 308)
