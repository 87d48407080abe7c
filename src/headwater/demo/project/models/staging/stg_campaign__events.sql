select
    cast(event_id as integer) as event_id,
    event_type,
    cast(location_id as integer) as location_id,
    cast(organizer_id as integer) as organizer_id,
    {{ wall_clock('starts_at') }} as starts_at_utc,
    {{ wall_clock(to_campaign_time(wall_clock('starts_at'))) }} as starts_at_local
from {{ source('campaign', 'events') }}
