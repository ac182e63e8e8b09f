-- market_cap_category(market_cap_usd): the segment of a market cap in USD, from
-- gold.market_cap_segments (created once that table exists): the segment with the largest
-- min_market_cap_usd not above it; 'unknown' (min_market_cap_usd null) for none, zero or less.
create or replace macro market_cap_category(market_cap_usd) as
    case
        when market_cap_usd > 0 then (
            select arg_max(market_cap_category, min_market_cap_usd)
            from gold.market_cap_segments
            where min_market_cap_usd <= market_cap_usd
        )
        else (
            select market_cap_category
            from gold.market_cap_segments
            where min_market_cap_usd is null
        )
    end
