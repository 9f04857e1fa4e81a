"""The export's cells (TableExporter.columns_of, its one cell builder) as the file carries them
(TableExporter.lines(): quoted, column by column) and as wire_rows() gives them (the local rows in
export form behind the tie-break hash and the conflict log) agree, for every synced table and every
pydal field type.  The file is read back here with the csv module alone, independently of the
exporter; cells compare as the tie-break hash does (text; a value of wire_rows as str())."""
import csv
import datetime
import io

import pytest
import typetable
from hypothesis import given, settings as hsettings, strategies as st
from synchelpers import export, seed_small, settings
from test_types import STRATEGIES

from applications.eden.modules.plugin_sync.export import wire_rows
from applications.eden.modules.plugin_sync.fileformat import NULL, ROW_SEQ
from applications.eden.modules.plugin_sync.tables import synced_tables


def _file_cells(data):
    """{table: {uuid: {column: cell}}} of every table section of an export."""
    out, rows = {}, csv.reader(io.StringIO(data.decode("utf-8"), newline=""))
    for row in rows:
        if not row or not row[0].startswith("TABLE "):
            continue
        name = row[0][6:]
        header = [c.split(".", 1)[1] for c in next(rows)]
        section = out.setdefault(name, {})
        for cells in rows:
            if not cells:
                break
            record = dict(zip(header, cells))
            record.pop(ROW_SEQ, None)
            section[record["uuid"]] = record
    return out


def _text(value):
    return NULL if value is None else value if isinstance(value, str) else str(value)


def _wire_cells(env):
    db = env["db"]
    out = {}
    for t in synced_tables(db, settings(env)):
        rows = wire_rows(db, t, [r.id for r in db(db[t]).select(db[t].id)])
        out[t] = {r["uuid"]: {k: _text(v) for k, v in r.items()} for r in rows.values()}
    return out


def _agree(env):
    data = export(env)
    file_cells = _file_cells(data)
    wire = _wire_cells(env)
    for t, rows in wire.items():
        assert file_cells.get(t, {}) == rows, t


def _with_every_shape(env):
    """seed_small's graph, every type of typetable, and a soft-deleted record (deleted_rb, deleted_fk)."""
    ids = seed_small(env)
    db = env["db"]
    table = typetable.define(env)
    orgs = [ids["org1"], ids["org2"]]
    for k, row in enumerate(typetable.hostile_rows()):
        row["f_reference"] = orgs[k % 2] if k % 3 else None
        row["f_list_reference"] = [orgs, [], [orgs[1]], None][k % 4]
        table.insert(**row)
    gone = db.gis_location.insert(name="merged away", level="L2", parent=ids["l1"])
    db(db.gis_location.id == gone).update(deleted=True, deleted_rb=ids["l2"], deleted_fk='{"parent": %d}' % ids["l1"],
                                          modified_on=datetime.datetime(2025, 1, 2, 3, 4, 5))
    db.commit()


def test_file_cells_and_wire_rows_agree_for_every_table_and_type(new_instance):
    env = new_instance("a")
    _with_every_shape(env)
    _agree(env)


@pytest.mark.parametrize("kind", typetable.KINDS)
def test_any_value_exports_the_same_both_ways(new_instance, kind):
    env = new_instance("a")
    table = typetable.define(env)
    db = env["db"]
    orgs = [db.org_organisation.insert(name="Org %d" % i) for i in range(3)]
    db.commit()
    field = typetable.field_name(kind)

    @hsettings(max_examples=10, deadline=None, database=None, derandomize=True)
    @given(value=st.none() | STRATEGIES[kind])
    def prop(value):
        value = typetable.stored(kind, value, orgs)
        table.insert(**{field: value})
        db.commit()
        _agree(env)

    prop()
