-- One row per customer: how many orders, and how much was completed.
with orders as (
    select * from {{ ref('stg_orders') }}
)

select
    c.customer_id,
    c.customer_name,
    c.country,
    count(o.order_id) as order_count,
    coalesce(sum(case when o.status = 'completed' then o.amount end), 0) as total_completed_amount,
    min(o.ordered_at) as first_ordered_at,
    max(o.ordered_at) as last_ordered_at
from {{ ref('stg_customers') }} as c
left join orders as o
    on o.customer_id = c.customer_id
group by c.customer_id, c.customer_name, c.country
