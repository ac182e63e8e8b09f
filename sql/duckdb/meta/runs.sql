-- meta.runs: one row per `cryptolake run`, written when it starts and when it ends.
-- stages holds, per stage, its status, seconds, row counts and a one-line detail.
create table if not exists meta.runs (
    run_id varchar primary key,
    trigger varchar not null,
    status varchar not null,
    is_sample boolean not null,
    started_at timestamptz not null,
    finished_at timestamptz,
    stages json,
    error varchar,
    cryptolake_version varchar not null
)
