-- A snapshot's coins sum to at most its /global total market cap plus 10%, or it is set aside whole.
-- on_fail: quarantine whole snapshot
-- The two bodies are fetched seconds apart in one run, so a larger sum means one of them is
-- wrong (a coin's market cap out by orders of magnitude, or a stale /global), and every share,
-- segment and total built on the snapshot would be too: its rows of every table are set aside.
with totals as (
    select snapshot_at, vs_currency, sum(market_cap) as tracked_market_cap
    from silver.market_snapshots
    group by snapshot_at, vs_currency
),

inconsistent as (
    select totals.snapshot_at
    from totals
    inner join silver.global_snapshots as globals
        on totals.snapshot_at = globals.snapshot_at
        and totals.vs_currency = globals.vs_currency
    where totals.tracked_market_cap > 1.10 * globals.total_market_cap
)

select *
from silver.market_snapshots
where snapshot_at in (select snapshot_at from inconsistent)
