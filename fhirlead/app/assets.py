"""`fhirlead app-assets`: fetch the SMART JavaScript client's browser bundle for the worklist app.

`fhirclient` 2.6.3 (https://github.com/smart-on-fhir/client-js, Apache-2.0) is someone else's code: it is not
kept in the repository. This downloads its npm package once, checks it against the sha512 integrity pinned
here (npm's Subresource-Integrity form, the same as tests/browser/package-lock.json), and keeps only
`build/fhir-client.js` and `LICENSE`, in the assets folder: `FHIRLEAD_APP_ASSETS`, else `fhirlead/app/vendor/`
(gitignored). `/app/fhir-client.js` serves it from there.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import io
import os
import tarfile
from pathlib import Path

import httpx

PACKAGE_URL = "https://registry.npmjs.org/fhirclient/-/fhirclient-2.6.3.tgz"
INTEGRITY = "sha512-CirZixcwWelbkIXxpxlNQx5+ZdJirl6F1s4y4yvA1X7hHAkr9n99aVHaMi0wX+97nATjKQ65X6NB5as/wZoJzg=="
BUNDLE = "fhir-client.js"
WANTED = {"package/build/fhir-client.js": BUNDLE, "package/LICENSE": "LICENSE"}
DEFAULT_FOLDER = Path(__file__).resolve().parent / "vendor"


class AssetError(Exception):
    """The package could not be fetched, or is not the one pinned."""


def assets_folder() -> Path:
    """Where the app's third-party files are: FHIRLEAD_APP_ASSETS, else fhirlead/app/vendor/."""
    configured = os.environ.get("FHIRLEAD_APP_ASSETS", "")
    return Path(configured) if configured else DEFAULT_FOLDER


def verify(data: bytes, integrity: str | None = None) -> None:
    """`data` must have the pinned sha512 (W3C Subresource Integrity: `sha512-<base64 digest>`)."""
    algorithm, _, expected = (integrity or INTEGRITY).partition("-")
    if algorithm != "sha512":
        raise AssetError(f"unsupported integrity algorithm {algorithm!r}")
    actual = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if not hmac.compare_digest(actual, expected):
        raise AssetError(f"{PACKAGE_URL} does not have the pinned sha512 (got sha512-{actual})")


def extract(data: bytes, folder: Path) -> list[Path]:
    """Write the wanted files of the (verified) package into `folder`; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as package:
        for member in package.getmembers():
            name = WANTED.get(member.name)
            if name is None or not member.isfile():
                continue
            source = package.extractfile(member)
            if source is None:
                continue
            target = folder / name
            partial = target.with_suffix(target.suffix + ".part")
            partial.write_bytes(source.read())
            partial.replace(target)  # never a half-written bundle
            written.append(target)
    missing = set(WANTED.values()) - {p.name for p in written}
    if missing:
        raise AssetError(f"the package has no {', '.join(sorted(missing))}")
    return written


def download(folder: Path, url: str = PACKAGE_URL, transport: httpx.BaseTransport | None = None) -> list[Path]:
    """Fetch, verify and extract the package into `folder`."""
    try:
        with httpx.Client(transport=transport, follow_redirects=True, timeout=60) as http:
            answer = http.get(url)
    except httpx.HTTPError as error:
        raise AssetError(f"could not download {url}: {type(error).__name__}") from None
    if answer.status_code != 200:
        raise AssetError(f"could not download {url}: HTTP {answer.status_code}")
    verify(answer.content)
    return extract(answer.content, folder)


def run(args: argparse.Namespace) -> int:
    folder = Path(args.dest) if args.dest else assets_folder()
    try:
        written = download(folder)
    except (AssetError, OSError, tarfile.TarError) as error:
        print(f"fhirlead app-assets: {error}")
        return 1
    for path in written:
        print(path)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("app-assets", help="download the SMART JavaScript client the /app/ worklist "
                                                      "app needs (npm fhirclient 2.6.3, integrity checked)")
    parser.add_argument("--dest", help="folder to write fhir-client.js and LICENSE to "
                                       "(default: FHIRLEAD_APP_ASSETS, else fhirlead/app/vendor/)")
    parser.set_defaults(run=run)
