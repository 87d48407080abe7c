-- Left joins throughout: a sign-up whose event lacks a location or organizer still counts, as 'Unknown'.
select
    s.signup_id,
    s.event_id,
    cast(e.starts_at_local as date) as event_date,
    {{ week_start('e.starts_at_local') }} as week_start,
    coalesce(r.region_name, 'Unknown') as region,
    coalesce(o.organizer_name, 'Unknown') as organizer,
    ls.latest_status
from {{ ref('stg_campaign__signups') }} as s
join {{ ref('stg_campaign__events') }} as e on e.event_id = s.event_id
left join {{ ref('stg_campaign__locations') }} as l on l.location_id = e.location_id
left join {{ ref('stg_campaign__regions') }} as r on r.region_id = l.region_id
left join {{ ref('stg_campaign__organizers') }} as o on o.organizer_id = e.organizer_id
left join {{ ref('int_signup_latest_status') }} as ls on ls.signup_id = s.signup_id
