-- category_leaderboard: gold.category_leaderboard, replaced whole on every publish.
create table if not exists {{schema}}.category_leaderboard (
    category_rank bigint not null,
    category_id text not null,
    name text,
    market_cap_usd double precision,
    market_cap_change_24h_pct double precision,
    volume_24h_usd double precision,
    updated_at timestamptz,
    snapshot_at timestamptz
);

create unique index if not exists category_leaderboard_category_key
    on {{schema}}.category_leaderboard (category_id);

create index if not exists category_leaderboard_rank_idx
    on {{schema}}.category_leaderboard (category_rank);
