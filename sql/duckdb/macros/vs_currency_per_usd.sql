-- vs_currency_per_usd(currency, snapshot): units of `currency` one USD bought at the
-- snapshot taken at `snapshot` (a snapshot_at), from
-- that snapshot's /global body (its total market cap in `currency` over its total in USD);
-- 1 for usd itself, null where the lake has no such /global snapshot.
-- e.g. market_cap / vs_currency_per_usd(vs_currency, snapshot_at) is a market cap in USD.
create or replace macro vs_currency_per_usd(currency, snapshot) as
    coalesce(
        case when currency = 'usd' then 1.0 end,
        (
            select any_value(total_market_cap / nullif(total_market_cap_usd, 0))
            from silver.global_snapshots
            where vs_currency = currency and snapshot_at = snapshot
        )
    )
