{# A UTC timestamp as wall-clock time in the campaign's time zone. #}
{% macro to_campaign_time(utc_timestamp) -%}
    (({{ utc_timestamp }}) at time zone 'UTC') at time zone '{{ var("campaign_timezone") }}'
{%- endmacro %}

{# The Saturday on or before a date: weeks run Saturday to Friday. dow: Sunday = 0 ... Saturday = 6. #}
{% macro week_start(date_expr) -%}
    (cast({{ date_expr }} as date) - cast((extract(dow from cast({{ date_expr }} as date)) + 1) % 7 as integer))
{%- endmacro %}

{# Today in the campaign's time zone, or the as_of_date var when set (for reproducible reports). #}
{% macro campaign_today() -%}
    {%- if var("as_of_date", "") -%}
        cast('{{ var("as_of_date") }}' as date)
    {%- else -%}
        cast(current_timestamp at time zone '{{ var("campaign_timezone") }}' as date)
    {%- endif -%}
{%- endmacro %}
