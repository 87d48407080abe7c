select
    cast(event_id as integer) as event_id,
    event_type,
    cast(location_id as integer) as location_id,
    cast(organizer_id as integer) as organizer_id,
    cast(starts_at as timestamp) as starts_at_utc,
    cast({{ to_campaign_time('cast(starts_at as timestamp)') }} as timestamp) as starts_at_local
from {{ source('campaign', 'events') }}
