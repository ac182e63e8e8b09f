-- gold.market_daily has one row per day, and the day is present.
select day, count(*) as row_count
from gold.market_daily
group by day
having count(*) > 1 or day is null
