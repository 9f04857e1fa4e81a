"""One import is one transaction: a bad row anywhere leaves the database exactly as it was."""
import pytest

from synchelpers import counts, export, settings, snapshot

from applications.eden.modules.plugin_sync.errors import BadValue, FormatError, TruncatedFile
from applications.eden.modules.plugin_sync.fileio import import_from


def _state(env):
    """Everything but the replication log (which records the failed run)."""
    db = env["db"]
    n = counts(env)
    n.pop("plugin_sync_log")
    return n, snapshot(env), [r.as_dict() for r in db(db.sync_instance).select()]


def _last_data_row_replaced(data, table, column, value):
    """The export with one cell of the last row of `table` replaced."""
    text = data.decode("utf-8")
    start = text.index("TABLE %s\r\n" % table)
    end = text.index("\r\n\r\n", start)
    lines = text[start:end].split("\r\n")
    header = lines[1].split(",")
    col = header.index("%s.%s" % (table, column))
    import csv, io
    row = next(csv.reader(io.StringIO(lines[-1])))
    row[col] = value
    buf = io.StringIO()
    csv.writer(buf).writerow(row)
    lines[-1] = buf.getvalue().rstrip("\r\n")
    line_no = text[:start].count("\n") + len(lines)  # physical lines, as an editor numbers them
    return (text[:start] + "\r\n".join(lines) + text[end:]).encode("utf-8"), line_no


@pytest.mark.parametrize("table,column,value,message", [
    ("event_incident", "start_date", "not a date", "is not a valid datetime"),
    ("hms_hospital", "total_beds", "twelve", "is not a valid integer"),
    ("org_office", "name", "<NULL>", "a value is required"),
    ("pr_person", "first_name", "x" * 200, "longer than 128"),
])
def test_bad_value_in_last_row_changes_nothing(pair, table, column, value, message):
    a, b = pair
    data, line = _last_data_row_replaced(export(a), table, column, value)
    before = _state(b)
    with pytest.raises(BadValue) as e:
        import_from(b["db"], settings(b), data)
    assert e.value.table == table and e.value.column == column and e.value.line == line
    assert message in str(e.value) and ("line %d" % line) in str(e.value)
    assert _state(b) == before
    # the failed run is in the log, with its error
    db = b["db"]
    log = db(db.plugin_sync_log.operation == "import").select(orderby=~db.plugin_sync_log.id).first()
    assert log.result == "error" and table in log.error


def test_truncated_file_is_rejected(pair):
    a, b = pair
    data = export(a)
    before = _state(b)
    cut = data[: int(len(data) * 0.9)]
    with pytest.raises((TruncatedFile, FormatError)):
        import_from(b["db"], settings(b), cut)
    with pytest.raises(TruncatedFile) as e:
        import_from(b["db"], settings(b), data[: data.rindex(b"END")])
    assert "truncated" in str(e.value)
    assert _state(b) == before


def test_row_with_wrong_number_of_cells_is_an_error_not_skipped(pair):
    a, b = pair
    text = export(a).decode("utf-8")
    i = text.index("TABLE pr_person")
    j = text.index("\r\n", text.index("\r\n", i) + 2)  # end of the first data row
    broken = (text[:j] + ",extra" + text[j:]).encode("utf-8")
    before = _state(b)
    with pytest.raises(FormatError) as e:
        import_from(b["db"], settings(b), broken)
    assert e.value.table == "pr_person" and "cells" in str(e.value)
    assert _state(b) == before


def test_database_refusal_names_the_row(pair):
    """A value the parser accepts but the database refuses: an integer beyond 64 bits."""
    a, b = pair
    data, line = _last_data_row_replaced(export(a), "hms_hospital", "total_beds", "9" * 30)
    before = _state(b)
    with pytest.raises(BadValue) as e:
        import_from(b["db"], settings(b), data)
    assert e.value.table == "hms_hospital" and e.value.line == line
    assert "database refused" in str(e.value)
    assert _state(b) == before


def test_import_and_export_give_the_garbage_collector_back(pair):
    """They pause it for speed (gcpause): a server must get it back on after either, failed or not,
    and a caller that had turned it off keeps it off."""
    import gc

    a, b = pair
    assert gc.isenabled()
    data = export(a)
    assert gc.isenabled()
    import_from(b["db"], settings(b), data)
    assert gc.isenabled()
    with pytest.raises(TruncatedFile):
        import_from(b["db"], settings(b), data[: data.rindex(b"END")])
    assert gc.isenabled()
    gc.disable()
    try:
        import_from(b["db"], settings(b), data)
        assert not gc.isenabled()
    finally:
        gc.enable()
