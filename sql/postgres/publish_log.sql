-- publish_log: one row per publish that changed something, written in its transaction.
-- snapshots lists the snapshot_at values appended to staging by that publish; lake_version
-- fingerprints the silver runs behind it, so an unchanged lake is not published again.
create table if not exists {{schema}}.publish_log (
    publish_id text primary key,
    started_at timestamptz not null,
    finished_at timestamptz not null,
    latest_snapshot_at timestamptz,
    lake_version text not null,
    cryptolake_version text not null,
    rows_written jsonb not null,
    snapshots timestamptz[] not null
);

create index if not exists publish_log_finished_idx
    on {{schema}}.publish_log (finished_at);
