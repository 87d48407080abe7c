with counts as (
    select
        week_start,
        region,
        organizer,
        count(*) filter (where latest_status = 'Completed') as completed,
        count(*) filter (where latest_status = 'No Show') as no_show,
        count(*) filter (where latest_status = 'Cancelled') as cancelled,
        count(*) filter (where latest_status in ('Scheduled', 'Confirmed')) as scheduled,
        count(*) as total_signups
    from {{ ref('int_signups_weekly') }}
    group by week_start, region, organizer
)

select
    week_start,
    region,
    organizer,
    completed,
    no_show,
    cancelled,
    no_show + cancelled as total_flakes,
    total_signups,
    cast(no_show + cancelled as double precision) / nullif(total_signups, 0) as flake_rate,
    week_start = {{ week_start(campaign_today()) }} as is_current_week,
    scheduled
from counts
