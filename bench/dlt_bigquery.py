"""One dlt run for bench/warehouse_bigquery.py: a PostgreSQL table into BigQuery (the emulator), merged on its key.

    .venv-bench/bin/python bench/dlt_bigquery.py SOURCE_URL TABLE ENDPOINT PROJECT DATASET PIPELINES_DIR

Runs in ./.venv-bench (scripts/bench-venv: dlt[bigquery] cannot share ./.venv, see there), as its own
process, so that bench/warehouse_bigquery.py times it whole (start-up and imports included) with its peak
RSS. dlt's `sql_table` source with the pyarrow backend reads the table (incremental on `updated_at`,
primary key `id`) and its BigQuery destination loads it with `write_disposition="merge"`: the first run
is the full load, the next ones the incremental merges (dlt keeps the cursor in PIPELINES_DIR and in
the dataset's `_dlt_pipeline_state`).

Pointing dlt at the emulator needs no patch of dlt, three settings:
- ``BIGQUERY_EMULATOR_HOST``: dlt makes ``bigquery.Client(project, credentials=..., location=...)`` with
  no client options (dlt/destinations/impl/bigquery/sql_client.py, ``open_connection``), and Google's
  client takes its endpoint from this variable when it is set (google/cloud/bigquery/_helpers.py,
  ``_get_bigquery_host``; client.py passes it as ``api_endpoint``).
- credentials: an OAuth2 ``Credentials`` with a fixed token, which the emulator ignores. dlt accepts a
  native Google credentials object, but not ``AnonymousCredentials``: both of its BigQuery credential
  specs (``GcpServiceAccountCredentials``, ``GcpOAuthCredentials`` in
  dlt/common/configuration/specs/gcp_credentials.py) first take it as default credentials and then
  re-parse it as a service-account or OAuth2 object, which fails ("InvalidNativeValue: GcpOAuthCredentials
  cannot parse the configuration value provided. The value is of type AnonymousCredentials").
  A token without an expiry is never refreshed, so no request goes to Google's token endpoint.
- ``DATA_WRITER__DISABLE_COMPRESSION``: dlt writes its own state and version rows as gzipped JSONL;
  BigQuery reads gzipped JSONL (https://cloud.google.com/bigquery/docs/loading-data-cloud-storage-json),
  the emulator does not ("Malformed JSON ... at byte 1"; emulator differs from BigQuery). The table's
  rows are Parquet (pyarrow backend) either way: Parquet compresses inside the file and this setting
  does not change it.

The emulator's other gaps do not bite dlt: it creates every table by DDL before loading into it (a load
job cannot create its table in the emulator), and its merge runs as is: the rows are loaded into a
staging dataset, then a .sql job of the load package DELETEs the target's rows with those keys and
INSERTs the staging rows, deduplicated.

Prints one JSON line last: in-process seconds (after the imports), rows normalized for the table, the
seconds of dlt's steps (extract, normalize, load), the table's columns in BigQuery, and the bytes of the load package's files that were uploaded by load jobs (all of them, and the table's own
Parquet; not the merge's .sql job, which runs as a query).
"""

from __future__ import annotations

import json
import os
import sys
import time

import dlt
from dlt.sources.sql_database import sql_table
from google.oauth2.credentials import Credentials


def main() -> None:
    started = time.perf_counter()  # after the imports, like headwater's own "seconds"
    url, table, endpoint, project, dataset, pipelines_dir = sys.argv[1:7]
    os.environ["BIGQUERY_EMULATOR_HOST"] = endpoint
    os.environ["DATA_WRITER__DISABLE_COMPRESSION"] = "true"
    source = sql_table(credentials=url, table=table, schema="public", backend="pyarrow", incremental=dlt.sources.incremental("updated_at"), primary_key="id")
    destination = dlt.destinations.bigquery(credentials=Credentials(token="emulator"), project_id=project, location="US")  # noqa: S106 (the emulator reads no token)
    pipeline = dlt.pipeline(pipeline_name="bench", destination=destination, dataset_name=dataset, pipelines_dir=pipelines_dir)
    info = pipeline.run(source, write_disposition="merge")
    info.raise_on_failed_jobs()
    seconds = time.perf_counter() - started
    rows = 0
    trace = pipeline.last_trace
    if trace is not None and trace.last_normalize_info is not None:
        rows = int(trace.last_normalize_info.row_counts.get(table, 0))
    uploaded = table_bytes = files = 0
    for package in info.load_packages:
        for job in package.jobs["completed_jobs"]:
            if job.job_file_info.file_format == "sql":  # the merge's statements: a query, not an upload
                continue
            files += 1
            uploaded += job.file_size
            if job.job_file_info.table_name == table:
                table_bytes += job.file_size
    steps = {}  # where the time went: extract (read the source), normalize (write the files), load (upload, merge)
    for step in trace.steps if trace is not None else []:
        if step.step != "run" and step.started_at is not None and step.finished_at is not None:  # "run": the three together
            steps[step.step] = round((step.finished_at - step.started_at).total_seconds(), 3)
    print(json.dumps({"seconds": round(seconds, 3), "rows": rows, "uploaded_bytes": uploaded, "table_bytes": table_bytes, "files": files, "steps": steps, "columns": list(pipeline.default_schema.get_table_columns(table))}))


if __name__ == "__main__":
    main()
