"""Strict, bounded JSON schemas for structured output, generated from the output models.

Servers that enforce a ``json_schema`` (OpenAI's strict mode, llama.cpp's grammar, vLLM's
guided decoding) keep a model's answer in shape, but an unbounded string or array lets a
small model loop until it runs out of tokens. So every schema sent is bounded: each string
has a ``maxLength``, each array a ``maxItems``, and what the caller already knows (source
names, fact ids, section ids, sentence numbers) is an ``enum``. A :class:`Bounds` names
those per call, by property path (``"sections.sources"``: the items of the ``sources``
array of each item of ``sections``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

# What an unbounded string or array is capped at when the caller names no bound.
DEFAULT_MAX_LENGTH = 400
DEFAULT_MAX_ITEMS = 12


@dataclass(frozen=True)
class Bounds:
    """Per-call narrowing of an output model's schema, each keyed by a dotted property path."""

    enums: Mapping[str, Sequence[str | int]] = field(default_factory=dict)
    max_items: Mapping[str, int] = field(default_factory=dict)
    max_length: Mapping[str, int] = field(default_factory=dict)
    min_items: Mapping[str, int] = field(default_factory=dict)


def strict_schema(output: type[BaseModel], bounds: Bounds | None = None) -> dict[str, Any]:
    """``output``'s JSON schema: inlined, closed, every property required, and bounded."""
    raw = output.model_json_schema()
    schema: dict[str, Any] = _inline(raw, raw.get("$defs", {}))
    _close(schema)
    bounds = bounds or Bounds()
    for path, values in bounds.enums.items():
        node = _node(schema, path)
        node["enum"] = list(dict.fromkeys(values))
        for key in ("pattern", "minimum", "maximum", "maxLength", "minLength"):
            node.pop(key, None)
    for path, count in bounds.max_items.items():
        node = _node(schema, path, items=False)
        node["maxItems"] = max(count, node.get("minItems", 0))
    for path, count in bounds.min_items.items():
        node = _node(schema, path, items=False)
        node["minItems"] = min(count, node.get("maxItems", count))
    for path, length in bounds.max_length.items():
        _node(schema, path)["maxLength"] = length
    return schema


def _inline(node: Any, defs: Mapping[str, Any]) -> Any:
    """``node`` with every ``$ref`` replaced by its definition (small models need no refs),
    without the keywords that only document (``title``, ``default``)."""
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _inline(copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]]), defs)
    inlined: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":  # property names are not keywords: keep every one
            inlined[key] = {name: _inline(v, defs) for name, v in value.items()}
        elif key not in ("$defs", "title", "default"):
            inlined[key] = _inline(value, defs)
    return inlined


def _close(node: dict[str, Any]) -> None:
    """Close objects (no extra keys, all keys required) and cap unbounded strings and arrays."""
    kind = node.get("type")
    if kind == "object":
        props: dict[str, Any] = node.get("properties", {})
        node["additionalProperties"] = False
        node["required"] = list(props)
        for child in props.values():
            _close(child)
    elif kind == "array":
        node.setdefault("maxItems", DEFAULT_MAX_ITEMS)
        _close(node.setdefault("items", {}))
    elif kind == "string" and "enum" not in node:
        node.setdefault("maxLength", DEFAULT_MAX_LENGTH)


def _node(schema: dict[str, Any], path: str, *, items: bool = True) -> dict[str, Any]:
    """The schema node at ``path``: an array's items, or the array itself if not ``items``."""
    node = schema
    for part in path.split("."):
        if node.get("type") == "array":
            node = node["items"]
        try:
            node = node["properties"][part]
        except KeyError:
            msg = f"the schema has no property {path!r} (at {part!r})"
            raise KeyError(msg) from None
    if items and node.get("type") == "array":
        node = node["items"]
    return node
