-- market_cap_category is a segment of gold.market_cap_segments, in every gold table using it.
with segments as (
    select market_cap_category from gold.market_cap_segments
)

select 'crypto_analytics_mart' as table_name, coin_id as row_id, market_cap_category
from gold.crypto_analytics_mart
where market_cap_category is null
    or market_cap_category not in (select market_cap_category from segments)
union all
select 'market_segment_analysis', market_cap_category, market_cap_category
from gold.market_segment_analysis
where market_cap_category is null
    or market_cap_category not in (select market_cap_category from segments)
