-- Prices, market caps and volumes in silver.market_snapshots are never negative.
-- on_fail: quarantine
select *
from silver.market_snapshots
where current_price < 0 or market_cap < 0 or total_volume < 0
