-- market_cap_category(market_cap): the segment of a coin by market cap in the quote currency.
-- large >= 10e9, mid >= 1e9, small >= 100e6, micro > 0, unknown where null or 0.
create or replace macro market_cap_category(market_cap) as
    case
        when market_cap >= 10e9 then 'large'
        when market_cap >= 1e9 then 'mid'
        when market_cap >= 100e6 then 'small'
        when market_cap > 0 then 'micro'
        else 'unknown'
    end
