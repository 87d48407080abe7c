-- The organizers' contact sheet, already cleaned by Headwater's rules (headwater.yml): names trimmed,
-- regions in their canonical spelling, dates and yes/no typed. Rows that broke a rule are not here:
-- they wait in raw_roster.organizers__quarantine with the reason.
select
    organizer_name,
    region_name,
    phone,
    e_mail as email,
    active,
    start_date
from {{ source('roster', 'organizers') }}
