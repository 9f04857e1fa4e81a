"""Put a losing version back: the administrator's answer to a conflict decided the wrong way.

The losing version (plugin_sync_conflict.loser, a row in export form:
references as uuids) goes through the merge as a one-row file stamped now.
So it wins as the newest local edit, its references resolve by uuid (or are
set to NULL with a warning, as in any import), a record deleted since comes
back, the version it replaces goes to the conflict list in its turn (nothing
is lost), and the change capture passes it on to the peers at the next sync.
"""
import datetime
import io
import json

from .context import EPOCH, future_limit
from .csvstream import Writer
from .errors import SyncError
from .fileformat import END, NULL, ROW_SEQ
from .fileio import import_from
from .peers import utcnow

RESTORE = "restore"  # plugin_sync_conflict.resolution of the version a restore replaced
LOCAL_ONLY = ("id", ROW_SEQ)  # the sender's local id and change seq: meaningless here


def restore(db, settings, conflict_id, now=None):
    """Write the losing version of conflict `conflict_id` back as the current record; return the Report.

    The conflict is marked reviewed; the import is logged like any import,
    and the version replaced stays in the conflict list, marked reviewed.
    """
    conflict = db.plugin_sync_conflict(conflict_id)
    if conflict is None:
        raise SyncError("no conflict #%s" % conflict_id)
    if conflict.tablename not in db.tables:
        raise SyncError("table %s does not exist here" % conflict.tablename, table=conflict.tablename)
    try:
        loser = json.loads(conflict.loser or "")
    except ValueError:
        loser = None
    if not isinstance(loser, dict) or not loser.get("uuid"):
        raise SyncError("conflict #%s holds no restorable version" % conflict_id, table=conflict.tablename)
    if conflict.get("restored_on"):
        raise SyncError("conflict #%s was restored already (%s UTC)" % (conflict_id, conflict.restored_on))
    table = db[conflict.tablename]
    current = db(table.uuid == conflict.record_uuid).select(table.modified_on).first() \
        if "modified_on" in table.fields else None
    tomb = db.plugin_sync_tombstone
    deleted = db((tomb.tablename == conflict.tablename) & (tomb.record_uuid == conflict.record_uuid)).select(
        tomb.deleted_on.max()).first()[tomb.deleted_on.max()]
    # later than the current version and than a deletion since (one-second resolution): it must win, not tie
    latest = max((current and current.modified_on) or EPOCH, deleted or EPOCH)
    stamp = max(now or utcnow(), latest + datetime.timedelta(seconds=1))
    row = dict((k, v) for k, v in loser.items() if k not in LOCAL_ONLY)
    row["modified_on"] = stamp.strftime("%Y-%m-%d %H:%M:%S")
    if stamp > future_limit(settings, utcnow()):
        raise SyncError("the current version is stamped %s, ahead of this instance's clock: fix the clock "
                        "or edit the record by hand" % latest, table=conflict.tablename)
    # a local edit by the administrator: the table's conflict policy (for incoming data) does not apply
    local = type(settings)(settings)
    local.policy = dict(settings.policy or {}, **{conflict.tablename: "other"})
    c = db.plugin_sync_conflict
    last = db(c).select(c.id.max()).first()[c.id.max()] or 0
    report = import_from(db, local, _one_row_file(conflict.tablename, row),
                         name="restore of conflict #%d" % conflict.id, commit=False)
    # the version it replaced is in the conflict list now: the administrator's choice, reviewed
    # (resolution "restore": the administrator's own edit, not an incoming version that won)
    db((c.id > last) & (c.record_uuid == conflict.record_uuid)).update(
        reason="replaced by the restore of #%d" % conflict.id, resolution=RESTORE, reviewed=True)
    conflict.update_record(reviewed=True, restored_on=utcnow())
    db.commit()
    return report


def _one_row_file(tablename, row):
    text = io.StringIO()
    writer = Writer(text)
    columns = list(row)
    writer.begin_table(tablename, columns)
    writer.writerows([[NULL if row[c] is None else str(row[c]) for c in columns]])
    writer.end_table()
    text.write(END)
    return text.getvalue().encode("utf-8")
