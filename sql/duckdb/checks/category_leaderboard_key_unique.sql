-- gold.category_leaderboard has one row per category_id, both id and rank present.
select category_id, category_rank, count(*) over (partition by category_id) as row_count
from gold.category_leaderboard
qualify category_id is null or category_rank is null or row_count > 1
