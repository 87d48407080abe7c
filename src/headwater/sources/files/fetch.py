"""Where a file source's bytes come from: a path, a glob of paths, or an http(s) URL.

A URL (a sheet "published to the web" as CSV, a file on an intranet) is downloaded with httpx,
streamed into the sync's work folder, and from then on treated like a local file, so its content hash
decides whether anything changed.
"""

from __future__ import annotations

import glob
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

from headwater.errors import ConfigError, HeadwaterError, NotFound, TransientFailure, host_not_found, unresolved_host

_URL = re.compile(r"^https?://", re.IGNORECASE)
_GLOB = re.compile(r"[*?\[]")
DOWNLOAD_TIMEOUT = 120.0


@dataclass(frozen=True)
class LocalFile:
    path: Path  # where to read it now
    label: str  # what the quarantine and reports call it: the path as configured, or the URL


def is_url(location: str) -> bool:
    return bool(_URL.match(location))


def resolve(location: str, root: Path, work: Path, what: str) -> list[LocalFile]:
    """The files behind ``location``, sorted by name (a glob gives one or more)."""
    if is_url(location):
        return [download(location, work, what)]
    pattern = location if Path(location).is_absolute() else str(root / location)
    if _GLOB.search(location):
        matches = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
        if not matches:
            raise NotFound(f"{what}: no file matches {location}", why=f"looked in {root}", fix="Check the pattern (relative paths start at the project folder).")
        return [LocalFile(p, _label(p, root)) for p in matches]
    path = Path(pattern)
    if not path.is_file():
        raise ConfigError(f"{what}: file {path} does not exist", fix="Fix the path in headwater.yml (relative paths start at the project folder).")
    return [LocalFile(path, location)]


def _label(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def shown_url(url: str) -> str:
    """The URL without any user:password part, for logs and the quarantine."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def download(url: str, work: Path, what: str, timeout: float = DOWNLOAD_TIMEOUT) -> LocalFile:
    name = Path(urlsplit(url).path).name or "download"
    handle, raw_target = tempfile.mkstemp(dir=work, suffix=f"-{name}")
    os.close(handle)
    target = Path(raw_target)
    shown = shown_url(url)
    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=timeout) as response:
            if response.status_code >= 400:
                kind = TransientFailure if response.status_code in (408, 429) or response.status_code >= 500 else HeadwaterError
                raise kind(
                    f"{what}: downloading {shown} failed with HTTP {response.status_code}",
                    why=response.reason_phrase or None,
                    fix="Check that the URL is right and public (a Google sheet: File > Share > Publish to web, as CSV)."
                    if kind is HeadwaterError
                    else "The server had a problem; the run is retried.",
                )
            with open(target, "wb") as file:
                file.writelines(response.iter_bytes(1 << 20))
    except httpx.TransportError as exc:
        if unresolved_host(str(exc)):
            raise host_not_found(what, urlsplit(url).hostname or "", f"the source's path ({shown})", f"{type(exc).__name__}: {exc}") from None
        raise TransientFailure(f"{what}: cannot download {shown}", why=f"{type(exc).__name__}: {exc}", fix="Check the network and the address; the run is retried.") from None
    return LocalFile(target, shown)
