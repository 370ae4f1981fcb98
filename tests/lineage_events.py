"""OpenLineage events as a run writes them (the client's file transport), and their validation
with jsonschema against the OpenLineage JSON schemas, with no network.

Which schemas: the OpenLineage spec's own JSON files when a folder of them is at hand
(LEAGUE_IMPORT_OPENLINEAGE_SPEC, else ../shared/spec/openlineage beside the checkout: its
OpenLineage.json and facets/*.json). Otherwise the schemas as the pinned client carries them:
openlineage-python ships no JSON file, only its model (openlineage.client.generated), generated
from those schemas, each class naming the schema and definition it was generated from
(_get_schema()); client_schemas() turns the model back into JSON schemas under the same URLs:
each field with its type, nested definitions by reference, the fields the client always writes
required. league-import's own facets' schemas are in include/openlineage/.

Every event is validated against the schema its schemaURL names, and every facet in it against
the schema its _schemaURL names: a facet whose schema is not at hand fails the check.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import types
import typing
from enum import Enum
from functools import cache
from pathlib import Path

import attr
from helpers import REPO
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

OWN_SCHEMAS = REPO / "include" / "openlineage"


def spec_folder() -> Path | None:
    """A folder of the OpenLineage spec's JSON schemas, when one is at hand."""
    given = os.environ.get("LEAGUE_IMPORT_OPENLINEAGE_SPEC")
    for folder in ([Path(given)] if given else []) + [REPO.parent / "shared" / "spec" / "openlineage"]:
        if (folder / "OpenLineage.json").is_file():
            return folder
    return None


def _definitions() -> tuple[dict[type, str], dict[str, list[type]]]:
    """Every attrs class of the client's generated model, by the schema document it belongs to."""
    import openlineage.client.generated as generated

    where: dict[type, str] = {}
    modules: dict[str, list[type]] = {}
    for info in pkgutil.iter_modules(generated.__path__):
        module = importlib.import_module(f"{generated.__name__}.{info.name}")
        classes = [
            c for c in vars(module).values() if isinstance(c, type) and attr.has(c) and c.__module__ == module.__name__
        ]
        documents = {c._get_schema().partition("#")[0] for c in classes if "_get_schema" in vars(c)}
        for c in classes:
            if "_get_schema" in vars(c):
                where[c] = c._get_schema().partition("#")[0]
            elif len(documents) == 1:  # a nested definition, in its module's one document
                where[c] = next(iter(documents))
            modules.setdefault(where.get(c, ""), []).append(c)
    return where, modules


def _json_type(t: typing.Any, where: dict[type, str]) -> dict:
    origin, args = typing.get_origin(t), typing.get_args(t)
    if origin in (typing.Union, types.UnionType):
        kinds = [_json_type(a, where) for a in args if a is not type(None)]
        return kinds[0] if len(kinds) == 1 else {"anyOf": kinds}
    if origin is list:
        return {"type": "array", "items": _json_type(args[0], where)}
    if origin is dict:
        return {"type": "object", "additionalProperties": _json_type(args[1], where)}
    if isinstance(t, type) and issubclass(t, Enum):
        return {"type": "string", "enum": [e.value for e in t]}
    if isinstance(t, type) and attr.has(t):
        return {"$ref": f"{where[t]}#/$defs/{t.__name__}"}
    simple = {str: "string", bool: "boolean", int: "integer", float: "number"}
    return {"type": simple[t]} if t in simple else {}


def _class_schema(cls: type, where: dict[type, str]) -> dict:
    hints = typing.get_type_hints(cls)
    properties, required = {}, []
    for f in attr.fields(cls):
        properties[f.name] = _json_type(hints[f.name], where)
        always = f.default is not None and not isinstance(f.default, attr.Factory)  # written by the client every time
        if always:
            required.append(f.name)
    return {"type": "object", "properties": properties, "required": required}


@cache
def client_schemas() -> dict[str, dict]:
    """The pinned client's model as JSON schema documents, by their URL (without fragment)."""
    where, modules = _definitions()
    documents = {}
    for url, classes in modules.items():
        if not url:
            continue
        documents[url] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": url,
            "$defs": {c.__name__: _class_schema(c, where) for c in classes},
        }
    return documents


@cache
def registry() -> Registry:
    folder = spec_folder()
    if folder is not None:
        documents = [
            json.loads(p.read_text())
            for p in [folder / "OpenLineage.json", *sorted((folder / "facets").glob("*.json"))]
        ]
    else:
        documents = list(client_schemas().values())
    documents += [json.loads(p.read_text()) for p in sorted(OWN_SCHEMAS.glob("*.json"))]
    return Registry().with_resources(
        (d["$id"], Resource.from_contents(d, default_specification=DRAFT202012)) for d in documents
    )


def _facets(event: dict):
    """(where, facet) for every facet of an event."""
    for group in ("run", "job"):
        for name, facet in event.get(group, {}).get("facets", {}).items():
            yield f"{group}.{name}", facet
    for side, extra in (("inputs", "inputFacets"), ("outputs", "outputFacets")):
        for dataset in event.get(side, []):
            for key in ("facets", extra):
                for name, facet in (dataset.get(key) or {}).items():
                    yield f"{side}[{dataset['name']}].{key}.{name}", facet


def problems(event: dict) -> list[str]:
    """What in an event its schemas refuse (empty: it validates)."""
    found = []

    def check(where: str, url: str, value: dict) -> None:
        validator = Draft202012Validator({"$ref": url}, registry=registry())
        try:
            errors = list(validator.iter_errors(value))
        except Exception as exc:  # noqa: BLE001 (an unresolvable schema URL is a problem too)
            found.append(f"{where}: {url}: {exc}")
            return
        found.extend(f"{where}: {e.json_path}: {e.message}" for e in errors)

    check("event", event["schemaURL"], event)
    for where, facet in _facets(event):
        check(where, facet.get("_schemaURL", "<none>"), facet)
    return found


def read_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def by_task(events: list[dict], dag_id: str = "league_import") -> dict[str, dict[str, dict]]:
    """{task id: {event type: event}} of the task events (the last of each type)."""
    out: dict[str, dict[str, dict]] = {}
    for e in events:
        job = e["job"]["name"]
        if job.startswith(f"{dag_id}."):
            out.setdefault(job.split(".", 1)[1], {})[e["eventType"]] = e
    return out


def datasets(event: dict, side: str) -> dict[str, dict]:
    """An event's inputs or outputs by name."""
    return {d["name"]: d for d in event.get(side, [])}
