select
    cast(signup_id as integer) as signup_id,
    cast(volunteer_id as integer) as volunteer_id,
    cast(event_id as integer) as event_id,
    cast(created_at as timestamp) as created_at_utc,
    cast(updated_at as timestamp) as updated_at_utc
from {{ source('campaign', 'signups') }}
