-- gold.coin_daily has one row per (coin_id, day), both present.
select coin_id, day, count(*) as row_count
from gold.coin_daily
group by coin_id, day
having count(*) > 1 or coin_id is null or day is null
