-- A singular test that can be made to fail on purpose, for demos and tests of
-- failure handling. It passes (returns no rows) unless the environment
-- variable DDPUI_SAMPLE_FAIL_TEST is "true" when dbt runs, e.g.
--     DDPUI_SAMPLE_FAIL_TEST=true dbt test
-- Attached to customer_orders so that `dbt test -s customer_orders` runs it too.
-- depends_on: {{ ref('customer_orders') }}
{% set must_fail = env_var('DDPUI_SAMPLE_FAIL_TEST', 'false') | trim | lower == 'true' %}

select
    'DDPUI_SAMPLE_FAIL_TEST is true: this test fails on purpose' as failure_reason
where {{ 'true' if must_fail else 'false' }}
