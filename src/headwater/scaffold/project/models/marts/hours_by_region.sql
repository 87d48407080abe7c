-- A mart: the table dashboards and exports read (the pipeline publishes models/marts). One row per
-- region: how many volunteers served there, their shifts and hours.
-- After `headwater run`: `headwater export hours_by_region` prints it, and the dashboard in
-- dashboards/hours_by_region.yml charts it (`headwater serve`).
select
    region,
    count(*) as volunteers,
    sum(shifts) as shifts,
    sum(hours) as hours
from {{ ref('int_volunteer_hours') }}
group by region
