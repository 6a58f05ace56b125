select
    cast(id as bigint) as customer_id,
    name as customer_name,
    lower(email) as email,
    country,
    cast(created_at as timestamp) as created_at,
    _airbyte_extracted_at as extracted_at
from {{ source('airbyte_raw', 'customers') }}
