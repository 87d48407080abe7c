"""Google Sheets through the Sheets API v4, signed in as a service account.

    service account key (JSON) ──JWT signed RS256──▶ POST token_uri ──▶ access token
    GET {api_url}/v4/spreadsheets/{id}?fields=sheets.properties(title)       (tab names, when needed)
    GET {api_url}/v4/spreadsheets/{id}/values:batchGet?ranges=...             (every table at once)
        valueRenderOption=UNFORMATTED_VALUE      numbers with all their digits, never "2.03E+09"
        dateTimeRenderOption=FORMATTED_STRING    dates as the sheet shows them, read by the column's
                                                 format: rule, exactly like the same sheet exported to CSV

The token endpoint is the key's own ``token_uri`` and the API's address is ``api_url``, which is how
the tests run the whole exchange against a local server speaking the same wire format (Google's API
cannot be reached from the test machines). The key is never logged or stored.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import duckdb
import httpx
import pyarrow as pa

from headwater.clean.headers import (
    column_names,
    find_header_row,
    header_texts,
    snake_case,
)
from headwater.clean.load import Fixups, Staged
from headwater.config.files import (
    RULE_FIELDS,
    GoogleSheetsSource,
    SheetsRange,
    TableRules,
)
from headwater.errors import ConfigError, HeadwaterError, NotFound, TransientFailure
from headwater.sources.files.base import FileSource, Opened
from headwater.sources.files.cells import cell_text
from headwater.sync.context import SyncContext
from headwater.sync.stats import TableStats

SCOPE = "https://www.googleapis.com/auth/spreadsheets.readonly"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105 - the address of Google's token endpoint, not a secret
_RANGE_START = re.compile(r"!\$?([A-Z]+)\$?(\d+)")


class SheetsClient:
    """The two calls Headwater makes, with Google's errors turned into messages a person can act on."""

    def __init__(self, settings: GoogleSheetsSource, root: Path, where: str) -> None:
        self.settings = settings
        self.where = where
        self.key = _service_account(settings.credentials, root, where)
        self.http = httpx.Client(timeout=settings.timeout.total_seconds())
        self._token: str | None = None

    def close(self) -> None:
        self.http.close()

    def tabs(self) -> list[str]:
        body = self._get(f"/v4/spreadsheets/{quote(self.settings.spreadsheet_id, safe='')}", {"fields": "sheets.properties(title)"})
        return [s["properties"]["title"] for s in body.get("sheets", [])]

    def values(self, ranges: list[str]) -> list[dict[str, Any]]:
        params = [("ranges", r) for r in ranges] + [
            ("majorDimension", "ROWS"),
            ("valueRenderOption", "UNFORMATTED_VALUE"),
            ("dateTimeRenderOption", "FORMATTED_STRING"),
        ]
        body = self._get(f"/v4/spreadsheets/{quote(self.settings.spreadsheet_id, safe='')}/values:batchGet", params)
        return list(body.get("valueRanges", []))

    def _get(self, path: str, params: Any) -> dict[str, Any]:
        url = self.settings.api_url.rstrip("/") + path
        response = self._send("GET", url, params=params, headers={"Authorization": f"Bearer {self._access_token()}"})
        if response.status_code >= 400:
            raise self._api_error(response)
        found: dict[str, Any] = response.json()
        return found

    def _access_token(self) -> str:
        if self._token is None:
            import jwt

            now = int(time.time())
            claims = {"iss": self.key["client_email"], "scope": SCOPE, "aud": self.key["token_uri"], "iat": now, "exp": now + 3600}
            headers = {"kid": self.key["private_key_id"]} if self.key.get("private_key_id") else None
            try:
                assertion = jwt.encode(claims, self.key["private_key"], algorithm="RS256", headers=headers)
            except (ValueError, TypeError, jwt.PyJWTError) as exc:
                raise ConfigError(f"{self.where}: the service account key's private_key cannot sign", why=type(exc).__name__, fix="Download a new JSON key for the service account.") from None
            form = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion}
            response = self._send("POST", self.key["token_uri"], data=form)
            if response.status_code >= 400:
                detail = _json(response)
                reason = detail.get("error_description") or detail.get("error") or response.reason_phrase
                kind = TransientFailure if response.status_code >= 500 else HeadwaterError
                raise kind(
                    f"{self.where}: Google refused to sign in the service account {self.key['client_email']}",
                    why=f"HTTP {response.status_code}: {reason}",
                    fix="Check that the key is current (not deleted in the Cloud console) and that this machine's clock is right.",
                )
            self._token = str(response.json()["access_token"])
        return self._token

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise TransientFailure(f"{self.where}: cannot reach {httpx.URL(url).host}", why=f"{type(exc).__name__}: {exc}", fix="Check the network; the run is retried.") from None

    def _api_error(self, response: httpx.Response) -> HeadwaterError:
        error = _json(response).get("error", {})
        message = error.get("message") or response.reason_phrase
        status = response.status_code
        sheet = self.settings.spreadsheet_id
        if status == 403:
            return HeadwaterError(
                f"{self.where}: the service account may not read spreadsheet {sheet}",
                why=f"HTTP 403: {message}",
                fix=f"Share the sheet with {self.key['client_email']} (Share > add that address as a Viewer), and enable the Sheets API for its project.",
            )
        if status == 404:
            return NotFound(f"{self.where}: spreadsheet {sheet} was not found", why=f"HTTP 404: {message}", fix="Check spreadsheet_id: the part of the sheet's URL between /d/ and /edit.")
        if status == 400:
            return HeadwaterError(f"{self.where}: Google did not accept the request", why=f"HTTP 400: {message}", fix="Check range: a tab's exact name, or a range like 'Regions!A3:F'.")
        kind = TransientFailure if status == 429 or status >= 500 else HeadwaterError
        return kind(f"{self.where}: the Sheets API answered HTTP {status}", why=message, fix="This usually passes; the run is retried." if kind is TransientFailure else None)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _service_account(credentials: str, root: Path, where: str) -> dict[str, str]:
    """The key from its JSON text, or from the file it names. Messages never quote the key."""
    text = credentials.strip()
    if not text.startswith("{"):
        path = Path(text) if Path(text).is_absolute() else root / text
        if not path.is_file():
            raise ConfigError(f"{where}: credentials is neither a JSON key nor the path of a key file", fix="Give the key's JSON (e.g. credentials: ${GOOGLE_SA_KEY}) or its file's path.")
        text = path.read_text(encoding="utf-8")
    try:
        key = json.loads(text)
    except ValueError:
        raise ConfigError(f"{where}: credentials is not valid JSON", fix="Paste the whole JSON key file of the service account (Cloud console > IAM > Service accounts > Keys).") from None
    missing = [k for k in ("client_email", "private_key") if not isinstance(key, dict) or not key.get(k)]
    if missing:
        raise ConfigError(f"{where}: credentials is not a service account key (no {', '.join(missing)})", fix="Use a service account's JSON key, not an OAuth client id.")
    key.setdefault("token_uri", DEFAULT_TOKEN_URI)
    found: dict[str, str] = key  # a JSON object (checked above), as Google issues it: text values
    return found


class GoogleSheetsFileSource(FileSource):
    """``type: google_sheets``: tabs or ranges of one spreadsheet, each a table."""

    settings: GoogleSheetsSource

    def __init__(self, name: str, settings: GoogleSheetsSource, root: Path) -> None:
        super().__init__(name, settings, root)
        self._client: SheetsClient | None = None
        self._values: dict[str, dict[str, Any]] = {}

    def client(self) -> SheetsClient:
        if self._client is None:
            self._client = SheetsClient(self.settings, self.root, f"Source '{self.name}'")
        return self._client

    def table_specs(self, work: Path) -> dict[str, TableRules]:
        s = self.settings
        if s.tables:
            specs: dict[str, TableRules] = dict(s.tables)
        elif s.range == "*":
            rules = s.model_dump(include=set(RULE_FIELDS))
            specs = {}
            for tab in self.client().tabs():
                name = snake_case(tab) or "tab"
                while name in specs:
                    name += "_"
                specs[name] = SheetsRange.model_validate({**rules, "range": _quoted(tab)})
        else:
            specs = {s.table or self.name: s}
        return specs

    def sync(self, ctx: SyncContext) -> list[TableStats]:
        try:
            return super().sync(ctx)
        finally:
            if self._client is not None:
                self._client.close()
                self._client = None
            self._values = {}

    def _range(self, spec: TableRules) -> str:
        asked = spec.range if isinstance(spec, SheetsRange) else self.settings.range
        if asked is None:  # the first tab
            tabs = self.client().tabs()
            if not tabs:
                raise NotFound(f"Source '{self.name}': spreadsheet {self.settings.spreadsheet_id} has no tabs")
            return _quoted(tabs[0])
        return asked if "!" in asked or asked.startswith("'") else _quoted(asked)

    def open_table(self, table: str, spec: TableRules, work: Path) -> Opened:
        wanted = self._range(spec)
        if wanted not in self._values:  # one batchGet for every table of the source
            ranges = list(dict.fromkeys([wanted, *(self._range(s) for s in self.specs.values())]))
            for asked, got in zip(ranges, self.client().values(ranges), strict=True):
                self._values[asked] = got
        block = self._values[wanted]
        rows = block.get("values", [])
        digest = hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()
        shown = block.get("range", wanted)
        return Opened(digest, [shown], lambda con: stage_values(con, rows, _first_row(shown), f"{self.settings.spreadsheet_id} {shown}", spec, self.where(table)))


def _quoted(tab: str) -> str:
    return "'" + tab.replace("'", "''") + "'"


def _first_row(a1: str) -> int:
    """The sheet row (1-based) of a range's first row: 'Regions'!A3:F20 -> 3."""
    match = _RANGE_START.search(a1)
    return int(match.group(2)) if match else 1


def stage_values(con: duckdb.DuckDBPyConnection, values: list[list[Any]], first_row: int, label: str, spec: TableRules, where: str) -> Staged:
    rows = [[cell_text(v) for v in row] for row in values]
    if spec.header:
        top = (spec.header_row - first_row) if spec.header_row else find_header_row(rows)
        data_at = top + spec.header_rows
        header = rows[max(top, 0) : data_at]
        width = max(max((len(r) for r in header), default=0), 1)
        texts = header_texts(header, width)
    else:
        data_at = max((spec.header_row or first_row) - first_row, 0)
        width = max((len(r) for r in rows[data_at:]), default=1)
        texts = [""] * width
    names = column_names(texts, spec, where)
    body = rows[data_at:]
    wider = max((len(r) for r in body), default=0)
    if wider > width:  # values right of the header: kept, in columns named column_N
        names = column_names([*texts, *[""] * (wider - width)], spec, where)
        texts += [""] * (wider - width)
        width = wider
    columns = [[row[i] if i < len(row) else None for row in body] for i in range(width)]
    table = pa.Table.from_arrays(
        [pa.array([label] * len(body), pa.string()), pa.array(range(first_row + data_at, first_row + data_at + len(body)), pa.int64()), *(pa.array(c, pa.string()) for c in columns)],
        names=["_file", "_row", *(f"c{i}" for i in range(width))],
    )
    view = f"hw_values_{abs(hash(label)) % 10**8}"
    con.register(view, table)

    def finish(c: duckdb.DuckDBPyConnection) -> Fixups:
        c.unregister(view)
        return Fixups()

    droppable = [n for n, t in zip(names, texts, strict=True) if not t.strip()]
    return Staged(view, names, where, droppable=droppable, finish=finish)
