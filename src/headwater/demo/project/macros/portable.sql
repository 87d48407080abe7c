{# Counting and number types that differ between warehouses (see time.sql for how: adapter.dispatch). #}

{# The number of rows of the group where the condition is true (a BIGINT / INT64). #}
{% macro count_if(condition) -%}
    {{ return(adapter.dispatch('count_if')(condition)) }}
{%- endmacro %}

{% macro default__count_if(condition) -%}
    count(*) filter (where {{ condition }})
{%- endmacro %}

{# COUNTIF returns INT64: https://cloud.google.com/bigquery/docs/reference/standard-sql/aggregate_functions#countif
   emulator differs from BigQuery: a table made from COUNTIF (CREATE TABLE AS SELECT, dbt's table
   materialization) gets a NUMERIC column there; the cast keeps it INT64 (a no-op on BigQuery). #}
{% macro bigquery__count_if(condition) -%}
    cast(countif({{ condition }}) as int64)
{%- endmacro %}

{# A double-precision (8-byte IEEE 754) floating-point type. #}
{% macro double_type() -%}
    {{ return(adapter.dispatch('double_type')()) }}
{%- endmacro %}

{% macro default__double_type() -%}
    double precision
{%- endmacro %}

{# FLOAT64: https://cloud.google.com/bigquery/docs/reference/standard-sql/data-types#floating_point_types #}
{% macro bigquery__double_type() -%}
    float64
{%- endmacro %}
