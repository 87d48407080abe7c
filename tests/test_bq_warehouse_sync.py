"""The BigQuery warehouse's sync, against the emulator (tests/bq.py): raw in BigQuery equals the source
after every sync — full loads, changes merged, deletes, tombstones, a file's table and its quarantine —
and a sync killed at any moment converges; BigQuery holding another state than the local mirror's
(a kill between the two commits, a table dropped by hand) is noticed and the table sent whole.

What the emulator differs in is said where it matters (docs/warehouses.md, "BigQuery emulator").
Measured: ~40 s on two cores (most of it the kills' `headwater sync` processes)."""

from __future__ import annotations

import datetime as dt
import json
import random
import sqlite3
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import bq
import pytest
from sync_harness import kill_at_random_moments, random_seed, run_sync, telling_the_seed

from headwater.config import LoadedProject, load_project
from headwater.sources import open_source
from headwater.sync import TableStats
from headwater.warehouse import open_warehouse

pytestmark = pytest.mark.bigquery

COLUMNS = "id, name, amount, at, flag"


@pytest.fixture
def client(bigquery_emulator: bq.Emulator) -> Any:
    c = bq.client(bigquery_emulator)
    yield c
    c.close()


def make_project(root: Path, emulator: bq.Emulator, sources: str, *, prefix: str | None = None) -> LoadedProject:
    """A project on the emulator, with datasets of its own (a fresh prefix)."""
    root.mkdir(parents=True, exist_ok=True)
    prefix = prefix or f"t{uuid.uuid4().hex[:10]}_"
    (root / "headwater.yml").write_text(
        f"name: bq\nwarehouse:\n  type: bigquery\n  project: {emulator.project}\n  api_endpoint: {emulator.endpoint}\n  dataset_prefix: {prefix}\nsources:\n{sources}"
    )
    return load_project(root)


def sqlite_source(root: Path, rows: int, seed: int) -> sqlite3.Connection:
    db = sqlite3.connect(root / "app.db", isolation_level=None)
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, amount NUMERIC(12,2), at TIMESTAMP, flag BOOLEAN)")
    rng = random.Random(seed)
    db.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?)", [_row(i, rng) for i in range(1, rows + 1)])
    return db


def _row(i: int, rng: random.Random) -> tuple[Any, ...]:
    name = rng.choice([None, "", "ä'\"\\ x", f"name {rng.randrange(10**6)}", "line\nbreak"])
    amount = None if rng.random() < 0.1 else f"{rng.randrange(-10**9, 10**9) / 100:.2f}"
    at = (dt.datetime(2020, 1, 1) + dt.timedelta(seconds=rng.randrange(10**8))).isoformat(sep=" ")
    return (i, name, amount, at, rng.choice([0, 1, None]))


def change_source(db: sqlite3.Connection, rng: random.Random) -> None:
    """Some inserts, updates and deletes."""
    ids = [r[0] for r in db.execute("SELECT id FROM t")]
    top = max(ids, default=0)
    for i in rng.sample(ids, min(len(ids), rng.randrange(0, 8))):
        db.execute("UPDATE t SET name = ?, amount = ?, at = ?, flag = ? WHERE id = ?", (*_row(i, rng)[1:], i))
    for i in rng.sample(ids, min(len(ids), rng.randrange(0, 5))):
        db.execute("DELETE FROM t WHERE id = ?", (i,))
    db.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?)", [_row(top + k, rng) for k in range(1, rng.randrange(0, 6) + 1)])


def source_rows(db: sqlite3.Connection) -> list[tuple[Any, ...]]:
    out = []
    for i, name, amount, at, flag in db.execute(f"SELECT {COLUMNS} FROM t ORDER BY id"):
        out.append((i, name, None if amount is None else Decimal(str(amount)).quantize(Decimal("0.01")), dt.datetime.fromisoformat(at), None if flag is None else bool(flag)))
    return out


def bigquery_rows(client: Any, project: LoadedProject, table: str = "t", source: str = "app") -> list[tuple[Any, ...]]:
    dataset = project.config.warehouse.dataset(f"raw_{source}")  # type: ignore[union-attr]
    listed = ", ".join(f"`{c.strip()}`" for c in COLUMNS.split(","))  # AT is a reserved word in GoogleSQL
    job = client.query(f"SELECT {listed} FROM `{dataset}.{table}` ORDER BY id", retry=None, job_retry=None)
    out = []
    for r in job.result(retry=None, timeout=60):
        amount = None if r["amount"] is None else Decimal(r["amount"]).quantize(Decimal("0.01"))
        out.append((r["id"], r["name"], amount, r["at"], r["flag"]))
    return out


def bigquery_state(client: Any, project: LoadedProject) -> dict[str, dict[str, Any]]:
    dataset = project.config.warehouse.dataset("_headwater")  # type: ignore[union-attr]
    job = client.query(f"SELECT table_name, token, state FROM `{dataset}.sync_state`", retry=None, job_retry=None)
    return {r["table_name"]: {"token": r["token"], "state": json.loads(r["state"]) if r["state"] else None} for r in job.result(retry=None, timeout=60)}


def sync(project: LoadedProject, source: str = "app", **options: Any) -> tuple[list[TableStats], list[str]]:
    warehouse = open_warehouse(project.root, project.config.warehouse)
    log: list[str] = []
    con = warehouse.connect_build()
    try:
        return warehouse.load_raw(con, open_source(source, project.config.sources[source], project.root), log.append, **options), log
    finally:
        con.close()


SQLITE = "  app:\n    type: sqlite\n    path: app.db\n"


def test_changes_merge_into_bigquery_exactly_and_only_changes_are_sent(tmp_path: Path, bigquery_emulator: bq.Emulator, client: Any) -> None:
    seed = random_seed(1901)
    rng = random.Random(seed)
    with telling_the_seed(seed):
        db = sqlite_source(tmp_path, 300, seed)
        project = make_project(tmp_path, bigquery_emulator, SQLITE)
        stats, log = sync(project)
        assert stats[0].mode == "full" and any("BigQuery replaced" in line and "300 rows sent" in line for line in log), log
        assert bigquery_rows(client, project) == source_rows(db)
        for _ in range(4):
            change_source(db, rng)
            stats, log = sync(project)
            assert stats[0].mode == "incremental", stats
            assert bigquery_rows(client, project) == source_rows(db)
            sent = [line for line in log if "BigQuery" in line]
            changed = stats[0].upserted + stats[0].deleted
            if changed:  # only what changed travelled: rows written now and keys deleted now
                assert len(sent) == 1 and "BigQuery merged" in sent[0] and f"{changed:,} rows sent" in sent[0], (sent, stats)
            else:  # nothing changed: BigQuery is not written at all
                assert sent == [], sent
        state = bigquery_state(client, project)["t"]
        local = open_warehouse(project.root, project.config.warehouse).connect_build()
        try:
            local_state = json.loads(local.execute("SELECT state FROM _headwater.sync_state WHERE table_name = 't'").fetchone()[0])
        finally:
            local.close()
        assert state["token"] == local_state["warehouse_token"] is not None  # the two agree on the last change


def test_tombstones_and_a_full_refresh(tmp_path: Path, bigquery_emulator: bq.Emulator, client: Any) -> None:
    db = sqlite_source(tmp_path, 50, 7)
    project = make_project(tmp_path, bigquery_emulator, SQLITE + "    overrides:\n      t: {deletes: tombstone}\n")
    sync(project)
    db.execute("DELETE FROM t WHERE id <= 3")
    stats, _ = sync(project)
    assert stats[0].deleted == 3
    dataset = project.config.warehouse.dataset("raw_app")  # type: ignore[union-attr]
    gone = client.query(f"SELECT id FROM `{dataset}.t` WHERE _headwater_deleted_at IS NOT NULL ORDER BY id", retry=None, job_retry=None).result(retry=None)
    assert [r["id"] for r in gone] == [1, 2, 3]  # kept, marked, in BigQuery as in the mirror
    stats, log = sync(project, full_refresh=True)
    assert stats[0].mode == "full" and any("BigQuery replaced" in line for line in log)
    assert bigquery_rows(client, project) == source_rows(db)  # a full refresh holds the source's rows only


def test_bigquery_out_of_step_with_the_mirror_gets_the_whole_table(tmp_path: Path, bigquery_emulator: bq.Emulator, client: Any) -> None:
    """A kill after BigQuery's commit and before the local one leaves BigQuery a change ahead; a table
    dropped or edited by hand leaves it elsewhere. Either way its token is not the mirror's, and the
    next sync sends the whole table rather than a change on top of rows it cannot vouch for."""
    db = sqlite_source(tmp_path, 40, 3)
    project = make_project(tmp_path, bigquery_emulator, SQLITE)
    sync(project)
    state = project.config.warehouse.dataset("_headwater")  # type: ignore[union-attr]
    raw = project.config.warehouse.dataset("raw_app")  # type: ignore[union-attr]
    client.query(f"UPDATE `{state}.sync_state` SET token = 'someone-else' WHERE table_name = 't'", retry=None, job_retry=None).result(retry=None)
    client.query(f"DELETE FROM `{raw}.t` WHERE id > 20", retry=None, job_retry=None).result(retry=None)  # what a change alone would never repair
    db.execute("UPDATE t SET name = 'after' WHERE id = 1")
    stats, log = sync(project)
    assert stats[0].mode == "incremental" and any("BigQuery replaced" in line and "40 rows sent" in line for line in log), log
    assert bigquery_rows(client, project) == source_rows(db)
    client.delete_table(f"{raw}.t", retry=None)
    db.execute("UPDATE t SET name = 'again' WHERE id = 2")
    _, log = sync(project)
    assert any("BigQuery replaced" in line for line in log), log
    assert bigquery_rows(client, project) == source_rows(db)


def test_a_sync_killed_at_any_moment_converges(tmp_path: Path, bigquery_emulator: bq.Emulator, client: Any) -> None:
    seed = random_seed(1902)
    rng = random.Random(seed)
    with telling_the_seed(seed):
        db = sqlite_source(tmp_path, 2_000, seed)
        project = make_project(tmp_path, bigquery_emulator, SQLITE)
        killed = 0
        for _ in range(3):
            change_source(db, rng)
            outcomes = kill_at_random_moments(project.root, "app", rounds=2, rng=rng, min_delay=0.3, max_delay=3.5)
            killed += sum(o.killed for o in outcomes)
            for o in outcomes:
                assert o.killed or o.returncode == 0, o.output
        done = run_sync(project.root, "app")
        assert done.returncode == 0, done.stdout + done.stderr
        assert bigquery_rows(client, project) == source_rows(db)
        assert killed >= 1  # the kills did land somewhere (the delays span the whole sync)


def test_a_file_source_sends_its_table_and_quarantine(tmp_path: Path, bigquery_emulator: bq.Emulator, client: Any) -> None:
    (tmp_path / "people.csv").write_text("id,region\n1,North\n2,Nowhere\n3,South\n")
    sources = "  sheet:\n    type: csv\n    path: people.csv\n    columns:\n      id: {type: integer}\n      region: {allowed_values: [North, South]}\n"
    project = make_project(tmp_path, bigquery_emulator, sources)
    sync(project, "sheet")
    raw = project.config.warehouse.dataset("raw_sheet")  # type: ignore[union-attr]
    good = client.query(f"SELECT id, region FROM `{raw}.sheet` ORDER BY id", retry=None, job_retry=None).result(retry=None)
    assert [(r["id"], r["region"]) for r in good] == [(1, "North"), (3, "South")]
    bad = client.query(f"SELECT original_value, rule FROM `{raw}.sheet__quarantine`", retry=None, job_retry=None).result(retry=None)
    assert [(r["original_value"], r["rule"]) for r in bad] == [("Nowhere", "allowed_values")]


def test_prune_drops_the_bigquery_table_and_its_state(tmp_path: Path, bigquery_emulator: bq.Emulator, client: Any) -> None:
    db = sqlite_source(tmp_path, 5, 1)
    db.execute("CREATE TABLE gone (id INTEGER PRIMARY KEY)")
    db.execute("INSERT INTO gone VALUES (1)")
    project = make_project(tmp_path, bigquery_emulator, SQLITE)
    sync(project)
    raw = project.config.warehouse.dataset("raw_app")  # type: ignore[union-attr]
    assert {t.table_id for t in client.list_tables(raw, retry=None)} == {"t", "gone"}
    db.execute("DROP TABLE gone")
    stats, _ = sync(project, prune=True)
    assert {s.table: s.mode for s in stats}["gone"] == "pruned"
    assert {t.table_id for t in client.list_tables(raw, retry=None)} == {"t"}
    assert set(bigquery_state(client, project)) == {"t"}


@pytest.mark.postgres
def test_a_postgres_source_written_to_while_syncs_are_killed_converges_in_bigquery(tmp_path: Path, bigquery_emulator: bq.Emulator, client: Any, fresh_pg_database: str) -> None:
    """PostgreSQL's changes by transaction id (xmin), a writer inserting, updating and deleting all the
    while, syncs killed at random moments: one final sync leaves BigQuery's raw equal to the source."""
    import psycopg
    from pg_warehouse import plain_url
    from sync_harness import Writer

    url = plain_url(fresh_pg_database)

    with psycopg.connect(url, autocommit=True) as pg:
        pg.execute("CREATE TABLE t (id bigint PRIMARY KEY, name text, amount numeric(12,2), at timestamp, flag boolean)")
        pg.execute("INSERT INTO t SELECT i, 'n' || i, i * 1.25, timestamp '2024-01-01' + i * interval '1 minute', i % 2 = 0 FROM generate_series(1, 20000) i")
    project = make_project(tmp_path, bigquery_emulator, f"  app:\n    type: postgres\n    url: {url}\n")
    first = run_sync(project.root, "app")
    assert first.returncode == 0, first.stdout + first.stderr
    writer_con = psycopg.connect(url, autocommit=True)
    next_id = [20001]

    def change(rng: random.Random) -> None:
        roll = rng.random()
        if roll < 0.5:
            writer_con.execute("UPDATE t SET name = name || 'x', amount = amount + 1 WHERE id = ANY(%s)", [[rng.randint(1, next_id[0]) for _ in range(3)]])
        elif roll < 0.8:
            writer_con.execute("INSERT INTO t VALUES (%s, 'new', 1, now(), true)", [next_id[0]])
            next_id[0] += 1
        else:
            writer_con.execute("DELETE FROM t WHERE id = %s", [rng.randint(1, next_id[0])])

    seed = random_seed(1904)
    with telling_the_seed(seed):
        with Writer(change, seed=seed) as writer:
            outcomes = kill_at_random_moments(project.root, "app", rounds=5, rng=random.Random(seed), min_delay=0.5, max_delay=4.0)
        writer_con.close()
        assert writer.steps > 20 and sum(o.killed for o in outcomes) >= 1
        final = run_sync(project.root, "app")
        assert final.returncode == 0, final.stdout + final.stderr
        with psycopg.connect(url) as pg:
            expected = [(i, n, a, at, f) for i, n, a, at, f in pg.execute(f"SELECT {COLUMNS} FROM t ORDER BY id").fetchall()]
        assert bigquery_rows(client, project) == expected


def test_raw_tables_are_clustered_by_their_key_and_laid_out_as_configured(tmp_path: Path, bigquery_emulator: bq.Emulator, client: Any) -> None:
    from headwater.errors import ConfigError

    db = sqlite_source(tmp_path, 30, 5)
    project = make_project(tmp_path, bigquery_emulator, SQLITE)
    sync(project)
    raw = project.config.warehouse.dataset("raw_app")  # type: ignore[union-attr]
    table = client.get_table(f"{raw}.t", retry=None)
    assert table.clustering_fields == ["id"] and table.time_partitioning is None  # MERGE matches on the key

    # Laid out otherwise in headwater.yml: the next sync re-creates the table so, with the same rows.
    prefix = project.config.warehouse.dataset_prefix  # type: ignore[union-attr]
    path = tmp_path / "headwater.yml"
    text = path.read_text()
    layout = "  raw_tables:\n    app:\n      t: {partition_by: _headwater_synced_at, granularity: MONTH, cluster_by: [name, id]}\n"
    path.write_text(text.replace(f"  dataset_prefix: {prefix}\n", f"  dataset_prefix: {prefix}\n{layout}"))
    project = load_project(tmp_path)
    db.execute("UPDATE t SET name = 'x' WHERE id = 1")
    _, log = sync(project)
    assert any("BigQuery replaced" in line for line in log), log
    table = client.get_table(f"{raw}.t", retry=None)
    assert (table.time_partitioning.field, table.time_partitioning.type_, table.clustering_fields) == ("_headwater_synced_at", "MONTH", ["name", "id"])
    assert bigquery_rows(client, project) == source_rows(db)

    # A column the table does not have, or one BigQuery cannot partition by, is said so, naming the setting.
    for wrong, said in [("{partition_by: nope}", "nope is not a column of raw_app.t"), ("{partition_by: name}", "is not a date or time column"), ("{cluster_by: [amount, id]}", "")]:
        path.write_text(text.replace(f"  dataset_prefix: {prefix}\n", f"  dataset_prefix: {prefix}\n  raw_tables:\n    app:\n      t: {wrong}\n"))
        db.execute("UPDATE t SET name = 'y' WHERE id = 2")
        if not said:  # NUMERIC clusters: accepted
            sync(load_project(tmp_path))
            assert client.get_table(f"{raw}.t", retry=None).clustering_fields == ["amount", "id"]
            continue
        before = bigquery_rows(client, project)
        with pytest.raises(ConfigError, match=said) as info:
            sync(load_project(tmp_path))
        assert "warehouse.raw_tables.app.t" in info.value.what
        assert bigquery_rows(client, project) == before  # the table failed: BigQuery kept what it had


def _refusing_proxy(endpoint: str, refuse: dict[str, bool]) -> type:
    """An HTTP handler relaying every request to the emulator, except uploads (load jobs' data) while
    ``refuse["uploads"]`` is set: those get a 400, as BigQuery answers an upload it will not take."""
    import http.client
    from urllib.parse import urlsplit

    from loopback import QuietHandler

    target = urlsplit(endpoint)

    class Relay(QuietHandler):
        protocol_version = "HTTP/1.1"

        def _relay(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if refuse["uploads"] and self.path.startswith("/upload/"):
                answer = json.dumps({"error": {"code": 400, "message": "refused by the test's relay", "errors": [{"reason": "invalid", "message": "refused by the test's relay"}]}}).encode()
                self.send_response(400)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
                return
            upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection", "transfer-encoding")}
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            data = response.read()
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            upstream.close()

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _relay

    return Relay


def test_a_send_refused_before_or_after_the_local_commit_is_made_good_by_the_next_sync(tmp_path: Path, bigquery_emulator: bq.Emulator, client: Any) -> None:
    """A change refused by BigQuery rolls the local transaction back (the next sync reads it again);
    a whole table refused after the local commit fails the table saying so, and the next sync, its
    token not BigQuery's, sends it whole."""
    from loopback import http_server

    from headwater.errors import HeadwaterError

    refuse = {"uploads": False}
    with http_server(_refusing_proxy(bigquery_emulator.endpoint, refuse)) as relay:
        db = sqlite_source(tmp_path, 60, 11)
        relayed = bq.Emulator(bigquery_emulator.base, project=bigquery_emulator.project, rest_port=int(relay.rsplit(":", 1)[1]))
        project = make_project(tmp_path, relayed, SQLITE)
        sync(project)

        db.execute("UPDATE t SET name = 'changed' WHERE id <= 3")
        refuse["uploads"] = True
        with pytest.raises(HeadwaterError) as refused:
            sync(project)
        said = refused.value.render()
        assert "source app, table t: Loading rows into" in said and "refused by the test's relay" in said and "the next sync reads the same changes again" in said, said
        refuse["uploads"] = False
        stats, log = sync(project)
        assert stats[0].upserted == 3 and any("BigQuery merged" in line for line in log), log  # read again: the local transaction was rolled back
        assert bigquery_rows(client, project) == source_rows(db)

        db.execute("DELETE FROM t WHERE id = 10")
        refuse["uploads"] = True
        with pytest.raises(HeadwaterError) as failed:
            sync(project, full_refresh=True)
        said = failed.value.render()
        assert "source app, table t:" in said and "BigQuery's copy of it was not replaced: the next sync sends the whole table again" in said, said
        refuse["uploads"] = False
        stats, log = sync(project)  # nothing changed in the source since: BigQuery is still brought in step
        assert any("BigQuery replaced" in line for line in log), log
        assert bigquery_rows(client, project) == source_rows(db)


@pytest.mark.postgres
def test_rows_bigquery_cannot_hold_are_quarantined_there_and_synced_once_fixed(tmp_path: Path, bigquery_emulator: bq.Emulator, client: Any, fresh_pg_database: str) -> None:
    """BigQuery's DATE holds 0001-01-01 to 9999-12-31 and no infinity; PostgreSQL holds both (DuckDB
    too). Such rows are set aside in the table's quarantine, sent to BigQuery beside raw, with key,
    column and why; the other rows sync. A row fixed in the source syncs; one deleted leaves the
    quarantine; the quarantine, emptied, is dropped in BigQuery too. Never a failing table each sync."""
    import psycopg
    from pg_warehouse import plain_url

    url = plain_url(fresh_pg_database)
    with psycopg.connect(url, autocommit=True) as pg:
        pg.execute("CREATE TABLE t (id int PRIMARY KEY, d date, note text)")
        pg.execute("INSERT INTO t VALUES (1, '2024-01-02', 'a'), (2, 'infinity', 'b'), (3, '0044-03-15 BC', 'c'), (4, '2024-02-03', 'd')")
        project = make_project(tmp_path, bigquery_emulator, f"  app:\n    type: postgres\n    url: {url}\n")
        raw = project.config.warehouse.dataset("raw_app")  # type: ignore[union-attr]

        def rows(table: str, columns: str) -> list[tuple[Any, ...]]:
            return [tuple(r.values()) for r in client.query(f"SELECT {columns} FROM `{raw}.{table}` ORDER BY 1", retry=None, job_retry=None).result(retry=None)]

        stats, log = sync(project)
        assert stats[0].quarantined == 2 and "raw_app.t__quarantine" in " ".join(stats[0].notes)
        assert any("such rows are set aside (on_refused: quarantine)" in line for line in log), log
        assert rows("t", "id, d, note") == [(1, dt.date(2024, 1, 2), "a"), (4, dt.date(2024, 2, 3), "d")]
        quarantined = rows("t__quarantine", "key, column_name, original_value, rule, message")
        assert [(k, c, v, r) for k, c, v, r, _ in quarantined] == [("id=2", "d", "infinity", "refused"), ("id=3", "d", "0044-03-15 (BC)", "refused")]
        assert "infinite date" in quarantined[0][4] and "outside" in quarantined[1][4]

        pg.execute("UPDATE t SET d = '2024-05-06' WHERE id = 2")
        pg.execute("UPDATE t SET note = 'dd' WHERE id = 4")
        stats, _ = sync(project)
        assert stats[0].quarantined == 1
        assert rows("t", "id, d, note") == [(1, dt.date(2024, 1, 2), "a"), (2, dt.date(2024, 5, 6), "b"), (4, dt.date(2024, 2, 3), "dd")]
        assert [r[0] for r in rows("t__quarantine", "key")] == ["id=3"]

        pg.execute("DELETE FROM t WHERE id = 3")
        stats, _ = sync(project)
        assert stats[0].quarantined == 0
        assert {t.table_id for t in client.list_tables(raw, retry=None)} == {"t"}
        assert rows("t", "id") == [(1,), (2,), (4,)]
