"""dbt-bigquery for the BigQuery warehouse: the profile Headwater generates, and the service account
key handed to it for the length of each dbt command only.

Profile fields: https://docs.getdbt.com/docs/core/connect-data-platform/bigquery-setup. With a key,
``method: service-account-json`` reads ``keyfile_json`` from an environment variable that `session`
sets around one dbt command (dbt runs in-process) and takes away again, so the key never reaches
profiles.yml. Without one, ``method: oauth`` uses application-default credentials; on an emulator
(``api_endpoint`` without a key) ``oauth-secrets`` with a token the emulator does not check."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from headwater.config.model import BigQueryWarehouse
from headwater.warehouse.environment import environment

KEY_VARIABLE = "HEADWATER_WAREHOUSE_KEYFILE_JSON"
BUILD_DATASET = "build"  # models without a schema of their own (the demo's go to staging, intermediate, marts)
PREFIX_VAR = "headwater_dataset_prefix"  # the organisation's prefix, for a project's sources and generate_schema_name


def profile(settings: BigQueryWarehouse, threads: int) -> dict[str, Any]:
    output: dict[str, Any] = {
        "type": "bigquery",
        "project": settings.project,
        "dataset": settings.dataset(BUILD_DATASET),
        "threads": threads,
        "priority": "interactive",
        "job_execution_timeout_seconds": 3600,
    }
    if settings.credentials:
        output["method"] = "service-account-json"
        output["keyfile_json"] = "{{ env_var('" + KEY_VARIABLE + "') | as_native }}"
    elif settings.api_endpoint:
        output["method"] = "oauth-secrets"
        output["token"] = "emulator"  # noqa: S105 - an emulator checks no token
    else:
        output["method"] = "oauth"
    if settings.api_endpoint:
        output["api_endpoint"] = settings.api_endpoint
        output["job_retries"] = 0  # an emulator's 500 is its answer, not a hiccup
    if settings.location:
        output["location"] = settings.location
    if settings.maximum_bytes_billed:
        output["maximum_bytes_billed"] = settings.maximum_bytes_billed
    return output


def session(settings: BigQueryWarehouse, *, confined: bool) -> AbstractContextManager[None]:
    """The key in the environment for one dbt command, then gone; ``confined`` (an organisation on an
    install with many): the rest of the environment hidden meanwhile, so ``env_var()`` in its models
    reads only its own key. BigQuery holds its SQL to that service account's permissions."""
    return environment({KEY_VARIABLE: settings.credentials} if settings.credentials else {}, reduced=confined)


def dbt_vars(settings: BigQueryWarehouse) -> dict[str, Any]:
    return {PREFIX_VAR: settings.dataset_prefix}
