select
    cast(signup_status_id as integer) as signup_status_id,
    cast(signup_id as integer) as signup_id,
    trim(status) as status,
    {{ wall_clock('created_at') }} as created_at_utc
from {{ source('campaign', 'signup_statuses') }}
