"""API models built from the configured fields, so the OpenAPI schema names every one of them.

The fields are configuration (``VOCABSYNC_SOURCES``), so the models of ``GET /api/vocabulary``,
the counts of ``POST /api/vocabulary/refresh`` and the field names ``POST /api/vocabulary/match``
accepts and answers are made when a router is built, one set per field tuple. Field names are
aliases of generated attribute names, so no field (``json``, ``copy`` ...) can shadow a pydantic
attribute.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field, create_model

from vocabsync.vocabulary import FIELDS

COUNT_ORDER: tuple[str, ...] = (
    "projects",
    "project_locations",
    "expense_categories",
    "cashflow_categories",
    "expense_files",
    "cashflow_files",
)
"""The design document's order of the refresh counts (kept: its clients see the same body)."""

assert set(COUNT_ORDER) == set(FIELDS)


def field_type(fields: Sequence[str]) -> Any:
    """``Literal[<each field>]``: validates a field name and lists the names in the schema."""
    return Literal.__getitem__(tuple(fields))


def _aliased(name: str, fields: Sequence[str], annotation: Any) -> type[BaseModel]:
    """A model with one attribute of type ``annotation`` per field, named by the field."""
    definitions: dict[str, Any] = {
        f"field_{index}": (annotation, Field(alias=field_name))
        for index, field_name in enumerate(fields)
    }
    model: type[BaseModel] = create_model(name, **definitions)
    return model


@functools.cache
def vocabulary_response(fields: tuple[str, ...], meta: type[BaseModel]) -> type[BaseModel]:
    """``GET /api/vocabulary``: one sorted list per field, then ``meta``."""
    lists = _aliased("VocabularyLists", fields, list[str])
    model: type[BaseModel] = create_model(
        "VocabularyResponse", __base__=lists, meta=(meta, Field())
    )
    return model


@functools.cache
def refresh_response(fields: tuple[str, ...]) -> type[BaseModel]:
    """``POST /api/vocabulary/refresh``: the design document's shape, a count per field."""
    ordered = [name for name in COUNT_ORDER if name in fields]
    ordered += [name for name in fields if name not in COUNT_ORDER]
    counts = _aliased("VocabularyCounts", ordered, int)
    model: type[BaseModel] = create_model(
        "RefreshResponse",
        success=(bool, Field()),
        message=(str, Field()),
        vocabulary_counts=(counts, Field()),
    )
    return model


def with_parameter(endpoint: Callable[..., Any], name: str, annotation: Any) -> None:
    """Give ``endpoint``'s parameter ``name`` a type made at run time (a model of the configured
    fields): FastAPI reads parameter types from the signature."""
    signature = inspect.signature(endpoint)
    parameters = [
        p.replace(annotation=annotation) if p.name == name else p
        for p in signature.parameters.values()
    ]
    endpoint.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
