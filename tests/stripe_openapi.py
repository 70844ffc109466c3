"""The parts of Stripe's published OpenAPI schema (https://github.com/stripe/openapi,
``openapi/spec3.json`` or ``spec3.yaml``) that describe the objects billing uses, as JSON
Schema that ``jsonschema`` can check answers against.

``trim(spec)`` keeps the objects (``checkout.session``, ``payment_intent``, ``charge``,
``refund``, ``event``, and for saved cards ``customer`` and ``payment_method``), the line item
a session's ``line_items`` lists, the ``error`` body, and every schema they need, resolved
into one document; other API resources they merely name (customer, invoice,
account…), which the sandbox answers as ids or nulls and never expands, are cut to "an
object". OpenAPI 3.0's ``nullable`` becomes JSON Schema's ``null`` type.

Run as a script to write the fragments from a copy of the spec:
``python -m tests.stripe_openapi spec3.yaml fragments.json``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

ROOTS = (
    "checkout.session", "payment_intent", "charge", "refund", "event", "item", "customer",
    "payment_method", "error",
)  # fmt: skip
# Where the fragments are looked for: a path in this variable, then beside the tests, then in
# the steering repository's shared/ (which CI lays beside the clone).
ENVIRONMENT = "BILLING_STRIPE_OPENAPI"
_HERE = Path(__file__).resolve().parent
CANDIDATES = (
    _HERE / "data" / "stripe_openapi" / "fragments.json",
    _HERE.parent.parent / "shared" / "stripe_openapi" / "fragments.json",
)
_DROPPED = {"description", "title", "example", "examples", "format"}


def trim(spec: dict[str, Any]) -> dict[str, Any]:
    schemas: dict[str, Any] = spec["components"]["schemas"]
    kept: dict[str, Any] = {}
    todo = list(ROOTS)
    while todo:
        name = todo.pop()
        if name in kept:
            continue
        kept[name] = _convert(schemas[name], schemas, todo)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "x-source": {
            "repository": "https://github.com/stripe/openapi",
            "api_version": spec.get("info", {}).get("version"),
        },
        "$defs": dict(sorted(kept.items())),
    }


def _convert(node: Any, schemas: dict[str, Any], todo: list[str]) -> Any:
    if isinstance(node, list):
        return [_convert(item, schemas, todo) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[1]
        target = schemas[name]
        if name not in ROOTS and "x-resourceId" in target:
            return {"type": "object", "x-trimmed": name}  # a resource billing never expands
        todo.append(name)
        return {"$ref": f"#/$defs/{name}"}
    converted = {
        key: (
            {k: _convert(v, schemas, todo) for k, v in value.items()}
            if key == "properties"
            else _convert(value, schemas, todo)
        )
        for key, value in node.items()
        if key not in _DROPPED and not key.startswith("x-") and key != "nullable"
    }
    if node.get("nullable"):
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


def load() -> dict[str, Any] | None:
    """The fragments (or a whole spec, trimmed now), or None when none is at hand."""
    configured = os.environ.get(ENVIRONMENT)
    for path in [Path(configured)] if configured else CANDIDATES:
        if path.is_file():
            document = _read(path)
            return document if "$defs" in document else trim(document)
    return None


def _read(path: Path) -> dict[str, Any]:
    if path.suffix in {".yaml", ".yml"}:
        import yaml

        loaded: dict[str, Any] = yaml.load(path.read_text(), Loader=yaml.CSafeLoader)
        return loaded
    parsed: dict[str, Any] = json.loads(path.read_text())
    return parsed


if __name__ == "__main__":
    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    fragments = trim(_read(source))
    target.write_text(json.dumps(fragments, indent=1, sort_keys=True) + "\n")
    print(f"{len(fragments['$defs'])} schemas, {target.stat().st_size} bytes → {target}")
