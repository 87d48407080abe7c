"""Row-level rules: which rows of the published tables a member may see, enforced on the SQL itself.

A dashboard declares ``row_filters: [{column: region, attribute: region}]``; a membership carries
attributes (``{"region": ["North"]}``). The rules of every dashboard of a project together make its
row policy, and it holds for a table wherever the table is read — every dashboard, every chart,
every download — so no second path shows what the first hides:

- A member **without** any attribute a rule names sees every row (whatever their role).
- A member **with** such an attribute reads each published table through
  ``(SELECT * FROM table WHERE list_contains($hw_scope_region, CAST(region AS VARCHAR)))``: the
  values are bound parameters, compared as text (as the dashboards' filters are). A table without a
  column bound to the member's attribute cannot be read by them at all (fail closed).

The rewrite is done on DuckDB's own parse tree (``json_serialize_sql``/``json_deserialize_sql``), not
on text and not with another parser: every table reference DuckDB sees — in CTEs, subqueries,
joins, pivots, scalar subqueries in any clause — is replaced by its filtered form, whatever the SQL
(table-bound charts and downloads, and the author's own ``sql:`` charts alike). What the rewrite
cannot vouch for is refused for a scoped member: table functions other than ``range``,
``generate_series`` and ``unnest`` (``query()``, ``query_table()`` and friends read tables by name
at run time), ``SUMMARIZE``/``DESCRIBE``, names qualified with another catalog or schema, and names
that are neither a published table nor a CTE of the query. Reading files is off for every snapshot
connection anyway (publish/reader.py). SQL that reads no published table at all (``select 42``,
``range()``, ``values``) has no rows to limit and runs as it is, for everyone.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from headwater.config.model import RESERVED_PREFIX, Dashboard
from headwater.errors import ConfigError, HeadwaterError
from headwater.sqltext import ident, one_value

PARAMETER_PREFIX = f"{RESERVED_PREFIX}scope_"
# Table references DuckDB's parser produces (TableReferenceType); the safe ones are walked into.
WALKED = {"SUBQUERY", "JOIN", "EXPRESSION_LIST", "EMPTY", "PIVOT"}
TABLE_REFS = WALKED | {"BASE_TABLE", "TABLE_FUNCTION", "SHOW_REF", "COLUMN_DATA", "DELIM_GET", "CTE", "BOUND_TABLE_REF", "INVALID"}
SAFE_TABLE_FUNCTIONS = {"range", "generate_series", "unnest"}


class ScopeRefused(HeadwaterError):
    """What a member's row-level rules do not let them read (403 on the web)."""


@dataclass(frozen=True)
class RowScope:
    """The rows one member may see: for each attribute of theirs that a rule binds, the columns it
    binds and the member's values. Empty: every row."""

    columns: tuple[tuple[str, tuple[str, ...]], ...] = ()  # attribute -> columns bound to it
    values: tuple[tuple[str, tuple[str, ...]], ...] = ()  # attribute -> the member's values

    @classmethod
    def for_member(cls, dashboards: Mapping[str, Dashboard], attributes: Mapping[str, Sequence[str]]) -> RowScope:
        bound: dict[str, list[str]] = {}
        for dashboard in dashboards.values():
            for rule in dashboard.row_filters:
                if rule.attribute in attributes and rule.column not in bound.setdefault(rule.attribute, []):
                    bound[rule.attribute].append(rule.column)
        active = sorted(bound)
        return cls(tuple((a, tuple(bound[a])) for a in active), tuple((a, tuple(sorted(set(attributes[a])))) for a in active))

    @property
    def unrestricted(self) -> bool:
        return not self.columns

    @property
    def key(self) -> tuple[object, ...]:
        """What a cached result depends on: two members with equal keys see the same rows."""
        return self.values

    def parameters(self) -> dict[str, list[str]]:
        return {PARAMETER_PREFIX + attribute: list(values) for attribute, values in self.values}

    def conditions(self, table: str, columns: Sequence[str]) -> list[str]:
        """The WHERE conditions limiting ``table`` (with ``columns``) to this member's rows;
        ScopeRefused when a rule's attribute has no column in the table."""
        conditions: list[str] = []
        for attribute, bound in self.columns:
            present = [c for c in bound if c in columns]
            if not present:
                raise ScopeRefused(
                    f"The table '{table}' cannot be shown to you",
                    why=f"your access is limited by '{attribute}', and this table has no column ({', '.join(bound)}) to limit it by",
                    fix="Ask an admin of this organisation to change your access, or the dashboard's author to add the column.",
                )
            conditions.extend(f"list_contains(${PARAMETER_PREFIX}{attribute}, CAST({ident(c)} AS VARCHAR))" for c in present)
        return conditions

    def readable(self, columns: Sequence[str]) -> bool:
        return all(any(c in columns for c in bound) for _attribute, bound in self.columns)

    def apply(self, cur: duckdb.DuckDBPyConnection, sql: str, params: Mapping[str, object]) -> tuple[str, dict[str, object]]:
        """``sql`` with every published table replaced by this member's rows of it, and the
        parameters that needs. Unrestricted: ``sql`` as it is."""
        if self.unrestricted:
            return sql, dict(params)
        clash = sorted(set(params) & set(self.parameters()))
        if clash:  # a filter named like ours would let a URL choose the scope's values
            raise ConfigError(f"The parameter names {', '.join(clash)} are reserved", fix=f"Rename the filter: names starting with '{RESERVED_PREFIX}' are Headwater's own.")
        tree = _serialize(cur, sql)
        catalog = cur.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
        tables = _published(cur, catalog)
        ctes = {name.lower() for name in _cte_names(tree)}
        replacements: dict[str, dict[str, Any]] = {}

        def replacement(ref: dict[str, Any]) -> dict[str, Any]:
            name, columns = tables[ref["table_name"].lower()]
            if name not in replacements:
                where = " AND ".join(self.conditions(name, columns))
                inner = _serialize(cur, f"SELECT * FROM {ident(catalog)}.main.{ident(name)} WHERE {where}")["statements"][0]["node"]
                replacements[name] = inner
            return {
                "type": "SUBQUERY",
                "alias": ref["alias"] or ref["table_name"],
                "sample": ref.get("sample"),
                "query_location": ref.get("query_location"),
                "subquery": {"node": copy.deepcopy(replacements[name]), "named_param_map": []},
                "column_name_alias": ref.get("column_name_alias", []),
            }

        rewritten = _rewrite(tree, lambda ref: _check_ref(ref, tables, ctes, catalog), replacement)
        new_sql = cur.execute("SELECT json_deserialize_sql(?)", [json.dumps(rewritten)]).fetchone()[0]  # type: ignore[index]
        if not replacements:  # reads no published table (every other reference was refused above): no rows to limit
            return new_sql, dict(params)
        return new_sql, {**params, **self.parameters()}


def _serialize(cur: duckdb.DuckDBPyConnection, sql: str) -> dict[str, Any]:
    tree: dict[str, Any] = json.loads(one_value(cur.execute("SELECT json_serialize_sql(?)", [sql])))
    if tree.get("error") or len(tree.get("statements", [])) != 1:
        raise ConfigError("A query could not be checked against your row-level access", why=str(tree.get("error_message") or "it is not one SELECT"), fix="Ask the dashboard's author to simplify the chart's SQL.")
    return tree


def _published(cur: duckdb.DuckDBPyConnection, catalog: str) -> dict[str, tuple[str, list[str]]]:
    rows = cur.execute(
        "SELECT table_name, list(column_name ORDER BY column_index) FROM duckdb_columns() WHERE database_name = ? AND schema_name = 'main' GROUP BY table_name", [catalog]
    ).fetchall()
    return {name.lower(): (name, columns) for name, columns in rows}


def _cte_names(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        cte_map = node.get("cte_map")
        if isinstance(cte_map, dict):
            yield from (entry["key"] for entry in cte_map.get("map", []))
        for value in node.values():
            yield from _cte_names(value)
    elif isinstance(node, list):
        for item in node:
            yield from _cte_names(item)


def _refused(why: str) -> ScopeRefused:
    return ScopeRefused("This chart cannot be shown to you", why=f"your access is limited to some rows, and the chart's SQL {why}", fix="Ask the dashboard's author to read published tables by name only.")


def _check_ref(ref: dict[str, Any], tables: Mapping[str, object], ctes: set[str], catalog: str) -> bool:
    """Whether a BASE_TABLE reference is a published table (to replace); False for a CTE's name.
    Anything else is refused."""
    name = ref["table_name"].lower()
    qualified = ref.get("schema_name") or ref.get("catalog_name")
    if ref.get("at_clause"):
        raise _refused("reads a table at another version")
    if qualified and (ref.get("schema_name", "").lower() not in ("", "main") or ref.get("catalog_name", "") not in ("", catalog)):
        raise _refused(f"reads '{ref.get('catalog_name') or ref.get('schema_name')}', which is not this organisation's published data")
    if name in tables:
        return True  # also when a CTE has its name: filtering the CTE's rows is just as safe
    if name in ctes and not qualified:
        return False
    raise _refused(f"reads '{ref['table_name']}', which is not a published table")


def _rewrite(node: Any, is_table: Any, replacement: Any) -> Any:
    """A copy of the tree with each published table reference replaced (see the module's docstring)."""
    if isinstance(node, list):
        return [_rewrite(item, is_table, replacement) for item in node]
    if not isinstance(node, dict):
        return node
    kind = node.get("type")
    if "class" not in node and isinstance(kind, str) and kind in TABLE_REFS:
        if kind == "BASE_TABLE":
            return replacement(node) if is_table(node) else dict(node)
        if kind == "TABLE_FUNCTION":
            function = str((node.get("function") or {}).get("function_name", "")).lower()
            if function not in SAFE_TABLE_FUNCTIONS:
                raise _refused(f"calls the table function {function or '(unknown)'}()")
        elif kind not in WALKED:
            raise _refused(f"uses {kind.lower().replace('_', ' ')}")
    if "table_name" in node and kind != "BASE_TABLE":
        raise _refused(f"uses {str(kind).lower()}")
    return {key: _rewrite(value, is_table, replacement) for key, value in node.items()}
