"""Headwater: sync sources, clean, transform with dbt, check, publish, serve dashboards."""

__version__ = "0.1.0"
