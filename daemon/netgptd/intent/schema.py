"""The intent schema (``schema.json``, shipped in the package) and its validator.

``jsonschema`` is not a dependency of netgptd, so :func:`validate` uses a small
validator of its own that implements exactly the keywords the schema uses
(``type``, ``enum``, ``required``, ``properties``, ``additionalProperties:
false``, ``minProperties``, ``items``, ``minItems``, ``maxItems``,
``uniqueItems``, ``minLength``, ``maxLength``, ``pattern``, ``minimum``,
``maximum``, ``anyOf`` and the formats ``ipv4``, ``ipv6``, ``cidr``, ``date``)
and refuses a schema with any other keyword, so the schema cannot silently
grow a feature that is not checked. Where ``jsonschema`` happens to be
installed, it checks every intent as well (with the same formats).
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

SCHEMA_PATH = Path(__file__).with_name("schema.json")

ANNOTATIONS = {"$schema", "$id", "title", "description", "$comment"}
KEYWORDS = {"type", "enum", "required", "properties", "additionalProperties", "minProperties", "items", "minItems",
            "maxItems", "uniqueItems", "minLength", "maxLength", "pattern", "minimum", "maximum", "anyOf", "format"}  # fmt: skip


class SchemaError(ValueError):
    """An intent (or the schema itself) that does not validate; the message says where and why."""


@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    check_schema(schema)
    return schema


def check_schema(node: Any, where: str = "#") -> None:
    """Refuse keywords this validator does not implement."""
    if not isinstance(node, dict):
        raise SchemaError(f"{where}: a schema must be an object")
    unknown = set(node) - KEYWORDS - ANNOTATIONS
    if unknown:
        raise SchemaError(f"{where}: unsupported keyword(s) {sorted(unknown)}")
    if node.get("additionalProperties", False) is not False:
        raise SchemaError(f"{where}: only additionalProperties: false is supported")
    if "format" in node and node["format"] not in FORMATS:
        raise SchemaError(f"{where}: unsupported format {node['format']!r}")
    for name, sub in node.get("properties", {}).items():
        check_schema(sub, f"{where}/properties/{name}")
    if "items" in node:
        check_schema(node["items"], f"{where}/items")
    for i, sub in enumerate(node.get("anyOf", [])):
        check_schema(sub, f"{where}/anyOf/{i}")


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
        return True
    except ValueError:
        return False


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
        return "%" not in text
    except ValueError:
        return False


def _is_cidr(text: str) -> bool:
    if "/" not in text:
        return False
    try:
        ipaddress.ip_network(text, strict=True)
        return True
    except ValueError:
        return False


def _is_date(text: str) -> bool:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return False
    try:
        _dt.date.fromisoformat(text)
        return True
    except ValueError:
        return False


FORMATS = {"ipv4": _is_ipv4, "ipv6": _is_ipv6, "cidr": _is_cidr, "date": _is_date}

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
}


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def errors(value: Any, schema: dict[str, Any], where: str = "") -> list[str]:
    """Every way ``value`` fails ``schema`` (empty: valid)."""
    out: list[str] = []
    here = where or "/"
    kind = schema.get("type")
    if kind is not None and not _TYPES[kind](value):
        return [f"{here}: expected {kind}, got {type(value).__name__}"]
    if "enum" in schema and not any(_canon(value) == _canon(choice) for choice in schema["enum"]):
        out.append(f"{here}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                out.append(f"{here}: missing required {name!r}")
        if schema.get("additionalProperties") is False:
            for name in value:
                if name not in props:
                    out.append(f"{here}: unexpected property {name!r}")
        if len(value) < schema.get("minProperties", 0):
            out.append(f"{here}: needs at least {schema['minProperties']} properties")
        for name, sub in props.items():
            if name in value:
                out += errors(value[name], sub, f"{where}/{name}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            out.append(f"{here}: needs at least {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            out.append(f"{here}: at most {schema['maxItems']} items")
        if schema.get("uniqueItems") and len({_canon(v) for v in value}) != len(value):
            out.append(f"{here}: items are not unique")
        if "items" in schema:
            for i, item in enumerate(value):
                out += errors(item, schema["items"], f"{where}/{i}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            out.append(f"{here}: shorter than {schema['minLength']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            out.append(f"{here}: longer than {schema['maxLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            out.append(f"{here}: does not match {schema['pattern']}")
        if "format" in schema and not FORMATS[schema["format"]](value):
            out.append(f"{here}: {value!r} is not a valid {schema['format']}")
    if _TYPES["number"](value):
        if "minimum" in schema and value < schema["minimum"]:
            out.append(f"{here}: below {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            out.append(f"{here}: above {schema['maximum']}")
    if "anyOf" in schema and not any(not errors(value, sub, where) for sub in schema["anyOf"]):
        out.append(f"{here}: matches none of anyOf")
    return out


def _jsonschema_errors(intent: Any) -> list[str]:
    try:
        import jsonschema  # type: ignore[import-not-found]
    except ImportError:
        return []
    checker = jsonschema.FormatChecker()
    for name, test in FORMATS.items():
        checker.checks(name)(test)
    validator = jsonschema.Draft202012Validator(load_schema(), format_checker=checker)
    return [f"jsonschema: {e.message}" for e in validator.iter_errors(intent)]


def validate(intent: Any) -> None:
    """Raise :class:`SchemaError` unless ``intent`` (a JSON-like dict) validates against the schema."""
    problems = errors(intent, load_schema()) or _jsonschema_errors(intent)
    if problems:
        raise SchemaError("; ".join(problems))


def is_valid(intent: Any) -> bool:
    try:
        validate(intent)
        return True
    except SchemaError:
        return False


def actions() -> list[str]:
    return list(load_schema()["properties"]["action"]["enum"])


def applications() -> list[str]:
    """Every application name an intent may carry: nDPI 4.2's protocol names."""
    return list(load_schema()["properties"]["target"]["properties"]["application"]["items"]["enum"])


DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
