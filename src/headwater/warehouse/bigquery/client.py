"""Google's BigQuery client as the warehouse uses it: credentials, jobs with the project's byte limit,
and Google's errors as Headwater's (what happened, why, what to do; transient ones retried).

Google's libraries come with ``pip install 'headwater[bigquery]'``; an embedded install stays without
them, and a BigQuery warehouse then says which command to run. Every job is labelled with the run's
purpose and logs the bytes it processed (what BigQuery bills on demand):
https://cloud.google.com/bigquery/docs/reference/rest/v2/Job#JobStatistics2 (totalBytesProcessed,
totalBytesBilled). ``maximum_bytes_billed`` makes BigQuery refuse a query that would bill more, before
it runs: https://cloud.google.com/bigquery/docs/best-practices-costs#limit_query_costs_by_restricting_the_number_of_bytes_billed
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headwater.errors import HeadwaterError, RunFailed, TransientFailure, first_line, host_not_found, unresolved_host
from headwater.redact import redact

if TYPE_CHECKING:
    from google.cloud import bigquery

    from headwater.config.model import BigQueryWarehouse

logger = logging.getLogger("headwater.warehouse")

SCOPES = ("https://www.googleapis.com/auth/bigquery", "https://www.googleapis.com/auth/cloud-platform")
# How long one API call (not a job) is retried on Google's transient errors: Google's default is 600 s;
# an emulator answers at once or never, and answers its own errors with 500s a retry would only repeat.
API_RETRY_SECONDS = 600.0
EMULATOR_RETRY_SECONDS = 20.0
JOB_TIMEOUT = 3600.0


def require_google() -> None:
    """Raise the error that says how to install Google's libraries when they are missing."""
    try:
        import google.cloud.bigquery  # noqa: F401
    except ImportError:
        raise HeadwaterError(
            "A BigQuery warehouse needs Google's BigQuery client and dbt-bigquery, which are not installed",
            why="they are an optional part of Headwater, so an embedded install stays small",
            fix="pip install 'headwater[bigquery]'",
        ) from None


@dataclass(frozen=True)
class Layout:
    """A table's partitioning and clustering, as made and as BigQuery reports them back."""

    partition_by: str | None = None
    granularity: str = "DAY"
    cluster_by: tuple[str, ...] = ()

    @classmethod
    def of(cls, table: Any) -> Layout:
        partitioning = getattr(table, "time_partitioning", None)
        field = getattr(partitioning, "field", None) if partitioning is not None else None
        return cls(field, (getattr(partitioning, "type_", None) or "DAY") if field else "DAY", tuple(getattr(table, "clustering_fields", None) or ()))


class BigQuery:
    """One project's BigQuery: a client made once, jobs run to the end with the byte limit and logged."""

    def __init__(self, settings: BigQueryWarehouse) -> None:
        require_google()
        self.settings = settings
        self.project = settings.project
        self._client: bigquery.Client | None = None
        self.bytes_processed = 0  # by this process's jobs, for the run's log
        self._datasets: set[str] = set()  # made sure of by this process

    @property
    def where(self) -> str:
        return f"BigQuery project {self.project}" + (f" at {self.settings.api_endpoint}" if self.settings.api_endpoint else "")

    @property
    def client(self) -> bigquery.Client:
        if self._client is None:
            self._client = self._make_client()
        return self._client

    def _make_client(self) -> bigquery.Client:
        from google.api_core.client_options import ClientOptions
        from google.cloud import bigquery

        options = ClientOptions(api_endpoint=self.settings.api_endpoint) if self.settings.api_endpoint else None
        with self.errors("Cannot connect to BigQuery"):
            return bigquery.Client(project=self.project, credentials=self.credentials(), client_options=options, location=self.settings.location)

    def credentials(self) -> Any:
        """A service account's (its key JSON in ``credentials``), anonymous on an emulator without one,
        else None: the client finds application-default credentials itself (gcloud, the VM's account)."""
        if self.settings.credentials:
            from google.oauth2 import service_account

            try:
                info = json.loads(self.settings.credentials)
                return service_account.Credentials.from_service_account_info(info, scopes=list(SCOPES))  # type: ignore[no-untyped-call]
            except (ValueError, KeyError, TypeError) as exc:
                raise HeadwaterError(
                    "warehouse.credentials is not a service account key",
                    why=f"{type(exc).__name__}: {first_line(redact(str(exc)), 200)}",
                    fix="Put the whole JSON key file of the service account in a secret (`headwater secret set BQ_SA_KEY < key.json`) and write credentials: ${secret:BQ_SA_KEY}.",
                ) from None
        if self.settings.api_endpoint:
            from google.auth.credentials import AnonymousCredentials

            return AnonymousCredentials()  # type: ignore[no-untyped-call]
        return None

    @property
    def retry(self) -> Any:
        from google.cloud.bigquery import DEFAULT_RETRY

        return DEFAULT_RETRY.with_timeout(EMULATOR_RETRY_SECONDS if self.settings.api_endpoint else API_RETRY_SECONDS)

    @property
    def job_retry(self) -> Any:
        from google.cloud.bigquery.retry import DEFAULT_JOB_RETRY

        return None if self.settings.api_endpoint else DEFAULT_JOB_RETRY

    def dataset_id(self, name: str) -> str:
        """The full id of Headwater's dataset ``name`` (the organisation's prefix put before it)."""
        return f"{self.project}.{self.settings.dataset(name)}"

    def table_id(self, dataset: str, table: str) -> str:
        return f"{self.dataset_id(dataset)}.{table}"

    @staticmethod
    def quoted(table_id: str) -> str:
        """A table id as GoogleSQL quotes it: `project.dataset.table` in backticks (a backtick in a name is escaped)."""
        return "`" + table_id.replace("\\", "\\\\").replace("`", "\\`") + "`"

    # -- jobs -------------------------------------------------------------------------------------

    def query(self, sql: str, params: Sequence[Any] = (), *, purpose: str = "headwater") -> list[dict[str, Any]]:
        """Run one query job (a script too) to the end; its rows as dicts."""
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig(query_parameters=list(params), labels={"headwater": _label(purpose)})
        if self.settings.maximum_bytes_billed:
            config.maximum_bytes_billed = self.settings.maximum_bytes_billed
        with self.errors(f"A BigQuery query ({purpose}) failed"):
            job = self.client.query(sql, job_config=config, retry=self.retry, job_retry=self.job_retry)
            rows = [dict(row.items()) for row in job.result(retry=self.retry, timeout=JOB_TIMEOUT)]
        self._account(job, purpose)
        return rows

    def load_parquet(self, path: Path, table_id: str, *, truncate: bool, purpose: str) -> None:
        """A load job of one Parquet file into an existing table (never streaming inserts: rows loaded
        by a job can be changed by DML at once, and loading costs nothing):
        https://cloud.google.com/bigquery/docs/loading-data-cloud-storage-parquet"""
        from google.cloud import bigquery

        disposition = bigquery.WriteDisposition.WRITE_TRUNCATE if truncate else bigquery.WriteDisposition.WRITE_APPEND
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET,
            write_disposition=disposition,
            create_disposition=bigquery.CreateDisposition.CREATE_NEVER,  # the table is made first, with its exact schema
            labels={"headwater": _label(purpose)},
        )
        with self.errors(f"Loading rows into {table_id} failed"), path.open("rb") as file:
            job = self.client.load_table_from_file(file, table_id, job_config=config)
            job.result(retry=self.retry, timeout=JOB_TIMEOUT)

    def copy_table(self, source: str, destination: str) -> None:
        """A copy job (no bytes billed): https://cloud.google.com/bigquery/docs/managing-tables#copy-table"""
        from google.cloud import bigquery

        config = bigquery.CopyJobConfig(write_disposition=bigquery.WriteDisposition.WRITE_EMPTY, labels={"headwater": "publish"})
        with self.errors(f"Copying {source} to {destination} failed"):
            self.client.copy_table(source, destination, job_config=config, retry=self.retry).result(retry=self.retry, timeout=JOB_TIMEOUT)

    def _account(self, job: Any, purpose: str) -> None:
        processed = int(getattr(job, "total_bytes_processed", 0) or 0)
        billed = int(getattr(job, "total_bytes_billed", 0) or 0)
        self.bytes_processed += processed
        logger.info("BigQuery job %s (%s): %s bytes processed, %s billed", getattr(job, "job_id", "?"), purpose, f"{processed:,}", f"{billed:,}")

    # -- datasets and tables ----------------------------------------------------------------------

    def ensure_dataset(self, name: str) -> None:
        """Create the dataset unless this process made sure of it already."""
        if name in self._datasets:
            return
        from google.cloud import bigquery

        dataset = bigquery.Dataset(self.dataset_id(name))
        if self.settings.location:
            dataset.location = self.settings.location
        with self.errors(f"Cannot create the dataset {self.dataset_id(name)}"):
            self.client.create_dataset(dataset, exists_ok=True, retry=self.retry)
        self._datasets.add(name)

    def drop_dataset(self, name: str) -> None:
        self._datasets.discard(name)
        with self.errors(f"Cannot drop the dataset {self.dataset_id(name)}"):
            self.client.delete_dataset(self.dataset_id(name), delete_contents=True, not_found_ok=True, retry=self.retry)

    def datasets(self) -> list[str]:
        """Headwater's names (without the prefix) of the project's datasets that carry the prefix."""
        prefix = self.settings.dataset_prefix
        with self.errors("Cannot list the project's datasets"):
            names = [d.dataset_id for d in self.client.list_datasets(retry=self.retry)]
        return [n[len(prefix) :] for n in names if n.startswith(prefix)]

    def table(self, table_id: str) -> Any | None:
        """The table's metadata (schema, rows), or None when there is no such table."""
        from google.api_core import exceptions

        with self.errors(f"Cannot read the table {table_id}"):
            try:
                return self.client.get_table(table_id, retry=self.retry)
            except exceptions.NotFound:
                return None

    def tables(self, dataset: str) -> list[str]:
        from google.api_core import exceptions

        with self.errors(f"Cannot list the tables of {self.dataset_id(dataset)}"):
            try:
                return [t.table_id for t in self.client.list_tables(self.dataset_id(dataset), retry=self.retry)]
            except exceptions.NotFound:
                return []

    def create_table(self, table_id: str, schema: list[Any], *, expires_in_hours: float | None = None, layout: Layout | None = None, replace: bool = True) -> None:
        """Make (or replace) a table with exactly ``schema`` (and ``layout``: partitioning, clustering).
        Staging tables expire by themselves, so a run killed before it dropped one leaves nothing
        behind for long."""
        import datetime as dt

        from google.cloud import bigquery

        table = bigquery.Table(table_id, schema=schema)
        if layout is not None and layout.partition_by:
            table.time_partitioning = bigquery.TimePartitioning(type_=layout.granularity, field=layout.partition_by)
        if layout is not None and layout.cluster_by:
            table.clustering_fields = list(layout.cluster_by)
        if expires_in_hours is not None:
            table.expires = dt.datetime.now(dt.UTC) + dt.timedelta(hours=expires_in_hours)
        with self.errors(f"Cannot create the table {table_id}"):
            if replace:
                self.client.delete_table(table_id, not_found_ok=True, retry=self.retry)
            self.client.create_table(table, retry=self.retry)

    def drop_table(self, table_id: str) -> None:
        with self.errors(f"Cannot drop the table {table_id}"):
            self.client.delete_table(table_id, not_found_ok=True, retry=self.retry)

    # -- errors -----------------------------------------------------------------------------------

    @contextmanager
    def errors(self, what: str) -> Iterator[None]:
        """Google's errors inside the block, as Headwater's naming ``what``."""
        try:
            yield
        except HeadwaterError:
            raise
        except Exception as exc:
            if not _is_google_error(exc):
                raise
            raise self.error(exc, what) from None

    def error(self, exc: BaseException, what: str) -> HeadwaterError:
        text = redact(_message(exc))
        low = text.lower()
        code = getattr(exc, "code", None)
        kind = type(exc).__name__
        if kind in ("DefaultCredentialsError", "RefreshError") or code == 401:
            return HeadwaterError(
                f"{what}: BigQuery did not accept the credentials",
                why=first_line(text),
                fix="Set warehouse.credentials to a service account key (${secret:BQ_SA_KEY}), or log in with `gcloud auth application-default login` on this machine.",
            )
        if code == 403 and ("bytesbilledlimitexceeded" in low.replace(" ", "") or "bytes billed" in low):
            return RunFailed(
                f"{what}: the query would bill more bytes than warehouse.maximum_bytes_billed allows",
                why=first_line(text),
                fix="Make the query read less (partitions, fewer columns), or raise maximum_bytes_billed in headwater.yml.",
            )
        if code == 403 and ("quota" in low or "ratelimit" in low.replace(" ", "")):
            return TransientFailure(f"{what}: a BigQuery quota was reached", why=first_line(text), fix="The run is retried; if it keeps happening, see the quota in the Google Cloud console.")
        if code == 403:
            return HeadwaterError(
                f"{what}: permission denied in {self.where}",
                why=first_line(text),
                fix="Give the service account BigQuery Data Editor and BigQuery Job User on the project (or on the organisation's datasets), then run again.",
            )
        # BigQuery's notFound names what is missing: "Not found: Project p", "Not found: Dataset p:d was
        # not found in location US", "Not found: Table p:d.t ..." (https://cloud.google.com/bigquery/docs/error-messages).
        # The project id may hold the word "project" (my-project-123): only "Not found: Project" is the project.
        if code == 404 and re.search(r"not found: project\b", low):
            return HeadwaterError(f"{what}: {first_line(text)}", why=f"the project in warehouse.project ({self.project}) does not exist or this account cannot see it", fix="Check warehouse.project in headwater.yml.")
        if code == 404 and re.search(r"not found: (dataset|table)\b", low):
            prefix = self.settings.dataset_prefix
            named = f" (Headwater's datasets carry warehouse.dataset_prefix: {prefix}marts, {prefix}raw_<source>)" if prefix else ""
            return RunFailed(what, why=first_line(text), fix=f"Check the dataset and table names{named}, and that the run that builds them has run.")
        if code in (429, 500, 502, 503, 504) or kind in ("ConnectionError", "Timeout", "ReadTimeout", "ConnectTimeout", "RetryError", "TransportError", "ServiceUnavailable"):
            if unresolved_host(text):
                return host_not_found(what, self.settings.api_endpoint or "bigquery.googleapis.com", "warehouse.api_endpoint", first_line(text))
            return TransientFailure(f"{what}: BigQuery did not answer", why=first_line(text), fix="The run is retried. Check the network, or Google Cloud's status page.")
        return RunFailed(what, why=first_line(text), fix="See BigQuery's message above.")


def _label(purpose: str) -> str:
    """A job label value: lowercase letters, digits, - and _, at most 63 characters."""
    out = "".join(c if c.isalnum() or c in "-_" else "-" for c in purpose.lower())
    return out[:63] or "headwater"


def _message(exc: BaseException) -> str:
    """Google's message without the client's retry wrapper and its long job URLs."""
    cause = getattr(exc, "cause", None)  # a RetryError wraps the last error
    if cause is not None and type(exc).__name__ == "RetryError":
        exc = cause
    errors = getattr(exc, "errors", None)
    if errors:
        messages = [e.get("message", "") for e in errors if isinstance(e, dict)]
        if any(messages):
            return "; ".join(m for m in messages if m)
    return str(getattr(exc, "message", None) or exc)


def _is_google_error(exc: BaseException) -> bool:
    module = type(exc).__module__
    return module.startswith(("google.", "requests.", "urllib3.")) or isinstance(exc, (ConnectionError, TimeoutError))
