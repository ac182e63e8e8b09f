-- market_cap_category is one of large, mid, small, micro, unknown, in every gold table using it.
select 'crypto_analytics_mart' as table_name, coin_id as row_id, market_cap_category
from gold.crypto_analytics_mart
where market_cap_category is null
    or market_cap_category not in ('large', 'mid', 'small', 'micro', 'unknown')
union all
select 'market_segment_analysis', market_cap_category, market_cap_category
from gold.market_segment_analysis
where market_cap_category is null
    or market_cap_category not in ('large', 'mid', 'small', 'micro', 'unknown')
