"""LoRA generation history in columns: `lora_generation_results`.

One row per succeeded `lora.generate` job with what the history screen filters, sorts and
sums on (created_at, prompt sort key, search text, width, height, rating, favourite, bytes),
so its stats and sorts read narrow indexed columns instead of every job's JSON documents.

The job's JSON stays the source of truth (the engine writes `status`/`result`, the rating and
favourite routes write `result`); database triggers on `jobs` derive the row from it in the
same statement, so no writer can leave them out of step: a job that becomes `succeeded` gets
its row, one that stops being `succeeded` loses it, a rating or favourite change rewrites it,
and deleting the job deletes it (foreign key, ON DELETE CASCADE). The triggers fire only for
`lora.generate` rows; every JSON value is type-checked before it is cast, so no job's content
can make the engine's own write fail. Existing succeeded generations are backfilled.

Revision ID: 0018_lora_generation_results
Revises: 0017_lora_file_stat
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kiln.core.db import UTCDateTime

revision = "0018_lora_generation_results"
down_revision = "0017_lora_file_stat"
branch_labels = None
depends_on = None

TABLE = "lora_generation_results"
COLUMNS = "job_id, created_at, prompt_key, search_text, width, height, rating, sort_rating, is_favorite, bytes"
# The prompt sort key: the lower-cased prompt's first characters (an index key must stay short
# on PostgreSQL); prompts equal that far sort newest first, as ties do.
PROMPT_KEY_CHARS = 200

# SQLite: `j` is the jobs row (NEW in a trigger, the table in the backfill).
# (an integer past 64 bits is 'integer' to json_type but comes out of json_extract as a real)
SQLITE_INT = (
    "CASE WHEN json_type({doc}, '{path}') = 'integer' AND typeof(json_extract({doc}, '{path}')) = 'integer' "
    "THEN json_extract({doc}, '{path}') END"
)
SQLITE_VALUES = f"""j.id, j.created_at,
    substr(lower(coalesce(json_extract(j.payload, '$.prompt'), '')), 1, {PROMPT_KEY_CHARS}),
    lower(coalesce(json_extract(j.payload, '$.prompt'), '') || char(10)
          || coalesce(json_extract(j.payload, '$.params.negative_prompt'), '')),
    {SQLITE_INT.format(doc="j.payload", path="$.params.width")},
    {SQLITE_INT.format(doc="j.payload", path="$.params.height")},
    {SQLITE_INT.format(doc="j.result", path="$.rating")},
    coalesce({SQLITE_INT.format(doc="j.result", path="$.rating")}, 0),
    coalesce(json_type(j.result, '$.is_favorite') = 'true', 0),
    {SQLITE_INT.format(doc="j.result", path="$.bytes")}"""
SQLITE_TRIGGERS = {
    "lora_generation_results_ai": f"""CREATE TRIGGER lora_generation_results_ai AFTER INSERT ON jobs
    WHEN new.kind = 'lora.generate' AND new.status = 'succeeded' BEGIN
        INSERT OR REPLACE INTO {TABLE} ({COLUMNS}) SELECT {SQLITE_VALUES} FROM (SELECT new.id AS id,
            new.created_at AS created_at, new.payload AS payload, new.result AS result) AS j;
    END""",
    "lora_generation_results_au": f"""CREATE TRIGGER lora_generation_results_au
    AFTER UPDATE OF status, result, payload, created_at ON jobs
    WHEN new.kind = 'lora.generate' AND (new.status = 'succeeded' OR old.status = 'succeeded') BEGIN
        DELETE FROM {TABLE} WHERE job_id = new.id AND new.status <> 'succeeded';
        INSERT OR REPLACE INTO {TABLE} ({COLUMNS}) SELECT {SQLITE_VALUES} FROM (SELECT new.id AS id,
            new.created_at AS created_at, new.payload AS payload, new.result AS result) AS j
        WHERE new.status = 'succeeded';
    END""",
}

# PostgreSQL: a JSON number becomes an integer only when it is one and fits (no cast can fail).
PG_INT = (
    "CASE WHEN jsonb_typeof({doc} #> '{{{path}}}') = 'number' AND {value} ~ '^-?[0-9]{{1,{digits}}}$' "
    "THEN ({value})::{type} END"
)


def _pg_int(doc: str, path: str, digits: int = 9, type_: str = "integer") -> str:
    return PG_INT.format(doc=doc, path=path, value=f"({doc} #>> '{{{path}}}')", digits=digits, type=type_)


def _pg_values(j: str) -> str:
    prompt = f"coalesce({j}.payload ->> 'prompt', '')"
    rating = _pg_int(f"{j}.result", "rating")
    return f"""{j}.id, {j}.created_at, left(lower({prompt}), {PROMPT_KEY_CHARS}),
        lower({prompt} || E'\\n' || coalesce({j}.payload #>> '{{params,negative_prompt}}', '')),
        {_pg_int(f"{j}.payload", "params,width")}, {_pg_int(f"{j}.payload", "params,height")},
        {rating}, coalesce({rating}, 0),
        coalesce(jsonb_typeof({j}.result -> 'is_favorite') = 'boolean' AND ({j}.result ->> 'is_favorite') = 'true',
                 false),
        {_pg_int(f"{j}.result", "bytes", 18, "bigint")}"""


PG_FUNCTION = f"""CREATE OR REPLACE FUNCTION lora_generation_results_sync() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status <> 'succeeded' THEN
        DELETE FROM {TABLE} WHERE job_id = NEW.id;
        RETURN NULL;
    END IF;
    INSERT INTO {TABLE} ({COLUMNS}) SELECT {_pg_values("NEW")}
    ON CONFLICT (job_id) DO UPDATE SET
        {", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS.split(", ")[1:])};
    RETURN NULL;
END $$"""
PG_TRIGGER = """CREATE TRIGGER lora_generation_results_sync
    AFTER INSERT OR UPDATE OF status, result, payload, created_at ON jobs
    FOR EACH ROW WHEN (NEW.kind = 'lora.generate') EXECUTE FUNCTION lora_generation_results_sync()"""


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("prompt_key", sa.String(PROMPT_KEY_CHARS * 4), nullable=False),
        sa.Column("search_text", sa.Text(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("rating", sa.Integer(), nullable=True),
        sa.Column("sort_rating", sa.Integer(), nullable=False),
        sa.Column("is_favorite", sa.Boolean(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("job_id", name=op.f(f"pk_{TABLE}")),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f(f"fk_{TABLE}_job_id_jobs"), ondelete="CASCADE"),
    )
    op.create_index("ix_lora_generation_results_created", TABLE, ["created_at", "job_id"])
    op.create_index("ix_lora_generation_results_rating", TABLE, ["sort_rating", "created_at", "job_id"])
    op.create_index(
        "ix_lora_generation_results_prompt",
        TABLE,
        ["prompt_key", sa.text("created_at DESC"), sa.text("job_id DESC")],
    )
    op.create_index("ix_lora_generation_results_size", TABLE, ["width", "height", "created_at"])
    if op.get_bind().dialect.name == "sqlite":
        for statement in SQLITE_TRIGGERS.values():
            op.execute(statement)
        op.execute(f"""INSERT INTO {TABLE} ({COLUMNS}) SELECT {SQLITE_VALUES} FROM jobs AS j
            WHERE j.kind = 'lora.generate' AND j.status = 'succeeded'""")
    else:
        op.execute(PG_FUNCTION)
        op.execute(PG_TRIGGER)
        op.execute(f"""INSERT INTO {TABLE} ({COLUMNS}) SELECT {_pg_values("j")} FROM jobs AS j
            WHERE j.kind = 'lora.generate' AND j.status = 'succeeded'""")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    else:
        op.execute("DROP TRIGGER IF EXISTS lora_generation_results_sync ON jobs")
        op.execute("DROP FUNCTION IF EXISTS lora_generation_results_sync()")
    op.drop_table(TABLE)
