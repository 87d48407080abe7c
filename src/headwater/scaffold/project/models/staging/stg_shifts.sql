-- One row per volunteer shift, as the CSV has it. Staging models are views (dbt_project.yml): they
-- cost nothing to build and always show the latest sync.
select
    shift_date,
    volunteer,
    region,
    hours
from {{ source('shifts', 'shifts') }}
