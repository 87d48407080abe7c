-- Intermediate models are steps between staging and the marts that readers see: here, each
-- volunteer's shifts and hours per region. Several marts can build on a step like this.
select
    region,
    volunteer,
    count(*) as shifts,
    sum(hours) as hours
from {{ ref('stg_shifts') }}
group by region, volunteer
