with ranked as (
    select
        signup_id,
        status,
        created_at_utc,
        row_number() over (
            partition by signup_id
            order by created_at_utc desc, signup_status_id desc
        ) as recency
    from {{ ref('stg_campaign__signup_statuses') }}
)

select signup_id, status as latest_status, created_at_utc as latest_status_at_utc
from ranked
where recency = 1
