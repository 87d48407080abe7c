"""The type parsers (DuckDB SQL) against a plain-Python reference, on generated inputs.

The reference is written from the documented rules (docs/files.md, "Types"), with Python's own
int/float/strptime doing the parsing; the SQL is what the sync runs. Inputs are both values written
the way spreadsheets write them and arbitrary text near the accepted shapes.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from decimal import Decimal

import duckdb
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from headwater.clean.parsers import parse_sql
from headwater.config.files import ColumnRules

CON = duckdb.connect()
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EPOCH = dt.date(1899, 12, 30)


def sql_parse(text: str | None, rules: ColumnRules) -> object:
    return CON.execute(f"SELECT {parse_sql('$t', rules)}", {"t": text}).fetchone()[0]


# --- the reference -------------------------------------------------------------------------------


def ref_integer(text: str, sep: str = ",", dec: str = ".") -> int | None:
    body = text[1:] if text[:1] in "+-" else text
    whole, _, fraction = body.partition(dec)
    if (dec in body and (not fraction or set(fraction) != {"0"})) or not whole or not whole.isascii() or not whole.replace(sep, "").isdigit():
        return None
    if sep in whole:
        groups = whole.split(sep)
        if not (1 <= len(groups[0]) <= 3 and all(len(g) == 3 for g in groups[1:])):
            return None
    value = int(whole.replace(sep, "")) * (-1 if text.startswith("-") else 1)
    return value if -(2**63) <= value < 2**63 else None


def ref_decimal(text: str) -> float | None:
    match = re.fullmatch(r"[+-]?(?:(\d+|\d{1,3}(?:,\d{3})+)(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,3})?", text, flags=re.ASCII)
    if not match:
        return None
    value = float(text.replace(",", ""))
    return value if math.isfinite(value) else None


def ref_date(text: str, formats: list[str]) -> dt.date | None:
    for fmt in formats:
        if fmt == "excel":
            if re.fullmatch(r"\d{2,7}(\.0+)?", text, flags=re.ASCII) and 61 <= float(text) <= 2958465:
                return EPOCH + dt.timedelta(days=int(float(text)))
            continue
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}( 00:00:00(\.0+)?)?", text, flags=re.ASCII):
        try:
            return dt.date.fromisoformat(text[:10])
        except ValueError:
            return None
    return None


# --- integers and decimals -------------------------------------------------------------------------


def grouped(n: int) -> str:
    return f"{n:,}"


@SETTINGS
@given(st.one_of(st.integers(-(2**63), 2**63 - 1).map(str), st.integers(-(10**12), 10**12).map(grouped), st.integers(0, 10**6).map(lambda n: f"{n}.0"), st.text("0123456789,.-+ex", max_size=12)))
@example("12.5")
@example("1,2,3")
@example("0x1F")
@example("1_000")
@example("99999999999999999999")
def test_integer_matches_reference(text: str) -> None:
    assert sql_parse(text, ColumnRules(type="integer")) == ref_integer(text)


@SETTINGS
@given(st.integers(0, 10**9).map(lambda n: f"{n:,}".replace(",", ".")))
def test_integer_with_dot_grouping(text: str) -> None:
    rules = ColumnRules(type="integer", thousands_separator=".", decimal_separator=",")
    assert sql_parse(text, rules) == ref_integer(text, sep=".", dec=",")


@SETTINGS
@given(st.one_of(st.floats(allow_nan=False, allow_infinity=False).map(repr), st.floats(-1e9, 1e9).map(lambda f: f"{f:,.2f}"), st.text("0123456789,.-+eE", max_size=10)))
@example("nan")
@example("inf")
@example("1e999")
@example(".5")
@example("5.")
def test_decimal_matches_reference(text: str) -> None:
    got = sql_parse(text, ColumnRules(type="decimal"))
    want = ref_decimal(text)
    assert (got is None) == (want is None), (text, got, want)
    if want is not None:
        assert got == pytest.approx(want, rel=1e-15, abs=0)


@SETTINGS
@given(st.decimals(min_value=-(10**12), max_value=10**12, places=2, allow_nan=False, allow_infinity=False))
def test_decimal_with_scale_is_exact(value) -> None:
    text = f"{value:,.2f}"
    assert sql_parse(text, ColumnRules(type="decimal", scale=2)) == value
    assert sql_parse(text + "1", ColumnRules(type="decimal", scale=2)) is None  # a third decimal would be rounded: refused


# --- booleans ----------------------------------------------------------------------------------------


@SETTINGS
@given(st.sampled_from(["yes", "Yes", "YES", "y", "Y", "true", "True", "1", "no", "NO", "n", "false", "FALSE", "0", "maybe", "2", "", "yes!"]))
def test_boolean(text: str) -> None:
    want = True if text.lower() in ("yes", "y", "true", "1") else False if text.lower() in ("no", "n", "false", "0") else None
    assert sql_parse(text, ColumnRules(type="boolean")) is want


# --- dates ---------------------------------------------------------------------------------------------

FORMATS = ["%d/%m/%Y", "%m/%d/%Y", "%Y-%m-%d", "%d.%m.%Y", "%d %b %Y", "%B %d, %Y", "%Y%m%d"]
dates = st.dates(min_value=dt.date(1900, 3, 1), max_value=dt.date(9999, 12, 31))


@SETTINGS
@given(dates, st.sampled_from(FORMATS), st.booleans())
def test_date_round_trip(day: dt.date, fmt: str, unpadded: bool) -> None:
    text = day.strftime(fmt)
    if unpadded and fmt in ("%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y"):
        text = re.sub(r"\b0(\d)", r"\1", text)  # 05/03/2024 -> 5/3/2024, as spreadsheets often write
    assert sql_parse(text, ColumnRules(type="date", format=fmt)) == day == ref_date(text, [fmt])


@SETTINGS
@given(st.text("0123456789/", min_size=1, max_size=11))
@example("31/02/2024")
@example("05/03/24")
@example("0/0/0000")
@example("00/01/2024")
def test_date_agrees_with_strptime_on_any_text(text: str) -> None:
    rules = ColumnRules(type="date", format="%d/%m/%Y")
    assert sql_parse(text, rules) == ref_date(text, ["%d/%m/%Y"]), text


@SETTINGS
@given(st.integers(-10, 3_000_000))
def test_excel_serial_dates(serial: int) -> None:
    rules = ColumnRules(type="date", format=["%d/%m/%Y", "excel"])
    assert sql_parse(str(serial), rules) == ref_date(str(serial), ["%d/%m/%Y", "excel"])


def test_known_excel_serials() -> None:
    rules = ColumnRules(type="date", format="excel")
    assert sql_parse("45356", rules) == dt.date(2024, 3, 5)
    assert sql_parse("61", rules) == dt.date(1900, 3, 1)  # the first serial after Excel's phantom 1900-02-29
    assert sql_parse("60", rules) is None
    assert sql_parse("45356.5", rules) is None  # a time of day: a datetime, not a date


# --- datetimes -----------------------------------------------------------------------------------------


@SETTINGS
@given(st.datetimes(min_value=dt.datetime(1950, 1, 1), max_value=dt.datetime(2100, 1, 1)).map(lambda d: d.replace(second=0, microsecond=0)))
def test_datetime_in_a_time_zone_is_the_right_instant(moment: dt.datetime) -> None:
    from zoneinfo import ZoneInfo

    rules = ColumnRules(type="datetime", format="%d/%m/%Y %H:%M", timezone="Europe/Berlin")
    got = sql_parse(moment.strftime("%d/%m/%Y %H:%M"), rules)
    local = moment.replace(tzinfo=ZoneInfo("Europe/Berlin"))
    if local.astimezone(dt.UTC).astimezone(ZoneInfo("Europe/Berlin")).replace(tzinfo=None) != moment:
        return  # a wall time skipped by a daylight-saving change: no single right answer
    assert got == local.astimezone(dt.UTC)


@SETTINGS
@given(st.floats(61, 2958465, allow_nan=False).map(lambda f: round(f, 6)))
@example(32768.945312)  # as a double times 86,400,000,000 it lands on .5: rounded up, a microsecond late
def test_excel_serial_datetimes(serial: float) -> None:
    """The serial's text read exactly: a day number with up to six decimals is a whole number of microseconds."""
    got = sql_parse(repr(serial), ColumnRules(type="datetime", format="excel"))
    want = dt.datetime(1899, 12, 30) + dt.timedelta(microseconds=int(Decimal(repr(serial)) * 86_400_000_000))
    assert got == want
