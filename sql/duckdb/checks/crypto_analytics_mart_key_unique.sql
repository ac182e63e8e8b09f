-- gold.crypto_analytics_mart has one row per coin_id, with coin_id and rank present.
select coin_id, market_cap_rank, count(*) over (partition by coin_id) as row_count
from gold.crypto_analytics_mart
qualify coin_id is null or market_cap_rank is null or row_count > 1
