"""What each step read and wrote, as OpenLineage datasets, for Airflow's OpenLineage provider.

The operators of both DAGs implement the provider's lineage methods (league_import.operators
.LineageMethods) over the plain functions here: each takes the step's report (what the step
returned, as etl.runs.report keeps it under its task id), the target's mapping and where the
target database is (Place), and returns the step's Lineage. No Airflow, no database.

Names, as the OpenLineage naming spec and the provider give them:
- a source file: namespace "file", name its absolute path (the client's LocalFileSystem naming,
  as Airflow's own file assets are named);
- a table: namespace "postgres://host:port", name "database.schema.table", from the postgres
  provider's get_openlineage_database_info, so that any other task's lineage of the same database
  names the same datasets; on an app's database (CONTRACT section 7) the app's own table and
  column names, from the mapping.

Facets:
- a file read: its record fields (schema), its records and bytes (inputStatistics), its digest
  (version); a table a health check read: its checks (dataQualityAssertions: the check and its
  subject as name, success when the check is ok);
- a table written: outputStatistics.rowCount, the rows the step changed in it (inserted,
  updated, deactivated or deleted); leagueImportRowChanges splits them, with the rows archived,
  adopted (an app's rows the pipeline took as its own) and left for the next run; columnLineage,
  for every column the step filled from a field, that field (the stage's columns from the files'
  record fields, the target's columns from the stage's);
- the run: leagueImport, whether it is a dry run and which step. A dry run names no output.

Counts come from the report only: a table the step wrote whose count the report does not keep is
named without statistics. The pipeline's own bookkeeping is not named: etl.runs and the run
lease, etl.stages, etl.state_<entity> (which of an app's rows are the pipeline's), the schema
version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import attr
from openlineage.client.event_v2 import InputDataset, OutputDataset
from openlineage.client.facet_v2 import (
    column_lineage_dataset,
    data_quality_assertions_dataset,
    dataset_version_dataset,
    input_statistics_input_dataset,
    output_statistics_output_dataset,
    schema_dataset,
)
from openlineage.client.generated.base import OutputDatasetFacet, RunFacet

from league_import.sources import SCHEDULE_FILE, STATS_FILE, STATS_NUMBERS, ScheduleRecord, StatsRecord
from league_import.target import ENTITIES, Target

FILE_NAMESPACE = "file"
SCHEMA = "public"
ETL, ARCHIVE = "etl", "etl_archive"
# The custom facets' JSON schemas ship in include/openlineage/, each with this $id.
FACET_URL = "league-import://openlineage/facets/1-0-0/{name}.json#/$defs/{name}"


@attr.define
class LeagueImportRunFacet(RunFacet):
    """Which step ran, and whether it was a dry run (which changes nothing)."""

    dryRun: bool = False  # noqa: N815 (OpenLineage's camelCase)
    step: str = ""

    @staticmethod
    def _get_schema() -> str:
        return FACET_URL.format(name="LeagueImportRunFacet")


@attr.define
class RowChangesOutputDatasetFacet(OutputDatasetFacet):
    """The rows a step changed in a table, by kind (outputStatistics keeps only their sum)."""

    inserted: int | None = None
    updated: int | None = None
    deactivated: int | None = None
    deleted: int | None = None
    archived: int | None = None
    adopted: int | None = None
    leftForNextRun: int | None = None  # noqa: N815

    @staticmethod
    def _get_schema() -> str:
        return FACET_URL.format(name="RowChangesOutputDatasetFacet")

    @property
    def changed(self) -> int:
        return sum(n or 0 for n in (self.inserted, self.updated, self.deactivated, self.deleted))


RUN_FACET = "leagueImport"
ROW_CHANGES = "leagueImportRowChanges"


@dataclass(frozen=True)
class Place:
    """Where the target database is, named as the postgres provider names it."""

    namespace: str  # postgres://host:port
    database: str

    def name(self, schema: str, table: str) -> str:
        return f"{self.database}.{schema}.{table}"


@dataclass
class Lineage:
    inputs: list[InputDataset] = field(default_factory=list)
    outputs: list[OutputDataset] = field(default_factory=list)
    run_facets: dict[str, RunFacet] = field(default_factory=dict)


# --- Where each column comes from ---------------------------------------------------------------

COPY, DERIVE = "IDENTITY", "TRANSFORMATION"
_TEAM_SIDES = ((STATS_FILE, "team"), (SCHEDULE_FILE, "home_team"), (SCHEDULE_FILE, "away_team"))
_LABELS = ((STATS_FILE, "series"), (SCHEDULE_FILE, "series"))
# The standings' numbers: the stage's column (and section 4's field) from the record's path.
_NUMBERS = {n: n if n == "points" else n.replace("_", ".", 1) for n in STATS_NUMBERS}

# The stage's columns (league_import.stage), from the record fields of the files.
STAGE_SOURCES: dict[str, dict[str, list[tuple[str, str, str]]]] = {
    "stage_teams": {
        "league_code": [(STATS_FILE, "league_id", COPY), (SCHEDULE_FILE, "League", COPY)],
        "series_key": [(f, n, DERIVE) for f, n in _LABELS],
        "series_label": [(f, n, COPY) for f, n in _LABELS],
        "club": [(f, n, DERIVE) for f, n in _TEAM_SIDES],
        "club_key": [(f, n, DERIVE) for f, n in _TEAM_SIDES],
        "team_key": [(f, n, DERIVE) for f, n in (*_TEAM_SIDES, *_LABELS)],
        "sub_team": [(f, n, DERIVE) for f, n in _TEAM_SIDES],
        "team_name": [(f, n, COPY) for f, n in _TEAM_SIDES],
    },
    "stage_schedule": {
        "league_code": [(SCHEDULE_FILE, "League", COPY)],
        "series_key": [(SCHEDULE_FILE, "series", DERIVE)],
        "match_date": [(SCHEDULE_FILE, "date", DERIVE)],
        "match_time": [(SCHEDULE_FILE, "time", DERIVE)],
        "home_key": [(SCHEDULE_FILE, "home_team", DERIVE), (SCHEDULE_FILE, "series", DERIVE)],
        "away_key": [(SCHEDULE_FILE, "away_team", DERIVE), (SCHEDULE_FILE, "series", DERIVE)],
        "location": [(SCHEDULE_FILE, "location", COPY)],
        "series_label": [(SCHEDULE_FILE, "series", COPY)],
        "home_name": [(SCHEDULE_FILE, "home_team", COPY)],
        "away_name": [(SCHEDULE_FILE, "away_team", COPY)],
    },
    "stage_stats": {
        "league_code": [(STATS_FILE, "league_id", COPY)],
        "series_key": [(STATS_FILE, "series", DERIVE)],
        "team_key": [(STATS_FILE, "team", DERIVE), (STATS_FILE, "series", DERIVE)],
        **{column: [(STATS_FILE, path, COPY)] for column, path in _NUMBERS.items()},
        "series_label": [(STATS_FILE, "series", COPY)],
        "team_name": [(STATS_FILE, "team", COPY)],
    },
}

# Each entity's fields (CONTRACT section 4's names, league_import.target.FIELDS), from the stage's
# columns; an id is the stage's key resolved to the row it names.
_T, _S, _X = "stage_teams", "stage_schedule", "stage_stats"
ENTITY_SOURCES: dict[str, dict[str, list[tuple[str, str, str]]]] = {
    "leagues": {"code": [(_T, "league_code", COPY)]},
    "clubs": {"name": [(_T, "club", COPY)], "name_key": [(_T, "club_key", COPY)]},
    "series": {
        "league_id": [(_T, "league_code", DERIVE)],
        "name": [(_T, "series_label", COPY)],
        "series_key": [(_T, "series_key", COPY)],
        "league": [(_T, "league_code", COPY)],
    },
    "teams": {
        "league_id": [(_T, "league_code", DERIVE)],
        "club_id": [(_T, "club_key", DERIVE)],
        "series_id": [(_T, "series_key", DERIVE)],
        "team_name": [(_T, "team_name", COPY)],
        "team_key": [(_T, "team_key", COPY)],
        "sub_team": [(_T, "sub_team", COPY)],
        "league": [(_T, "league_code", COPY)],
        "series": [(_T, "series_label", COPY)],
        "club": [(_T, "club", COPY)],
    },
    "schedule": {
        "league_id": [(_S, "league_code", DERIVE)],
        "series_id": [(_S, "series_key", DERIVE)],
        "match_date": [(_S, "match_date", COPY)],
        "match_time": [(_S, "match_time", COPY)],
        "home_team_id": [(_S, "home_key", DERIVE)],
        "away_team_id": [(_S, "away_key", DERIVE)],
        "location": [(_S, "location", COPY)],
        "home_team": [(_S, "home_name", COPY)],
        "away_team": [(_S, "away_name", COPY)],
        "series": [(_S, "series_label", COPY)],
        "league": [(_S, "league_code", COPY)],
    },
    "series_stats": {
        "league_id": [(_X, "league_code", DERIVE)],
        "series_id": [(_X, "series_key", DERIVE)],
        "team_id": [(_X, "team_key", DERIVE)],
        **{n: [(_X, n, COPY)] for n in _NUMBERS},
        "team": [(_X, "team_name", COPY)],
        "series": [(_X, "series_label", COPY)],
        "league": [(_X, "league_code", COPY)],
    },
}
# What etl.backup_teams copies from the teams entity (include/sql/backup.sql).
BACKUP_TEAM_FIELDS = ("id", "league_id", "club_id", "series_id", "team_name", "team_key", "sub_team", "is_active")


# --- Datasets -------------------------------------------------------------------------------------


def run_facets(step: str, dry_run: bool) -> dict[str, RunFacet]:
    return {RUN_FACET: LeagueImportRunFacet(dryRun=dry_run, step=step)}


def changes(**counts: int) -> dict[str, Any]:
    """outputStatistics and leagueImportRowChanges for counts by kind (zeros left out, but for
    rowCount)."""
    facet = RowChangesOutputDatasetFacet(**{k: int(v) for k, v in counts.items() if v})
    out: dict[str, Any] = {
        "outputStatistics": output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(rowCount=facet.changed)
    }
    if any(v for v in counts.values()):
        out[ROW_CHANGES] = facet
    return out


def _table_input(place: Place, schema: str, table: str, **input_facets: Any) -> InputDataset:
    return InputDataset(namespace=place.namespace, name=place.name(schema, table), inputFacets=input_facets)


def _table_output(
    place: Place, schema: str, table: str, stats: dict | None = None, lineage: Any = None
) -> OutputDataset:
    facets = {"columnLineage": lineage} if lineage is not None else {}
    return OutputDataset(
        namespace=place.namespace, name=place.name(schema, table), facets=facets, outputFacets=stats or {}
    )


def _rows_read(n: int) -> dict[str, Any]:
    return {"inputStatistics": input_statistics_input_dataset.InputStatisticsInputDatasetFacet(rowCount=int(n))}


def _column_lineage(columns: dict[str, list[tuple[str, str, str, str]]]) -> Any:
    """{column: [(namespace, name, field, subtype)]} as a columnLineage facet (None when empty)."""
    fields = {}
    for column, sources in columns.items():
        if not sources:
            continue
        fields[column] = column_lineage_dataset.Fields(
            inputFields=[
                column_lineage_dataset.InputField(
                    namespace=namespace,
                    name=name,
                    field=source,
                    transformations=[column_lineage_dataset.Transformation(type="DIRECT", subtype=subtype)],
                )
                for namespace, name, source, subtype in sources
            ]
        )
    return column_lineage_dataset.ColumnLineageDatasetFacet(fields=fields) if fields else None


def record_fields(record_type: type) -> list:
    """A record's fields as the pipeline decodes them (league_import.sources' structs), nested."""
    import msgspec.inspect as mi

    kinds = {mi.StrType: "string", mi.IntType: "integer", mi.FloatType: "number", mi.BoolType: "boolean"}

    def one(f: Any, position: int) -> Any:
        if isinstance(f.type, mi.StructType):
            nested = [one(x, i) for i, x in enumerate(f.type.fields, 1)]
            return schema_dataset.SchemaDatasetFacetFields(
                name=f.encode_name, type="struct", ordinal_position=position, fields=nested
            )
        return schema_dataset.SchemaDatasetFacetFields(
            name=f.encode_name, type=kinds.get(type(f.type), "object"), ordinal_position=position
        )

    return [one(f, i) for i, f in enumerate(mi.type_info(record_type).fields, 1)]


def source_files(report: dict) -> list[tuple[str, str, dict]]:
    """(league, absolute path, facts) of every file validate_constraints read, from its report."""
    folder = Path(report["source_dir"]).absolute()
    return [(code, str(folder / code / f["name"]), f) for code, files in report["files"].items() for f in files]


def file_input(path: str, facts: dict) -> InputDataset:
    name = Path(path).name
    record = {STATS_FILE: StatsRecord, SCHEDULE_FILE: ScheduleRecord}.get(name)
    facets: dict[str, Any] = {}
    if record is not None:
        facets["schema"] = schema_dataset.SchemaDatasetFacet(fields=record_fields(record))
    if facts.get("sha256"):
        facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=facts["sha256"])
    stats = input_statistics_input_dataset.InputStatisticsInputDatasetFacet(
        rowCount=int(facts["records"]), size=int(facts["bytes"]), fileCount=1
    )
    return InputDataset(namespace=FILE_NAMESPACE, name=path, facets=facets, inputFacets={"inputStatistics": stats})


# --- The steps of league_import -------------------------------------------------------------------


def validate(report: dict, place: Place, target: Target) -> Lineage:
    """The files read; the stage's tables and etl.source_files written."""
    files = source_files(report)
    inputs = [file_input(path, facts) for _, path, facts in files]
    by_kind: dict[str, list[str]] = {}
    for _, path, _ in files:
        by_kind.setdefault(Path(path).name, []).append(path)
    implied = report.get("implied", {})
    rows = {
        "stage_teams": sum(c.get("teams") or 0 for c in implied.values()),
        "stage_schedule": sum(c.get("schedule") or 0 for c in implied.values()),
        "stage_stats": sum(c.get("series_stats") or 0 for c in implied.values()),
    }
    outputs = []
    for table, sources in STAGE_SOURCES.items():
        columns = {
            column: [
                (FILE_NAMESPACE, path, source, subtype)
                for kind, source, subtype in found
                for path in by_kind.get(kind, ())
            ]
            for column, found in sources.items()
        }
        outputs.append(_table_output(place, ETL, table, changes(inserted=rows[table]), _column_lineage(columns)))
    outputs.append(_table_output(place, ETL, "source_files", changes(inserted=len(files))))
    return Lineage(inputs, outputs)


def _merge_changes(into: dict[tuple[str, str], dict[str, int]], schema: str, table: str, **counts: int) -> None:
    found = into.setdefault((schema, table), {})
    for kind, n in counts.items():
        found[kind] = found.get(kind, 0) + int(n or 0)


def _written(place: Place, written: dict[tuple[str, str], dict[str, int]]) -> list[OutputDataset]:
    return [_table_output(place, schema, table, changes(**counts)) for (schema, table), counts in written.items()]


def deduplicate(report: dict, place: Place, target: Target) -> Lineage:
    """The tables scanned for duplicates (a table whose key is enforced is not read); the removed
    rows, their archived copies, and the references moved to the surviving rows."""
    inputs, written = [], {}
    for table, result in report.get("tables", {}).items():
        if result.get("plan") == "enforced":
            continue
        inputs.append(_table_input(place, SCHEMA, table, **_rows_read(result.get("rows_before", 0))))
        if result.get("duplicates"):
            _merge_changes(written, SCHEMA, table, deleted=result["duplicates"], archived=result.get("archived", 0))
            _merge_changes(written, ARCHIVE, table, inserted=result.get("archived", 0))
        for moved, n in (result.get("repointed") or {}).items():
            if not n:
                continue
            if ": " in moved:  # "<table>: merged into an existing row": archived, then deleted
                other = moved.split(": ", 1)[0]
                _merge_changes(written, SCHEMA, other, deleted=n, archived=n)
                _merge_changes(written, ARCHIVE, other, inserted=n)
            else:  # "<table>.<column>": rows moved to the survivor
                _merge_changes(written, SCHEMA, moved.rsplit(".", 1)[0], updated=n)
    return Lineage(inputs, _written(place, written))


def _key_map_output(place: Place, key_map: dict) -> OutputDataset:
    inserted = key_map.get("ids_added", 0) + len(key_map.get("reused_ids", []))
    return _table_output(
        place, ETL, "team_key_map", changes(inserted=inserted, updated=key_map.get("spellings_added", 0))
    )


def backup(report: dict, place: Place, target: Target) -> Lineage:
    """teams and every user table's team column read on one snapshot; the backup tables and the
    key map written."""
    teams = target.table_name("teams")
    inputs = [_table_input(place, SCHEMA, t, **_rows_read(n)) for t, n in report.get("row_counts", {}).items()]
    copied = report.get("copied", {})
    team_columns = {}
    for name in BACKUP_TEAM_FIELDS:
        column = target.column("teams", name)
        if column is not None:
            team_columns[name] = [(place.namespace, place.name(SCHEMA, teams), column, COPY)]
    refs = {k: n for k, n in copied.items() if "." in k}
    ref_columns = {
        "team_id": [(place.namespace, place.name(SCHEMA, k.split(".")[0]), k.split(".", 1)[1], COPY) for k in refs]
    }
    outputs = [
        _table_output(
            place, ETL, "backup_teams", changes(inserted=copied.get(teams, 0)), _column_lineage(team_columns)
        ),
        _table_output(place, ETL, "backup_refs", changes(inserted=sum(refs.values())), _column_lineage(ref_columns)),
        _table_output(place, ETL, "backup_counts", changes(inserted=len(report.get("row_counts", {})))),
        _key_map_output(place, report.get("key_map", {})),
    ]
    return Lineage(inputs, outputs)


def _entity_lineage(place: Place, target: Target, entity: str) -> Any:
    """The target's columns of an entity, each from the stage's columns it is filled from."""
    columns = {}
    for column, source in target.entity(entity).columns.items():
        columns[column] = [
            (place.namespace, place.name(ETL, table), stage_column, subtype)
            for table, stage_column, subtype in ENTITY_SOURCES[entity].get(source, ())
        ]
    return _column_lineage(columns)


def upsert(report: dict, place: Place, target: Target) -> Lineage:
    """The stage read; the target's six tables written (ids kept), the rows that left archived,
    suspected renames recorded."""
    leagues = report.get("leagues", {}).values()

    def total(name: str) -> int:
        return sum(int(c.get(name, 0) or 0) for c in leagues)

    staged = {
        "stage_teams": total("teams_in_sources"),
    }
    inputs = [_table_input(place, ETL, t, **(_rows_read(staged[t]) if t in staged else {})) for t in STAGE_SOURCES]
    adopted = report.get("adopted", {})
    counts = {
        "leagues": {"inserted": report.get("leagues_created", 0)},
        "clubs": {"inserted": report.get("clubs_created", 0)},
        "series": {"inserted": report.get("series_created", 0), "updated": report.get("series_renamed", 0)},
        "teams": {
            "inserted": total("teams_created"),
            "updated": total("teams_updated"),
            "deactivated": total("teams_deactivated"),
        },
        "schedule": {
            k: total(f"schedule_{k2}")
            for k, k2 in (("inserted", "created"), ("updated", "updated"), ("deleted", "deleted"))
        },
        "series_stats": {
            k: total(f"stats_{k2}")
            for k, k2 in (("inserted", "created"), ("updated", "updated"), ("deleted", "deleted"))
        },
    }
    outputs = []
    for entity in ENTITIES:
        found = dict(counts[entity])
        if entity in ("schedule", "series_stats") and found.get("deleted"):
            found["archived"] = found["deleted"]
        if adopted.get(entity):
            found["adopted"] = adopted[entity]
        table = target.table_name(entity)
        outputs.append(_table_output(place, SCHEMA, table, changes(**found), _entity_lineage(place, target, entity)))
    for entity in ("schedule", "series_stats"):
        if counts[entity]["deleted"]:
            outputs.append(
                _table_output(place, ARCHIVE, target.table_name(entity), changes(inserted=counts[entity]["deleted"]))
            )
    if report.get("suspected_renames"):
        outputs.append(_table_output(place, ETL, "rename_suspects", changes(inserted=len(report["suspected_renames"]))))
    return Lineage(inputs, outputs)


def restore_mapping(report: dict, place: Place, target: Target) -> Lineage:
    """The key map, the last backup and teams read; every user table whose rows were put back on
    their teams (or quarantined) written, with the archived copies, etl.repairs, etl.quarantine."""
    teams = target.table_name("teams")
    inputs = [
        _table_input(place, SCHEMA, teams),
        _table_input(place, ETL, "team_key_map"),
        _table_input(place, ETL, "backup_refs"),
    ]
    by_table: dict[str, dict[str, int]] = report.get("by_table", {})
    left = report.get("left_for_next_run", {})
    removed = report.get("quarantined_rows_removed", {})
    merged = report.get("merged_into_existing_rows", {})
    archived = report.get("archived_rows", {})
    written: dict[tuple[str, str], dict[str, int]] = {}
    for table, decided in by_table.items():
        inputs.append(_table_input(place, SCHEMA, table))
        deleted = removed.get(table, 0) + merged.get(table, 0)
        changed = sum(decided.values()) - left.get(table, 0)
        _merge_changes(
            written,
            SCHEMA,
            table,
            updated=changed - deleted,
            deleted=deleted,
            archived=archived.get(table, 0),
            leftForNextRun=left.get(table, 0),
        )
        if archived.get(table):
            _merge_changes(written, ARCHIVE, table, inserted=archived[table])
    outputs = _written(place, written)
    strategies = report.get("by_strategy", {})
    if report.get("orphans"):
        outputs.append(_table_output(place, ETL, "repairs"))
    if strategies.get("quarantine"):
        outputs.append(_table_output(place, ETL, "quarantine"))
    if strategies.get("restored_team"):
        outputs.append(_table_output(place, SCHEMA, teams))  # teams put back, inactive
    outputs.append(_key_map_output(place, report.get("key_map", {})))
    return Lineage(inputs, outputs)


def _checked_table(check: str, subject: str, target: Target) -> tuple[str, str, str | None] | None:
    """(schema, table, column) a health check looked at, from its check and subject
    (league_import.health)."""
    if check == "orphans":
        table, _, column = subject.partition(".")
        return SCHEMA, table, column or None
    if check == "constraint":
        named = {k.name: k.table for k in target.natural_keys()} | {r.name: r.table for r in target.references()}
        return (SCHEMA, named[subject], None) if subject in named else None
    if check in ("reconcile",) or (check == "freshness" and " " in subject):
        entity = subject.split(" ", 1)[0]
        return SCHEMA, target.table_name(entity) if entity in ENTITIES else entity, None
    if check == "freshness":  # a league's files, as etl.source_files records them
        return ETL, "source_files", None
    if check == "duplicates" and subject in ENTITIES:
        return SCHEMA, target.table_name(subject), None
    schema, _, table = subject.rpartition(".")
    return schema or SCHEMA, table, None


def assertions(report: dict, target: Target) -> dict[tuple[str, str], list]:
    """The health check's checks as data-quality assertions, by the table each looked at."""
    problems = {f"{p['check']}:{p['subject']}": p for p in report.get("problems", [])}
    out: dict[tuple[str, str], list] = {}
    for name, figure in report.get("figures", {}).items():
        check, _, subject = name.partition(":")
        where = _checked_table(check, subject, target)
        if where is None:
            continue
        schema, table, column = where
        problem = problems.get(name)
        out.setdefault((schema, table), []).append(
            data_quality_assertions_dataset.Assertion(
                assertion=check,
                success=problem is None,
                column=column,
                severity=problem["status"] if problem else None,
                name=name,
                expected=problem["threshold"] if problem else None,
                actual=_figure(figure),
            )
        )
    return out


def _figure(x: Any) -> str:
    return str(int(x)) if isinstance(x, float) and x.is_integer() else str(x)


def health(report: dict, place: Place, target: Target) -> Lineage:
    """Every table a check read, with its checks; etl.health_checks and the HTML report written."""
    inputs = [
        _table_input(
            place,
            schema,
            table,
            dataQualityAssertions=data_quality_assertions_dataset.DataQualityAssertionsDatasetFacet(assertions=found),
        )
        for (schema, table), found in assertions(report, target).items()
    ]
    outputs = [_table_output(place, ETL, "health_checks", changes(inserted=len(report.get("figures", {}))))]
    page = report.get("report_path")
    if page and Path(page).is_file():
        size = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
            size=Path(page).stat().st_size, fileCount=1
        )
        outputs.append(
            OutputDataset(
                namespace=FILE_NAMESPACE, name=str(Path(page).absolute()), outputFacets={"outputStatistics": size}
            )
        )
    return Lineage(inputs, outputs)


# --- The steps of league_review -------------------------------------------------------------------


QUESTION_TABLES = {"quarantine": "quarantine", "rename": "rename_suspects", "growth": "growth_alarms"}


def collect(report: list[dict], place: Place, target: Target) -> Lineage:
    """The pending decisions read; where each is asked recorded (etl.review_links)."""
    kinds = QUESTION_TABLES
    waiting = {table: 0 for table in kinds.values()}
    for ask in report or []:
        kind = ask["item"].split(":", 1)[0]
        if kind in kinds:
            waiting[kinds[kind]] += 1
    inputs = [_table_input(place, ETL, table, **_rows_read(n)) for table, n in waiting.items()]
    return Lineage(inputs, [_table_output(place, ETL, "review_links", changes(inserted=len(report or [])))])


def ask(report: Any, place: Place, target: Target) -> Lineage:
    """A question waits for a person: nothing read, nothing written."""
    return Lineage()


def apply(report: dict, place: Place, target: Target) -> Lineage:
    """What an answer applied changes, by kind of question (the outcome is text: no counts).
    A quarantined row goes back on its team (its table is in etl.quarantine); a rename decided
    "same team" merges the two teams; a growth answered sets the table's baseline."""
    applied = list((report or {}).get("applied", {}))
    if not applied:
        return Lineage()
    kinds = {item.split(":", 1)[0] for item in applied}
    tables = [(ETL, "decisions")]
    if "quarantine" in kinds:
        tables += [(ETL, "quarantine")]
    if "rename" in kinds:
        tables += [(ETL, "rename_suspects"), (SCHEMA, target.table_name("teams")), (ETL, "team_aliases")]
    if "growth" in kinds:
        tables += [(ETL, "growth_alarms")]
    inputs = [_table_input(place, ETL, t) for s, t in tables if s == ETL and t != "decisions"]
    return Lineage(inputs, [_table_output(place, schema, table) for schema, table in tables])


def announce(report: dict, place: Place, target: Target) -> Lineage:
    """The questions waiting, counted: nothing written (the league_questions Asset is Airflow's)."""
    counts = report or {}
    tables = QUESTION_TABLES.items()
    return Lineage([_table_input(place, ETL, table, **_rows_read(counts.get(kind, 0))) for kind, table in tables], [])


STEPS = {
    "validate_constraints": validate,
    "deduplicate": deduplicate,
    "backup": backup,
    "upsert_teams": upsert,
    "restore_mapping": restore_mapping,
    "health_check": health,
    "collect_decisions": collect,
    "ask": ask,
    "announce_questions": announce,
    "apply": apply,
}
# What a failed step leaves written: the health check records its checks and writes its page
# before it fails the run; every other step is one transaction, or resumed by its retry.
WRITTEN_WHEN_FAILED = ("health_check",)


def of_step(
    step: str,
    report: Any,
    place: Place,
    target: Target,
    *,
    dry_run: bool,
    failed: bool = False,
) -> Lineage:
    """A step's lineage from its report (None: the step kept none, as a failed step or at its
    start). A dry run, and a failed step but for WRITTEN_WHEN_FAILED, name no output."""
    found = STEPS[step](report, place, target) if report is not None else Lineage()
    if dry_run or (failed and step not in WRITTEN_WHEN_FAILED):
        found.outputs = []
    found.run_facets.update(run_facets(step, dry_run))
    return found
