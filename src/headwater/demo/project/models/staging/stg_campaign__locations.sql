select
    cast(location_id as integer) as location_id,
    trim(name) as location_name,
    cast(region_id as integer) as region_id
from {{ source('campaign', 'locations') }}
