-- Prices, market caps and volumes in silver.market_snapshots are never negative.
select coin_id, snapshot_at, current_price, market_cap, total_volume
from silver.market_snapshots
where current_price < 0 or market_cap < 0 or total_volume < 0
