-- quarantine: rows a row-level check (on_fail: quarantine) kept out of silver, one row per
-- offending row and check. row_key holds the row's key columns and row the whole row, both as
-- JSON, so one table serves every silver table. {{table}} becomes the relation to create.
create table if not exists {{table}} (
    table_name varchar not null,
    check_name varchar not null,
    check_description varchar,
    row_key json not null,
    run_id varchar,
    snapshot_at timestamptz,
    row json not null,
    quarantined_at timestamptz not null
)
