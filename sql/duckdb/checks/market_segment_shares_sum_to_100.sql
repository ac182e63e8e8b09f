-- tracked_market_cap_share_pct over the segments of gold.market_segment_analysis adds up to 100 ± 0.01.
select sum(tracked_market_cap_share_pct) as total_share_pct
from gold.market_segment_analysis
having sum(total_market_cap) > 0 and abs(sum(tracked_market_cap_share_pct) - 100) > 0.01
