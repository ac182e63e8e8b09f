-- Every coin in gold.crypto_analytics_mart with a market cap has it in USD too (the rate comes
-- from /global of the same snapshot): market-cap segments are bounded in USD.
select coin_id, vs_currency, market_cap, market_cap_usd, snapshot_at
from gold.crypto_analytics_mart
where market_cap > 0 and (market_cap_usd is null or not market_cap_usd > 0)
