"""The PostgreSQL warehouse (``warehouse: {type: postgres, url: ...}``): one database per project.

    warehouse.py   connections (DuckDB with the database attached; psycopg for publish and grants),
                   the writer lock (file + advisory lock), load raw, publish by schema swap, reader roles
    types.py       DuckDB's types as raw's PostgreSQL columns hold them (`PostgresRaw`)
    dbt.py         the dbt-postgres profile and what each dbt command needs around it
"""

from headwater.warehouse.postgres.warehouse import Warehouse

__all__ = ["Warehouse"]
