-- Prices and market caps in gold.crypto_analytics_mart are never negative.
select coin_id, current_price, market_cap
from gold.crypto_analytics_mart
where current_price < 0 or market_cap < 0
