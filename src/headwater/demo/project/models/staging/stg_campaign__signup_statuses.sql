select
    cast(signup_status_id as integer) as signup_status_id,
    cast(signup_id as integer) as signup_id,
    trim(status) as status,
    cast(created_at as timestamp) as created_at_utc
from {{ source('campaign', 'signup_statuses') }}
