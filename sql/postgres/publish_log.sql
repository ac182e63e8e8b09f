-- publish_log: one row per publish that changed something, written in its transaction.
-- snapshots lists the snapshot_at values appended to staging by that publish; lake_version
-- is the DuckLake snapshot id of the gold it published (an unchanged lake is not published
-- again) and lake_id the lake it belongs to (snapshot ids are per lake); models_fingerprint
-- the gold models and currency it was built with. rows_now holds each table's rows after it:
-- the next publish adds what it writes to them instead of counting a year of staging again.
create table if not exists {{schema}}.publish_log (
    publish_id text primary key,
    started_at timestamptz not null,
    finished_at timestamptz not null,
    latest_snapshot_at timestamptz,
    lake_version text not null,
    lake_id text,
    models_fingerprint text,
    cryptolake_version text not null,
    rows_written jsonb not null,
    snapshots timestamptz[] not null,
    rows_now jsonb
);

create index if not exists publish_log_finished_idx
    on {{schema}}.publish_log (finished_at);
