"""A local stand-in for Google's OAuth token endpoint and the Sheets API v4, on 127.0.0.1.

Google's API cannot be reached from the test machines, so this server speaks its documented wire
format: the JWT-bearer grant (RFC 7523) at the key's ``token_uri``, which checks the assertion's
RS256 signature with the service account's public key and its claims; ``GET
/v4/spreadsheets/{id}?fields=...`` (tab titles) and ``GET /v4/spreadsheets/{id}/values:batchGet``
with ``ranges``, ``valueRenderOption`` and ``dateTimeRenderOption``. Like Google it omits trailing
empty cells and rows, returns the resolved range in A1 notation with the tab's name quoted, and
answers errors as ``{"error": {"code", "message", "status"}}``. Sheets are kept as Python values:
numbers, booleans, strings, and ``Formatted(value, shown)`` for dates (the formatted string is what
FORMATTED_STRING returns).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from loopback import QuietHandler, http_server

SCOPE = "https://www.googleapis.com/auth/spreadsheets.readonly"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_A1 = re.compile(r"^([A-Z]+)?(\d+)?(?::([A-Z]+)?(\d+)?)?$")


@dataclass(frozen=True)
class Formatted:
    """A date cell: its serial number and the text the sheet shows."""

    serial: float
    shown: str


@dataclass
class ServiceAccount:
    email: str
    key_id: str
    private_pem: str
    public_key: Any

    def key_json(self, token_uri: str) -> str:
        return json.dumps(
            {
                "type": "service_account",
                "project_id": "headwater-tests",
                "private_key_id": self.key_id,
                "private_key": self.private_pem,
                "client_email": self.email,
                "client_id": "1234567890",
                "token_uri": token_uri,
            }
        )


def new_service_account(email: str = "loader@headwater-tests.iam.gserviceaccount.com") -> ServiceAccount:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    return ServiceAccount(email, "key-1", pem, key.public_key())


@dataclass
class FakeSheets:
    url: str = ""
    account: ServiceAccount = field(default_factory=new_service_account)
    spreadsheets: dict[str, dict[str, list[list[Any]]]] = field(default_factory=dict)  # id -> tab -> rows
    shared_with: dict[str, set[str]] = field(default_factory=dict)  # id -> e-mails allowed to read
    tokens_issued: int = 0
    requests: list[tuple[str, str, dict[str, list[str]]]] = field(default_factory=list)  # (method, path, query)
    _tokens: set[str] = field(default_factory=set)

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    def add(self, spreadsheet_id: str, tabs: dict[str, list[list[Any]]], *, shared: bool = True) -> None:
        self.spreadsheets[spreadsheet_id] = tabs
        self.shared_with[spreadsheet_id] = {self.account.email} if shared else set()

    # --- the endpoints ------------------------------------------------------------------------

    def token(self, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        if form.get("grant_type") != [JWT_BEARER]:
            return 400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type"}
        try:
            claims = jwt.decode(form["assertion"][0], self.account.public_key, algorithms=["RS256"], audience=self.token_uri)
        except (jwt.PyJWTError, KeyError) as exc:
            return 400, {"error": "invalid_grant", "error_description": f"Invalid JWT: {type(exc).__name__}"}
        if claims.get("iss") != self.account.email or claims.get("scope") != SCOPE or claims["exp"] - claims["iat"] > 3600:
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT claims"}
        self.tokens_issued += 1
        token = f"ya29.test-{self.tokens_issued}-{int(time.time())}"
        self._tokens.add(token)
        return 200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}

    def api(self, path: str, query: dict[str, list[str]], auth: str | None) -> tuple[int, dict[str, Any]]:
        if not auth or not auth.startswith("Bearer ") or auth[7:] not in self._tokens:
            return _error(401, "Request had invalid authentication credentials.", "UNAUTHENTICATED")
        match = re.fullmatch(r"/v4/spreadsheets/([^/:]+)(/values:batchGet)?", path)
        if not match:
            return _error(404, "Method not found.", "NOT_FOUND")
        sheet_id = unquote(match.group(1))
        if sheet_id not in self.spreadsheets:
            return _error(404, "Requested entity was not found.", "NOT_FOUND")
        if self.account.email not in self.shared_with[sheet_id]:
            return _error(403, "The caller does not have permission", "PERMISSION_DENIED")
        tabs = self.spreadsheets[sheet_id]
        if match.group(2) is None:
            return 200, {"sheets": [{"properties": {"title": title}} for title in tabs]}
        if query.get("majorDimension", ["ROWS"]) != ["ROWS"]:
            return _error(400, "only ROWS is implemented by this test server", "INVALID_ARGUMENT")
        render = query.get("valueRenderOption", ["FORMATTED_VALUE"])[0]
        dates = query.get("dateTimeRenderOption", ["SERIAL_NUMBER"])[0]
        ranges = []
        for asked in query.get("ranges", []):
            resolved = _resolve(asked, tabs)
            if resolved is None:
                return _error(400, f"Unable to parse range: {asked}", "INVALID_ARGUMENT")
            _, rows, a1 = resolved
            block: dict[str, Any] = {"range": a1, "majorDimension": "ROWS"}
            values = _trim([[_render(cell, render, dates) for cell in row] for row in rows])
            if values:
                block["values"] = values
            ranges.append(block)
        return 200, {"spreadsheetId": sheet_id, "valueRanges": ranges}


def _error(code: int, message: str, status: str) -> tuple[int, dict[str, Any]]:
    return code, {"error": {"code": code, "message": message, "status": status}}


def _render(cell: Any, render: str, dates: str) -> Any:
    if isinstance(cell, Formatted):
        if render == "FORMATTED_VALUE" or dates == "FORMATTED_STRING":
            return cell.shown
        return cell.serial
    if render == "FORMATTED_VALUE":
        return "" if cell is None else ("TRUE" if cell is True else "FALSE" if cell is False else str(cell))
    return "" if cell is None else cell


def _trim(rows: list[list[Any]]) -> list[list[Any]]:
    """Google leaves out trailing empty cells of a row and trailing empty rows."""
    out = []
    for row in rows:
        trimmed = row
        while trimmed and trimmed[-1] == "":
            trimmed = trimmed[:-1]
        out.append(trimmed)
    while out and not out[-1]:
        out.pop()
    return out


def _column_number(letters: str) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + ord(ch) - 64
    return n


def _letters(n: int) -> str:
    out = ""
    while n:
        n, rest = divmod(n - 1, 26)
        out = chr(65 + rest) + out
    return out


def _resolve(asked: str, tabs: dict[str, list[list[Any]]]) -> tuple[str, list[list[Any]], str] | None:
    """('Tab'!A3:C) -> (tab, the rows in the range, the range as Google writes it back)."""
    title, _, cells = asked.partition("!")
    if title.startswith("'") and title.endswith("'"):
        title = title[1:-1].replace("''", "'")
    if title not in tabs:
        return None
    grid = tabs[title]
    height = max(len(grid), 1)
    width = max((len(r) for r in grid), default=1) or 1
    match = _A1.match(cells or "")
    if not match:
        return None
    c1, r1, c2, r2 = match.groups()
    first_col, first_row = _column_number(c1) if c1 else 1, int(r1) if r1 else 1
    last_col = _column_number(c2) if c2 else width
    last_row = int(r2) if r2 else height
    rows = [list(grid[r - 1][first_col - 1 : last_col]) if r - 1 < len(grid) else [] for r in range(first_row, last_row + 1)]
    quoted = "'" + title.replace("'", "''") + "'"
    return title, rows, f"{quoted}!{_letters(first_col)}{first_row}:{_letters(last_col)}{last_row}"


@contextmanager
def sheets_server() -> Iterator[FakeSheets]:
    fake = FakeSheets()

    class Handler(QuietHandler):
        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            form = parse_qs(self.rfile.read(int(self.headers.get("Content-Length", 0))).decode())
            fake.requests.append(("POST", self.path, form))
            self._answer(*fake.token(form) if self.path == "/token" else _error(404, "no such endpoint", "NOT_FOUND"))

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            fake.requests.append(("GET", parts.path, query))
            self._answer(*fake.api(parts.path, query, self.headers.get("Authorization")))

    with http_server(Handler) as fake.url:
        yield fake
