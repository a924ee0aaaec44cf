"""The sign-in, patient-picker and consent pages: plain HTML forms that work without JavaScript.

Their field names are a contract (browser tests and automation rely on them): sign-in has `username` and
`password`; the picker is radio inputs named `patient` whose values are Patient ids; consent lists every
requested scope as a checked checkbox named `scope` and has two submit buttons `name="decision"` with
values `allow` and `deny`. Every form carries the pending request's id and its CSRF token.
"""

from __future__ import annotations

from html import escape

from starlette.responses import HTMLResponse

HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
}
STYLE = ("body{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;color:#222}"
         "label{display:block;margin:.6rem 0}input[type=text],input[type=password]{width:100%;padding:.4rem}"
         "button{padding:.5rem 1.2rem;margin-right:.6rem}.error{color:#a00}.scope{font-family:monospace}")


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)} · fhirlead</title>"
            f"<meta name=viewport content='width=device-width'><style>{STYLE}</style></head>"
            f"<body><h1>{escape(title)}</h1>{body}</body></html>")
    return HTMLResponse(html, status, headers=HEADERS)


def _hidden(request_id: str, csrf: str) -> str:
    return (f"<input type=hidden name=request_id value='{escape(request_id, quote=True)}'>"
            f"<input type=hidden name=csrf value='{escape(csrf, quote=True)}'>")


def sign_in(request_id: str, csrf: str, client_name: str, error: str | None = None, status: int = 200) -> HTMLResponse:
    message = f"<p class=error role=alert>{escape(error)}</p>" if error else ""
    return page("Sign in", (
        f"<p><strong>{escape(client_name)}</strong> asks to access FHIR data on your behalf.</p>{message}"
        "<form method=post action=login>"
        f"{_hidden(request_id, csrf)}"
        "<label>User name <input type=text name=username autocomplete=username required autofocus></label>"
        "<label>Password <input type=password name=password autocomplete=current-password required></label>"
        "<button type=submit>Sign in</button></form>"
    ), status)


def pick_patient(request_id: str, csrf: str, patients: list[tuple[str, str]]) -> HTMLResponse:
    if not patients:
        return page("Choose a patient", "<p class=error>There is no patient you may open.</p>", 403)
    options = "".join(
        f"<label><input type=radio name=patient value='{escape(pid, quote=True)}' required"
        f"{' checked' if n == 0 else ''}> {escape(label)}</label>"
        for n, (pid, label) in enumerate(patients)
    )
    return page("Choose a patient", (
        f"<form method=post action=patient>{_hidden(request_id, csrf)}{options}"
        "<button type=submit>Continue</button></form>"
    ))


def consent(request_id: str, csrf: str, client_name: str, scopes: list[str], patient: str | None) -> HTMLResponse:
    context = f"<p>Patient: <strong>{escape(patient)}</strong></p>" if patient else ""
    boxes = "".join(
        f"<label><input type=checkbox name=scope value='{escape(scope, quote=True)}' checked> "
        f"<span class=scope>{escape(scope)}</span></label>"
        for scope in scopes
    )
    return page("Allow access?", (
        f"<p><strong>{escape(client_name)}</strong> asks for these permissions. Untick any you do not "
        f"want to give.</p>{context}<form method=post action=consent>{_hidden(request_id, csrf)}{boxes}"
        "<button type=submit name=decision value=allow>Allow</button>"
        "<button type=submit name=decision value=deny>Deny</button></form>"
    ))


def failure(text: str, status: int = 400) -> HTMLResponse:
    """An error the browser's user sees, where redirecting to the client would be unsafe."""
    return page("Cannot continue", f"<p class=error role=alert>{escape(text)}</p>", status)
