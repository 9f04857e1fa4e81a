"""Issue 19, the merge's side, against the engine (minihost; real Eden: tests/test_eden_security_merge.py).

A hostile peer's file cannot leave a record in a state the host cannot see: `deleted` is True or
False whatever the file says or omits (finding 2), on both merge paths; a bundle with a damaged
upload entry is refused before anything is written, in a dry run too, and over HTTP as a 400
rather than a 500 (finding 10).  The four silent coercions of finding 10 are refused in the corpus
of tests/test_hostile.py.
"""
import csv
import io
import json
import zipfile

import pytest

from synchelpers import export, instances, seed_small, settings
from test_network import http, nodes  # noqa: F401  (the nodes fixture)
from test_security import _document, _state

from applications.eden.modules.plugin_sync.accounts import peer_account
from applications.eden.modules.plugin_sync.errors import FormatError
from applications.eden.modules.plugin_sync.fileio import import_from
from applications.eden.modules.plugin_sync.merge import PATHS, import_and_sync


def _table_rows(data, table):
    """(all rows of the file, index of `table`'s header row, index after its last row)."""
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    head = [i for i, r in enumerate(rows) if r and r[0].startswith(table + ".")][0]
    end = head + 1
    while rows[end]:
        end += 1
    return rows, head, end


def _write(rows):
    out = io.StringIO(newline="")
    csv.writer(out).writerows(rows)
    text = out.getvalue()
    return (text[:-2] if text.endswith("\r\n") else text).encode("utf-8")


def without_deleted(data, table, cell=None):
    """The file with `table`'s `deleted` column dropped (cell None) or every cell of it set to `cell`."""
    rows, head, end = _table_rows(data, table)
    k = rows[head].index("%s.deleted" % table)
    for r in rows[head:end]:
        if cell is None:
            del r[k]
        elif r is not rows[head]:
            r[k] = cell
    return _write(rows)


def _merge(env, data, paths):
    db = env["db"]
    report = import_and_sync(db, io.BytesIO(data), settings(env), paths=paths)
    db.commit()
    return report


def _hidden(env, table):
    """Records the host's own queries (`deleted == False`, Eden's) do not see, though not deleted."""
    db = env["db"]
    hidden = db(db[table].deleted == None).count()  # noqa: E711 (pydal)
    db.commit()
    return hidden


@pytest.mark.parametrize("paths", PATHS)
@pytest.mark.parametrize("cell", [None, "", "<NULL>"], ids=["column omitted", "empty cell", "<NULL>"])
def test_a_record_never_arrives_with_deleted_null(new_instance, paths, cell):
    a, b = instances(new_instance)
    seed_small(a)
    data = without_deleted(export(a), "pr_person", cell)
    report = _merge(b, data, paths)
    db = b["db"]
    assert report.tables["pr_person"]["created"] == 2
    assert _hidden(b, "pr_person") == 0
    assert db(db.pr_person.deleted == False).count() == 2  # noqa: E712 (pydal): what Eden asks
    # a record here already, updated by a later version whose deleted says nothing: still False
    a["db"](a["db"].pr_person.first_name == "Maria").update(last_name="Alexandre")
    a["db"].commit()
    report = _merge(b, without_deleted(export(a), "pr_person", cell), paths)
    assert report.tables["pr_person"]["updated"] == 1
    assert _hidden(b, "pr_person") == 0
    assert db((db.pr_person.last_name == "Alexandre") & (db.pr_person.deleted == False)).count() == 1  # noqa: E712


def damaged_upload(bundle):
    """The bundle with one byte of its upload entry changed (stored, not deflated: the CRC no longer fits)."""
    source = zipfile.ZipFile(io.BytesIO(bundle))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name in source.namelist():
            compress = zipfile.ZIP_STORED if name.startswith("uploads/") else zipfile.ZIP_DEFLATED
            z.writestr(name, source.read(name), compress_type=compress)
    raw = bytearray(out.getvalue())
    k = raw.index(b"field report of the day")
    raw[k] ^= 0x20
    return bytes(raw)


def test_a_bundle_with_a_damaged_upload_entry_is_refused_before_any_write(new_instance):
    a, b = instances(new_instance)
    seed_small(a)
    stored = _document(a, content=b"field report of the day")
    data = damaged_upload(export(a, fmt="zip"))
    before = _state(b)
    for dry_run in (True, False):
        with pytest.raises(FormatError) as e:
            import_from(b["db"], settings(b), data, dry_run=dry_run)
        assert "uploads/%s" % stored in e.value.message and "damaged" in e.value.message, e.value.message
        assert "CRC" in e.value.message
        assert _state(b) == before  # no record, no file in the upload folder
    assert b["db"](b["db"].pr_person).count() == 0


def test_a_pushed_bundle_with_a_damaged_upload_entry_is_a_400(nodes):  # noqa: F811
    a, b = nodes("a"), nodes("b")
    seed_small(a.env, prefix="A")
    stored = _document(a.env, content=b"field report of the day")
    peer_account(b.db, b.settings, "peer-a@b.local", "s3cret-a", peer=a.base_uuid)
    data = damaged_upload(export(a.env, fmt="zip"))
    code, _, body = http("POST", b.url + "/plugin_sync/receive.json", data=data, auth=("peer-a@b.local", "s3cret-a"),
                         headers={"Content-Type": "application/zip"})
    error = json.loads(body)["error"]
    assert code == 400 and error["error"] == "FormatError" and "uploads/%s" % stored in error["message"], body[:500]
    assert b.count("pr_person") == 0 and b.count("doc_document") == 0
