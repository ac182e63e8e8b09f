-- meta.runs: one row per `cryptolake run`, from the run records in <lake>/_meta/runs/.
-- Each run writes its record (a JSON object) when it starts and again when it ends; the
-- files are the source of truth, so recording a run never needs a write lock on this
-- database. {{runs_glob}} becomes the folder's absolute path (a view must not depend on
-- session variables). stages holds, per stage, its status, seconds, row counts and detail.
create or replace view meta.runs as
with source as (
    select *
    from read_json(
        {{runs_glob}},
        format = 'auto',
        columns = {
            run_id: 'varchar',
            trigger: 'varchar',
            status: 'varchar',
            is_sample: 'boolean',
            started_at: 'timestamptz',
            finished_at: 'timestamptz',
            stages: 'json',
            error: 'varchar',
            cryptolake_version: 'varchar'
        }
    )
),

final as (
    select
        run_id,
        trigger,
        status,
        is_sample,
        started_at,
        finished_at,
        epoch(finished_at - started_at) as seconds,
        stages,
        error,
        cryptolake_version
    from source
)

select * from final
