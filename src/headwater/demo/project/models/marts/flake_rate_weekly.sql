with counts as (
    select
        week_start,
        region,
        organizer,
        {{ count_if("latest_status = 'Completed'") }} as completed,
        {{ count_if("latest_status = 'No Show'") }} as no_show,
        {{ count_if("latest_status = 'Cancelled'") }} as cancelled,
        {{ count_if("latest_status in ('Scheduled', 'Confirmed')") }} as scheduled,
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
    cast(no_show + cancelled as {{ double_type() }}) / nullif(total_signups, 0) as flake_rate,
    week_start = {{ week_start(campaign_today()) }} as is_current_week,
    scheduled
from counts
