select
    cast(region_id as integer) as region_id,
    trim(name) as region_name
from {{ source('campaign', 'regions') }}
