select
    cast(organizer_id as integer) as organizer_id,
    trim(name) as organizer_name,
    cast(region_id as integer) as region_id
from {{ source('campaign', 'organizers') }}
