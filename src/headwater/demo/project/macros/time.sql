{#
  The demo's SQL that differs between warehouses, through dbt's own mechanism (adapter.dispatch,
  https://docs.getdbt.com/reference/dbt-jinja-functions/dispatch): `default__` is DuckDB's and
  PostgreSQL's SQL, `bigquery__` BigQuery's (GoogleSQL). Both keep each column's meaning: a naive
  UTC wall-clock time is DuckDB's/PostgreSQL's TIMESTAMP and BigQuery's DATETIME (BigQuery's
  TIMESTAMP is an instant: https://cloud.google.com/bigquery/docs/reference/standard-sql/data-types#datetime_type).
#}

{# A naive UTC time (text or a timestamp without zone) as a wall-clock timestamp. #}
{% macro wall_clock(expr) -%}
    {{ return(adapter.dispatch('wall_clock')(expr)) }}
{%- endmacro %}

{% macro default__wall_clock(expr) -%}
    cast({{ expr }} as timestamp)
{%- endmacro %}

{# DATETIME: a wall-clock time, as DuckDB's TIMESTAMP; a TIMESTAMP input is read in UTC.
   https://cloud.google.com/bigquery/docs/reference/standard-sql/conversion_functions#cast_as_datetime #}
{% macro bigquery__wall_clock(expr) -%}
    cast({{ expr }} as datetime)
{%- endmacro %}

{# A UTC timestamp as wall-clock time in the campaign's time zone. #}
{% macro to_campaign_time(utc_timestamp) -%}
    {{ return(adapter.dispatch('to_campaign_time')(utc_timestamp)) }}
{%- endmacro %}

{% macro default__to_campaign_time(utc_timestamp) -%}
    (({{ utc_timestamp }}) at time zone 'UTC') at time zone '{{ var("campaign_timezone") }}'
{%- endmacro %}

{# The UTC wall-clock DATETIME as an instant (TIMESTAMP(datetime, 'UTC')), then that instant's civil time
   in the zone (DATETIME(timestamp, zone)), daylight saving included.
   https://cloud.google.com/bigquery/docs/reference/standard-sql/timestamp_functions#timestamp
   https://cloud.google.com/bigquery/docs/reference/standard-sql/datetime_functions#datetime #}
{% macro bigquery__to_campaign_time(utc_timestamp) -%}
    datetime(timestamp({{ utc_timestamp }}, 'UTC'), '{{ var("campaign_timezone") }}')
{%- endmacro %}

{# The Saturday on or before a date: weeks run Saturday to Friday. #}
{% macro week_start(date_expr) -%}
    {{ return(adapter.dispatch('week_start')(date_expr)) }}
{%- endmacro %}

{# dow: Sunday = 0 ... Saturday = 6. #}
{% macro default__week_start(date_expr) -%}
    (cast({{ date_expr }} as date) - cast((extract(dow from cast({{ date_expr }} as date)) + 1) % 7 as integer))
{%- endmacro %}

{# WEEK(SATURDAY): "weeks begin on" Saturday; truncates to the preceding week boundary (the date itself on a Saturday).
   https://cloud.google.com/bigquery/docs/reference/standard-sql/date_functions#date_trunc #}
{% macro bigquery__week_start(date_expr) -%}
    date_trunc(cast({{ date_expr }} as date), week(saturday))
{%- endmacro %}

{# Today in the campaign's time zone, or the as_of_date var when set (for reproducible reports). #}
{% macro campaign_today() -%}
    {{ return(adapter.dispatch('campaign_today')()) }}
{%- endmacro %}

{% macro default__campaign_today() -%}
    {%- if var("as_of_date", "") -%}
        cast('{{ var("as_of_date") }}' as date)
    {%- else -%}
        cast(current_timestamp at time zone '{{ var("campaign_timezone") }}' as date)
    {%- endif -%}
{%- endmacro %}

{# CURRENT_DATE(time_zone): https://cloud.google.com/bigquery/docs/reference/standard-sql/date_functions#current_date #}
{% macro bigquery__campaign_today() -%}
    {%- if var("as_of_date", "") -%}
        cast('{{ var("as_of_date") }}' as date)
    {%- else -%}
        current_date('{{ var("campaign_timezone") }}')
    {%- endif -%}
{%- endmacro %}
