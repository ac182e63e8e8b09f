-- gold.coin_daily has one row per (coin_id, day), both present.
select coin_id, day, count(*) as row_count
from gold.coin_daily
-- The days a build changed (all days when run by `cryptolake check`).
where day >= coalesce(getvariable('audit_from'), date '1900-01-01') or day is null
group by coin_id, day
having count(*) > 1 or coin_id is null or day is null
