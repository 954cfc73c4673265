"""Schema migrations: ordered, idempotent SQL per dialect, recorded in `schema_migrations`.

Applied when a store opens, inside one transaction that first takes the dialect's writer lock (SQLite
`BEGIN IMMEDIATE`, a PostgreSQL advisory lock), so two stores or processes opening at once migrate once. A released
migration is never edited: a change is a new version appended to `MIGRATIONS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from . import oplog, report_runs

Dialect = Literal["sqlite", "postgresql"]

CREATE_MIGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at_ns BIGINT NOT NULL
)"""

# Human-readable start time, derived by the database (not written by us): handy for ad-hoc SQL and SQL datasources.
_START_TIME = {
    "sqlite": "TEXT GENERATED ALWAYS AS (strftime('%Y-%m-%dT%H:%M:%fZ', start_time_ns / 1e9, 'unixepoch')) VIRTUAL",
    "postgresql": "TIMESTAMPTZ GENERATED ALWAYS AS (to_timestamp(start_time_ns / 1e9::float8)) STORED",
}
# Small rollup rows are best clustered by their key in SQLite.
_ROLLUP_SUFFIX = {"sqlite": " WITHOUT ROWID", "postgresql": ""}

_V1_RECORDS = """CREATE TABLE IF NOT EXISTS completion_records (
    record_id TEXT PRIMARY KEY,
    start_time_ns BIGINT NOT NULL,
    end_time_ns BIGINT NOT NULL,
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    operation TEXT NOT NULL,
    request_model TEXT NOT NULL,
    response_model TEXT NOT NULL,
    status TEXT NOT NULL,
    http_status INTEGER,
    error_type TEXT,
    error_message TEXT,
    duration_s DOUBLE PRECISION NOT NULL,
    ttft_s DOUBLE PRECISION,
    stream BOOLEAN NOT NULL,
    stream_outcome TEXT,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    total_tokens BIGINT NOT NULL,
    cached_tokens BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    reasoning_tokens BIGINT NOT NULL,
    usage_source TEXT NOT NULL,
    provider_cost_nusd BIGINT,
    customer_cost_nusd BIGINT,
    price_source TEXT,
    priced BOOLEAN NOT NULL,
    user_id TEXT,
    api_key TEXT,
    feature TEXT,
    department TEXT,
    environment TEXT,
    service TEXT,
    source_ip TEXT,
    response_id TEXT,
    request_id TEXT,
    finish_reasons TEXT NOT NULL,
    events TEXT NOT NULL,
    ratelimits TEXT NOT NULL,
    input_messages TEXT,
    output_messages TEXT,
    source TEXT NOT NULL,
    start_time {start_time}
)"""

# Equality column first, then time: each serves "this user (model, ...) between t0 and t1". Status has one
# selective value: errors get a partial index (a few % of rows); successes are most rows and use the time index.
_V1_INDEXES = [
    "CREATE INDEX IF NOT EXISTS completion_records_time ON completion_records (start_time_ns)",
    *(
        f"CREATE INDEX IF NOT EXISTS completion_records_{column}_time ON completion_records ({column}, start_time_ns)"
        for column in ("user_id", "request_model", "response_model", "provider", "feature", "api_key")
    ),
    "CREATE INDEX IF NOT EXISTS completion_records_errors_time ON completion_records (start_time_ns)"
    " WHERE status = 'error'",
]

_ROLLUP = """CREATE TABLE IF NOT EXISTS {table} (
    {bucket} BIGINT NOT NULL,
    provider TEXT NOT NULL,
    operation TEXT NOT NULL,
    request_model TEXT NOT NULL,
    response_model TEXT NOT NULL,
    status TEXT NOT NULL,
    error_type TEXT NOT NULL,
    user_id TEXT NOT NULL,
    api_key TEXT NOT NULL,
    feature TEXT NOT NULL,
    department TEXT NOT NULL,
    environment TEXT NOT NULL,
    requests BIGINT NOT NULL,
    errors BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    total_tokens BIGINT NOT NULL,
    cached_tokens BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    reasoning_tokens BIGINT NOT NULL,
    provider_cost_nusd BIGINT NOT NULL,
    customer_cost_nusd BIGINT NOT NULL,
    unpriced_requests BIGINT NOT NULL,
    duration_s_sum DOUBLE PRECISION NOT NULL,
    ttft_s_sum DOUBLE PRECISION NOT NULL,
    ttft_count BIGINT NOT NULL,
    PRIMARY KEY ({bucket}, provider, operation, request_model, response_model, status, error_type, user_id,
                 api_key, feature, department, environment)
){suffix}"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: dict[Dialect, tuple[str, ...]]


def _v1(dialect: Dialect) -> tuple[str, ...]:
    return (
        _V1_RECORDS.format(start_time=_START_TIME[dialect]),
        *_V1_INDEXES,
        _ROLLUP.format(table="completion_rollup_hourly", bucket="hour_start_ns", suffix=_ROLLUP_SUFFIX[dialect]),
    )


_V2_DIMENSIONS = (
    "provider, operation, request_model, response_model, status, error_type, user_id, api_key, feature, department, "
    "environment"
)
_V2_SUMS = (
    "requests, errors, input_tokens, output_tokens, total_tokens, cached_tokens, cache_write_tokens, reasoning_tokens, "
    "provider_cost_nusd, customer_cost_nusd, unpriced_requests, duration_s_sum, ttft_s_sum, ttft_count"
)
_V2_BACKFILL = (
    f"INSERT INTO completion_rollup_daily (day_start_ns, {_V2_DIMENSIONS}, {_V2_SUMS}) "
    f"SELECT hour_start_ns - hour_start_ns % 86400000000000, {_V2_DIMENSIONS}, "
    + ", ".join(f"SUM({c.strip()})" for c in _V2_SUMS.split(","))
    + f" FROM completion_rollup_hourly GROUP BY 1, {_V2_DIMENSIONS}"
)
# A request log page is "records stored up to a point": SQLite's rowid already counts insertions; PostgreSQL gets
# an identity column (values handed out at insert, in commit order but for transactions still in flight).
_V2_SEQ = {
    "sqlite": (),
    "postgresql": (
        "ALTER TABLE completion_records ADD COLUMN IF NOT EXISTS seq BIGINT GENERATED BY DEFAULT AS IDENTITY",
    ),
}


def _v2(dialect: Dialect) -> tuple[str, ...]:
    return (
        _ROLLUP.format(table="completion_rollup_daily", bucket="day_start_ns", suffix=_ROLLUP_SUFFIX[dialect]),
        _V2_BACKFILL,
        *_V2_SEQ[dialect],
    )


# Migration 3: the service tier, on records and in the rollup key. A primary key cannot be changed in SQLite, so each
# rollup table is rebuilt: a new table with the new key, the old rows copied with tier '' (every record stored before
# has none), the old table dropped and the new one renamed in its place.
_V3_ROLLUP = """CREATE TABLE {table} (
    {bucket} BIGINT NOT NULL,
    provider TEXT NOT NULL,
    operation TEXT NOT NULL,
    request_model TEXT NOT NULL,
    response_model TEXT NOT NULL,
    status TEXT NOT NULL,
    error_type TEXT NOT NULL,
    user_id TEXT NOT NULL,
    api_key TEXT NOT NULL,
    feature TEXT NOT NULL,
    department TEXT NOT NULL,
    environment TEXT NOT NULL,
    service_tier TEXT NOT NULL,
    requests BIGINT NOT NULL,
    errors BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    total_tokens BIGINT NOT NULL,
    cached_tokens BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    reasoning_tokens BIGINT NOT NULL,
    provider_cost_nusd BIGINT NOT NULL,
    customer_cost_nusd BIGINT NOT NULL,
    unpriced_requests BIGINT NOT NULL,
    duration_s_sum DOUBLE PRECISION NOT NULL,
    ttft_s_sum DOUBLE PRECISION NOT NULL,
    ttft_count BIGINT NOT NULL,
    PRIMARY KEY ({bucket}, provider, operation, request_model, response_model, status, error_type, user_id,
                 api_key, feature, department, environment, service_tier)
){suffix}"""


def _v3_rebuild(dialect: Dialect, table: str, bucket: str) -> tuple[str, ...]:
    new = f"{table}_v3"
    return (
        _V3_ROLLUP.format(table=new, bucket=bucket, suffix=_ROLLUP_SUFFIX[dialect]),
        f"INSERT INTO {new} ({bucket}, {_V2_DIMENSIONS}, service_tier, {_V2_SUMS}) "
        f"SELECT {bucket}, {_V2_DIMENSIONS}, '', {_V2_SUMS} FROM {table}",
        f"DROP TABLE {table}",
        f"ALTER TABLE {new} RENAME TO {table}",
        *((f"ALTER INDEX {new}_pkey RENAME TO {table}_pkey",) if dialect == "postgresql" else ()),
    )


def _v3(dialect: Dialect) -> tuple[str, ...]:
    return (
        "ALTER TABLE completion_records ADD COLUMN service_tier TEXT",
        *_v3_rebuild(dialect, "completion_rollup_hourly", "hour_start_ns"),
        *_v3_rebuild(dialect, "completion_rollup_daily", "day_start_ns"),
    )


# Migration 4: narrow rollup families, an hourly and a daily table each, backfilled from the full hourly rollup. A
# report that groups and filters by a family's dimensions only reads its rows: a few per model (or user) and bucket
# instead of one per full key. Names are written out here, not taken from rollup.py, so this migration never changes.
_V4_FAMILIES = {
    "model": "provider, operation, request_model, response_model, status, error_type, environment, service_tier",
    "user": "user_id, api_key, feature, department, environment",
}
_V4_ROLLUP = """CREATE TABLE IF NOT EXISTS {table} (
    {bucket} BIGINT NOT NULL,
{dimensions}    requests BIGINT NOT NULL,
    errors BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    total_tokens BIGINT NOT NULL,
    cached_tokens BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    reasoning_tokens BIGINT NOT NULL,
    provider_cost_nusd BIGINT NOT NULL,
    customer_cost_nusd BIGINT NOT NULL,
    unpriced_requests BIGINT NOT NULL,
    duration_s_sum DOUBLE PRECISION NOT NULL,
    ttft_s_sum DOUBLE PRECISION NOT NULL,
    ttft_count BIGINT NOT NULL,
    PRIMARY KEY ({bucket}, {key})
){suffix}"""
_V4_SUMS_OF = ", ".join(f"SUM({c.strip()})" for c in _V2_SUMS.split(","))


def _v4_family(dialect: Dialect, name: str, key: str) -> tuple[str, ...]:
    dimensions = "".join(f"    {d.strip()} TEXT NOT NULL,\n" for d in key.split(","))
    suffix = _ROLLUP_SUFFIX[dialect]
    hourly, daily = f"completion_rollup_{name}_hourly", f"completion_rollup_{name}_daily"
    return (
        _V4_ROLLUP.format(table=hourly, bucket="hour_start_ns", dimensions=dimensions, key=key, suffix=suffix),
        _V4_ROLLUP.format(table=daily, bucket="day_start_ns", dimensions=dimensions, key=key, suffix=suffix),
        f"INSERT INTO {hourly} (hour_start_ns, {key}, {_V2_SUMS}) SELECT hour_start_ns, {key}, {_V4_SUMS_OF} "
        f"FROM completion_rollup_hourly GROUP BY hour_start_ns, {key}",
        f"INSERT INTO {daily} (day_start_ns, {key}, {_V2_SUMS}) "
        f"SELECT hour_start_ns / 86400000000000 * 86400000000000, {key}, {_V4_SUMS_OF} "
        f"FROM {hourly} GROUP BY 1, {key}",
    )


# Paying for the narrow rollups' upserts: the request log's response-model filter walks the time index instead (the
# response model follows the requested one, whose index stays); dropping it wins back ~8% of write throughput.
_V4_DROPPED = "DROP INDEX IF EXISTS completion_records_response_model_time"


def _v4(dialect: Dialect) -> tuple[str, ...]:
    return (*(s for name, key in _V4_FAMILIES.items() for s in _v4_family(dialect, name, key)), _V4_DROPPED)


# Priced apart, so kept on the records (no rollup key changes): Anthropic's 1-hour cache writes, fast mode and web
# searches, OpenAI's audio tokens.
_V5 = (
    "ALTER TABLE completion_records ADD COLUMN cache_write_1h_tokens BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE completion_records ADD COLUMN speed TEXT",
    "ALTER TABLE completion_records ADD COLUMN input_audio_tokens BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE completion_records ADD COLUMN output_audio_tokens BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE completion_records ADD COLUMN web_searches BIGINT NOT NULL DEFAULT 0",
)

# Other billed units (`Record.units`: image tokens, characters, audio seconds, images...) as a JSON object; rows
# stored before have none.
_V6 = ("ALTER TABLE completion_records ADD COLUMN units TEXT NOT NULL DEFAULT '{}'",)

# One record per LLM call (`calls.py`): each record's parent span and the instrumentations that saw its call; the
# indexes the evidence is looked up by (response id; model and start time among the records without one); the
# layers not kept (`layers.py`); on PostgreSQL, the keys writers lock while they resolve a batch (rows inserted and
# deleted in one transaction, never committed: unlogged).
_V7 = (
    "ALTER TABLE completion_records ADD COLUMN parent_span_id TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE completion_records ADD COLUMN seen_by TEXT NOT NULL DEFAULT '[]'",
    "CREATE INDEX IF NOT EXISTS completion_records_response_id ON completion_records (response_id)"
    " WHERE response_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS completion_records_unanswered ON completion_records (request_model, start_time_ns)"
    " WHERE response_id IS NULL",
    """CREATE TABLE IF NOT EXISTS completion_layers (
    record_id TEXT PRIMARY KEY,
    call_id TEXT NOT NULL,
    source TEXT NOT NULL,
    start_time_ns BIGINT NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS completion_layers_call ON completion_layers (call_id)",
)
_V7_LOCKS = "CREATE UNLOGGED TABLE IF NOT EXISTS completion_call_locks (key BIGINT PRIMARY KEY)"

# The request's model parameters and its custom dimensions, each a JSON object; rows stored before have none.
_V8 = (
    "ALTER TABLE completion_records ADD COLUMN params TEXT NOT NULL DEFAULT '{}'",
    "ALTER TABLE completion_records ADD COLUMN dimensions TEXT NOT NULL DEFAULT '{}'",
)
# The live feed reads the records stored after a position (PostgreSQL's seq; SQLite's rowid is the table's key).
_V10_SEQ_INDEX = "CREATE INDEX IF NOT EXISTS completion_records_seq ON completion_records (seq)"


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1, "completion_records and completion_rollup_hourly", {"sqlite": _v1("sqlite"), "postgresql": _v1("postgresql")}
    ),
    Migration(
        2,
        "completion_rollup_daily (backfilled), request log sequence",
        {"sqlite": _v2("sqlite"), "postgresql": _v2("postgresql")},
    ),
    Migration(
        3,
        "service_tier on records and in the rollup key (rollups rebuilt)",
        {"sqlite": _v3("sqlite"), "postgresql": _v3("postgresql")},
    ),
    Migration(
        4,
        "narrow rollups by model and by user, hourly and daily (backfilled); no response-model index",
        {"sqlite": _v4("sqlite"), "postgresql": _v4("postgresql")},
    ),
    Migration(
        5, "cache_write_1h_tokens, speed, audio tokens and web searches on records", {"sqlite": _V5, "postgresql": _V5}
    ),
    Migration(6, "units on records (JSON)", {"sqlite": _V6, "postgresql": _V6}),
    Migration(
        7,
        "one record per call: parent span, seen_by, evidence indexes, completion_layers (and call locks)",
        {"sqlite": _V7, "postgresql": (*_V7, _V7_LOCKS)},
    ),
    Migration(8, "request parameters and custom dimensions on records (JSON)", {"sqlite": _V8, "postgresql": _V8}),
    Migration(
        9,
        "report_runs: kept statements and scheduled report runs",
        {"sqlite": report_runs.MIGRATION, "postgresql": report_runs.MIGRATION},
    ),
    Migration(
        10,
        "operations_log (reprice, cleanup, forget, reload: who, when, arguments, outcome); records by seq",
        {"sqlite": oplog.migration("sqlite"), "postgresql": (*oplog.migration("postgresql"), _V10_SEQ_INDEX)},
    ),
)


def pending(applied: set[int]) -> list[Migration]:
    """The migrations not yet in `applied`, in order."""
    return [m for m in MIGRATIONS if m.version not in applied]
