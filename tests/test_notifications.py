"""parse_notification: payloads in, fields out, never an exception (no database needed)."""

from __future__ import annotations

import json

from hypothesis import given, settings as hsettings, strategies as st

from vocabsync.db.notifications import TableChange, parse_notification
from vocabsync.sources import FieldSource, SourceMap

DEFAULTS = SourceMap.default()
SHARED = SourceMap(
    {
        **DEFAULTS.sources,
        "expense_files": FieldSource("Files", "name"),
        "cashflow_files": FieldSource("Files", "name"),  # two fields, one column
        "expense_categories": FieldSource("Files", "category"),
    }
)


def test_values_map_to_the_fields_of_their_columns() -> None:
    change = parse_notification(
        '{"t":"Project","c":{"project_name":["Alpha","Beta"],"location":["Pasig"]}}', DEFAULTS
    )
    assert change == TableChange(
        "Project",
        {"projects": frozenset({"Alpha", "Beta"}), "project_locations": frozenset({"Pasig"})},
        frozenset(),
    )


def test_reload_columns_and_a_payload_with_both() -> None:
    assert parse_notification('{"t":"Project","r":["location"]}', DEFAULTS) == TableChange(
        "Project", {}, frozenset({"project_locations"})
    )
    both = parse_notification(
        '{"t":"Project","c":{"project_name":["A"],"location":["x"]},"r":["location"]}', DEFAULTS
    )
    assert both == TableChange(
        "Project", {"projects": frozenset({"A"})}, frozenset({"project_locations"})
    )


def test_bare_table_name_reloads_all_its_fields() -> None:
    assert parse_notification("Project", DEFAULTS) == TableChange(
        "Project", {}, frozenset({"projects", "project_locations"})
    )
    assert parse_notification("CashFlowColumn", DEFAULTS) == TableChange(
        "CashFlowColumn", {}, frozenset({"cashflow_categories"})
    )


def test_shared_columns_feed_every_field_and_unmapped_columns_are_ignored() -> None:
    change = parse_notification(
        json.dumps({"t": "Files", "c": {"name": ["a.pdf"], "other": ["x"]}, "r": ["category"]}),
        SHARED,
    )
    assert change == TableChange(
        "Files",
        {"expense_files": frozenset({"a.pdf"}), "cashflow_files": frozenset({"a.pdf"})},
        frozenset({"expense_categories"}),
    )


def test_values_are_kept_untrimmed_and_blanks_dropped() -> None:
    change = parse_notification(
        json.dumps({"t": "ExpensesColumn", "c": {"column_name": [" Fuel ", "", " \t", "é\u2028"]}}),
        DEFAULTS,
    )
    assert change is not None
    assert change.touched == {"expense_categories": frozenset({" Fuel ", "é\u2028"})}


def test_unknown_tables_and_garbage_are_none() -> None:
    for payload in [
        "",
        "Nope",
        "sentinel",
        "{",
        "[]",
        '"Project"',
        "null",
        '{"t":"Nope","c":{}}',
        '{"c":{"project_name":["a"]}}',
        '{"t":"Project","c":["a"]}',
        '{"t":"Project","c":{"project_name":"a"}}',
        '{"t":"Project","c":{"project_name":[1]}}',
        '{"t":"Project","r":"location"}',
        '{"t":"Project","r":[null]}',
        '{"t":"Project","x":1}',
        '{"t":["Project"]}',
        "[" * 5000 + "]" * 5000,
        '{"t":"Project","c":{"project_name":' + "[" * 5000 + "]" * 5000 + "}}",
    ]:
        assert parse_notification(payload, DEFAULTS) is None, payload


def test_a_table_named_like_json_is_a_table_name() -> None:
    odd = SourceMap({name: FieldSource('{"t":1}', "v") for name in DEFAULTS.sources})
    change = parse_notification('{"t":1}', odd)
    assert change is not None
    assert change.reload == frozenset(DEFAULTS.sources)


@hsettings(max_examples=500)
@given(
    payload=st.one_of(
        st.text(),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(),
            lambda inner: (
                st.lists(inner) | st.dictionaries(st.sampled_from("tcr") | st.text(), inner)
            ),
        ).map(json.dumps),
        st.builds(
            lambda t, c, r: json.dumps({"t": t, "c": c, "r": r}),
            st.sampled_from([*DEFAULTS.tables, "x"]),
            st.dictionaries(
                st.sampled_from(["project_name", "location", "file_name", "x"]),
                st.lists(st.text() | st.integers()),
            ),
            st.lists(st.sampled_from(["project_name", "location", "x"]) | st.integers()),
        ),
    )
)
def test_never_raises_and_fields_are_disjoint(payload: str) -> None:
    """Feature: delta notifications, Property: any payload gives a TableChange or None; touched
    and reloaded fields never overlap and are fields of the payload's table."""
    change = parse_notification(payload, DEFAULTS)
    if change is None:
        return
    fields = set(DEFAULTS.fields_of(change.table))
    assert set(change.touched) <= fields
    assert change.reload <= fields
    assert not set(change.touched) & change.reload
    assert all(values for values in change.touched.values())
