select
    cast(signup_id as integer) as signup_id,
    cast(volunteer_id as integer) as volunteer_id,
    cast(event_id as integer) as event_id,
    {{ wall_clock('created_at') }} as created_at_utc,
    {{ wall_clock('updated_at') }} as updated_at_utc
from {{ source('campaign', 'signups') }}
