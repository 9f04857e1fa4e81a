"""What the conflicts page shows: a conflict's record by name, and its losing version beside the current one.

A conflict row keeps the losing version as JSON (references as uuids); the
current record is read in the same wire form (export.wire_rows), so the two
compare column by column.  Local columns (tables.LOCAL_META, and a reference's
local id beside its `@uuid`) differ between instances by design: shown, never
marked as a difference.
"""
import json

from .export import wire_rows
from .names import names_by_uuid, record_name
from .tables import LOCAL_META


def losing_version(row):
    """The conflict's losing version as a dict ({} when its JSON is damaged)."""
    try:
        loser = json.loads(row.loser or "{}")
    except ValueError:
        return {}
    return loser if isinstance(loser, dict) else {}


def conflict_names(db, rows):
    """{conflict id: the record's name}: the current record's (table format), else the losing version's."""
    by_table = {}
    for r in rows:
        by_table.setdefault(r.tablename, set()).add(r.record_uuid)
    current = {t: names_by_uuid(db, t, uuids) for t, uuids in by_table.items()}
    return {r.id: current.get(r.tablename, {}).get(r.record_uuid) or record_name(db, r.tablename,
                                                                                  values=losing_version(r))
            for r in rows}


def current_version(db, tablename, record_uuid):
    """The record as it is here now, in wire form (references with their uuids), or None."""
    if tablename not in db.tables or "uuid" not in db[tablename].fields:
        return None
    table = db[tablename]
    hit = db(table.uuid == record_uuid).select(table.id, limitby=(0, 1)).first()
    return wire_rows(db, tablename, [hit.id]).get(hit.id) if hit else None


def conflict_detail(db, row):
    """dict(columns=[(column, current, losing, differs, local_only)], current=dict or None, loser=dict)."""
    loser = losing_version(row)
    current = current_version(db, row.tablename, row.record_uuid)
    columns = list(current or {}) + [k for k in loser if k not in (current or {})]
    # each reference's `@uuid` right after its field: the uuid is its identity, the id is local
    # (a user account's is its email, `@email`)
    notes = [c for c in columns if c.endswith(("@uuid", "@email")) and c.split("@")[0] in columns]
    columns = [c for c in columns if c not in notes]
    for note in notes:
        columns.insert(columns.index(note.split("@")[0]) + 1, note)
    out = []
    for col in columns:
        local_only = col.split("@")[0] in LOCAL_META or col + "@uuid" in notes or col + "@email" in notes
        a, b = (current or {}).get(col), loser.get(col)
        out.append((col, a, b, not local_only and current is not None and str(a) != str(b), local_only))
    return dict(columns=out, current=current, loser=loser)
