{# Models go to the schema their folder names (staging, intermediate, marts), not target_schema_marts.
   headwater_dataset_prefix (a dbt var, "" by default) goes before it: on BigQuery, where a schema is a
   dataset of a project that may hold several Headwater projects, Headwater passes one (e.g. "t1_" gives
   t1_staging, t1_intermediate, t1_marts, t1_snapshots). Models without a schema of their own go to the
   profile's dataset (target.schema), which the warehouse names itself. #}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name -%}
        {{ (var("headwater_dataset_prefix", "") ~ custom_schema_name) | trim }}
    {%- else -%}
        {{ target.schema | trim }}
    {%- endif -%}
{%- endmacro %}
