-- Revenue per order day (completed orders only count as revenue).
select
    order_date,
    count(*) as order_count,
    sum(case when status = 'completed' then 1 else 0 end) as completed_order_count,
    coalesce(sum(case when status = 'completed' then amount end), 0) as revenue,
    coalesce(sum(case when status = 'returned' then amount end), 0) as returned_amount
from {{ ref('stg_orders') }}
group by order_date
