select
    cast(id as bigint) as order_id,
    cast(customer_id as bigint) as customer_id,
    cast(amount as numeric(12, 2)) as amount,
    lower(status) as status,
    cast(ordered_at as timestamp) as ordered_at,
    cast(ordered_at as date) as order_date,
    _airbyte_extracted_at as extracted_at
from {{ source('airbyte_raw', 'orders') }}
