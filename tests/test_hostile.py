"""Damaged and lenient input: each kind either refused with a clear error (what, table, line, column)
and the database exactly as it was, or accepted by design with a defined meaning.

The corpus below is the one the README counts.  Each refused input is tried through the engine
(the exception and the database compared by content before and after) and through the command
line (exit 1, one line on stderr); tests/test_pages.py-style HTTP checks of the .json endpoints
and the Import page are at the end.
"""
import csv
import datetime
import gzip
import io
import json
import zipfile

import pytest

from test_pages import formkey
from synchelpers import counts, export, instances, seed_small, settings, snapshot

from applications.eden.modules.plugin_sync import cli
from applications.eden.modules.plugin_sync.errors import BadValue, FormatError, TruncatedFile
from applications.eden.modules.plugin_sync.fileio import import_from


def _state(env):
    """Everything but the replication log (which records the refused run)."""
    db = env["db"]
    n = counts(env)
    n.pop("plugin_sync_log")
    return n, snapshot(env), [r.as_dict() for r in db(db.sync_instance).select()]


# -- making damaged files -----------------------------------------------------------------------

def _rows(data):
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


def _write(rows):
    out = io.StringIO(newline="")
    csv.writer(out).writerows(rows)
    text = out.getvalue()
    return (text[:-2] if text.endswith("\r\n") else text).encode("utf-8")  # END without a line end


def cell(table, column, value, row=-1):
    """The file with one cell of a row of `table` (default: its last) replaced."""
    def make(data):
        rows = _rows(data)
        head = [i for i, r in enumerate(rows) if r and r[0].startswith(table + ".")][0]
        end = head + 1
        while rows[end]:
            end += 1
        target = rows[end - 1] if row == -1 else rows[head + 1 + row]
        target[rows[head].index("%s.%s" % (table, column))] = value
        return _write(rows)
    return make


def extra_column(table, column, value):
    def make(data):
        rows = _rows(data)
        head = [i for i, r in enumerate(rows) if r and r[0].startswith(table + ".")][0]
        rows[head].append("%s.%s" % (table, column))
        k = head + 1
        while rows[k]:
            rows[k].append(value)
            k += 1
        return _write(rows)
    return make


def header(table, change):
    """The file with `table`'s header row changed by `change` (a function of its list of columns)."""
    def make(data):
        rows = _rows(data)
        head = [i for i, r in enumerate(rows) if r and r[0].startswith(table + ".")][0]
        rows[head] = change(rows[head])
        return _write(rows)
    return make


def gz(data):
    return gzip.compress(data)


def bundle(data):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("data.csv", data)
    return out.getvalue()


def cut(fmt, fraction):
    return lambda data: fmt(data)[:int(len(fmt(data)) * fraction)]


def flip(fmt, fraction):
    """One byte of the compressed file changed, `fraction` of the way in."""
    def make(data):
        raw = bytearray(fmt(data))
        k = int(len(raw) * fraction)
        raw[k] ^= 0x55
        return bytes(raw)
    return make


def bom(data):
    return b"\xef\xbb\xbf" + data


def nul(data):
    return cell("org_organisation", "comments", "before\x00after")(data)


ANY = object()  # where a damaged compressed stream shows depends on the damage: not checked


# (name, make, expected): expected is (error class, words of the message, table, column) for a refusal,
# or a function (instance B, report) checking what an accepted input meant
REFUSED = [
    ("csv without its END", lambda d: d[:-len(b"END")], (TruncatedFile, "truncated", None, None)),
    ("csv cut inside a row", lambda d: d[:d.index(b"Maria")], (FormatError, "cells, the header has", "pr_person", None)),
    ("csv.gz cut short", cut(gz, 0.5), (TruncatedFile, "cut short", None, None)),
    # (the table named is the one being read when the stream ends: it depends on the decompressor's blocks)
    ("csv.gz cut in its last bytes", cut(gz, 0.98), (TruncatedFile, "cut short", ANY, ANY)),
    # a flipped byte inflates to garbage that a cell may refuse (BadValue, with its place) before
    # gzip's checksum at the end does (FormatError): the file's content (random uuids) decides which
    ("csv.gz with a bad byte deep inside", flip(gz, 0.6), ((FormatError, BadValue), "", ANY, ANY)),
    ("csv.gz with a bad byte near its end", flip(gz, 0.95), ((FormatError, BadValue), "", ANY, ANY)),
    ("csv.gz with a bad byte near its start", flip(gz, 0.1), ((FormatError, BadValue), "", ANY, ANY)),
    ("zip cut short", cut(bundle, 0.5), (FormatError, "zip bundle is damaged", None, None)),
    ("zip with a bad byte in its data", flip(bundle, 0.3), ((FormatError, BadValue), "", ANY, ANY)),
    ("zip with a bad byte at the end of its data", flip(bundle, 0.6), ((FormatError, BadValue), "", ANY, ANY)),
    ("zip with a bad byte in its directory", flip(bundle, 0.9), (FormatError, "", ANY, ANY)),
    ("zip without data.csv", lambda d: b"PK\x03\x04" + b"\x00" * 40, (FormatError, "zip", None, None)),
    ("not UTF-8", lambda d: d.replace(b"Ministry", b"Minist\xe9ry"), (FormatError, "not UTF-8 text (byte 0xe9)", "org_organisation", "name")),
    ("NUL in a text", nul, (FormatError, "NUL", "org_organisation", "comments")),
    ("since@seq not a number", cell("sync_instance", "since@seq", "ten", row=0),
     (BadValue, "not a change sequence", "sync_instance", "since@seq")),
    ("until@seq not a number", cell("sync_instance", "until@seq", "1e3", row=0),
     (BadValue, "not a change sequence", "sync_instance", "until@seq")),
    ("boolean 'maybe' in deleted", cell("pr_person", "deleted", "maybe"),
     (BadValue, "not a valid boolean", "pr_person", "deleted")),
    ("boolean '2'", cell("org_organisation", "deleted", "2"),
     (BadValue, "not a valid boolean", "org_organisation", "deleted")),
    ("text after a datetime", cell("pr_person", "modified_on", "2024-01-02 03:04:05 and more"),
     (BadValue, "not a valid datetime", "pr_person", "modified_on")),
    ("text after a date", cell("pr_person", "date_of_birth", "1980-02-03x"),
     (BadValue, "not a valid date", "pr_person", "date_of_birth")),
    ("a month 13", cell("pr_person", "date_of_birth", "1980-13-03"),
     (BadValue, "not a valid date", "pr_person", "date_of_birth")),
    ("nan in a double", cell("gis_location", "lat", "nan"), (BadValue, "not a valid double", "gis_location", "lat")),
    ("Infinity in a double", cell("gis_location", "lon", "Infinity"),
     (BadValue, "not a valid double", "gis_location", "lon")),
    ("1_000 in an integer", cell("gis_location", "population", "1_000"),
     (BadValue, "not a valid integer", "gis_location", "population")),
    ("1_000.5 in a double", cell("gis_location", "lat", "1_000.5"),
     (BadValue, "not a valid double", "gis_location", "lat")),
    ("a reference that is not a number", cell("org_office", "organisation_id", "12abc"),
     (BadValue, "not a valid reference", "org_office", "organisation_id")),
    ("a row with a cell too many", lambda d: d.replace(b"\r\n\r\nTABLE org_office", b",x\r\n\r\nTABLE org_office"),
     (FormatError, "cells, the header has", "gis_location", None)),
    # issue 19: what used to be taken silently
    ("an empty cell in a boolean (pydal writes <NULL>)", cell("event_incident", "closed", ""),
     (BadValue, "'' is not a valid boolean", "event_incident", "closed")),
    ("a header naming a column twice", header("org_office", lambda h: h + [h[h.index("org_office.name")]]),
     (FormatError, "appears twice in the header", "org_office", "name")),
    ("id@seq not a number", cell("pr_person", "id@seq", "abc"),
     (BadValue, "'abc' is not a change sequence", "pr_person", "id@seq")),
    ("a column prefixed with another table's name",
     header("org_office", lambda h: [c.replace("org_office.name", "org_organisation.name") for c in h]),
     (FormatError, "names table 'org_organisation', not 'org_office'", "org_office", "org_organisation.name")),
    ("not a pydal CSV file", lambda d: b"name,phone\r\nAna,1\r\n", (FormatError, "expected 'TABLE", None, None)),
    ("an empty file", lambda d: b"", (TruncatedFile, "truncated", None, None)),
]


def _utc_offset(b, report):
    db = b["db"]  # 03:04:05+02:00 is 01:04:05 UTC
    assert db(db.pr_person.modified_on == datetime.datetime(2024, 1, 2, 1, 4, 5)).count() == 1


def _yes(b, report):
    db = b["db"]
    assert db(db.pr_person.deleted == True).count() == 1  # noqa: E712 (pydal)


def _created(b, report):
    assert report.totals()["created"] == 12 and not report.warnings


def _unknown_column(b, report):
    assert report.totals()["created"] == 12
    assert [(w["table"], w["column"]) for w in report.warnings] == [("org_office", "colour")]
    assert "is not a field of org_office here" in report.warnings[0]["message"]


def _iso_t(b, report):
    db = b["db"]
    assert db(db.pr_person.modified_on == datetime.datetime(2024, 1, 2, 3, 4, 5)).count() == 1


ACCEPTED = [
    ("a UTF-8 byte-order mark (spreadsheets write one)", bom, _created),
    ("a byte-order mark in a gzip'd file", lambda d: gz(bom(d)), _created),
    ("'Yes' in a boolean (any case of true/false, t/f, 1/0, yes/no, on/off)", cell("pr_person", "deleted", "Yes"), _yes),
    ("a datetime with a UTC offset (stored in UTC)", cell("pr_person", "modified_on", "2024-01-02T03:04:05+02:00", row=0),
     _utc_offset),
    ("a datetime with a T and fractions of a second", cell("pr_person", "modified_on", "2024-01-02T03:04:05.250", row=0),
     _iso_t),
    ("a column this instance lacks (warned, ignored)", extra_column("org_office", "colour", "red"), _unknown_column),
]


def test_the_corpus_adds_up():
    """The figures the README gives (with the bad values of tests/test_atomic.py, 4 more refused)."""
    assert (len(REFUSED), len(ACCEPTED)) == (33, 6)


def _base(a):
    """The export, with the first person and the hospital made deterministic for the checks."""
    return export(a)


@pytest.mark.parametrize("name,make,expected", REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_cleanly_and_nothing_changed(pair, name, make, expected, tmp_path):
    a, b = pair
    data = make(_base(a))
    kind, words, table, column = expected
    before = _state(b)
    with pytest.raises(kind) as e:
        import_from(b["db"], settings(b), data)
    message = str(e.value)
    assert words in message
    if table is not ANY:
        assert (e.value.table, e.value.column) == (table, column), message
    if table not in (None, ANY):
        assert e.value.line is not None and ("line %d" % e.value.line) in message
    assert _state(b) == before
    db = b["db"]
    last = db(db.plugin_sync_log).select(orderby=~db.plugin_sync_log.id).first()
    assert last.result == "error" and last.error == message  # logged
    # the command line: exit 1, one line, the same message
    path = tmp_path / "input"
    path.write_bytes(data)
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(db, settings(b), ["import", str(path)], stdout=out, stderr=err) == 1
    assert err.getvalue() == "error: %s\n" % message
    assert _state(b) == before


@pytest.mark.parametrize("name,make,check", ACCEPTED, ids=[r[0] for r in ACCEPTED])
def test_accepted_by_design(pair, name, make, check):
    a, b = pair
    report = import_from(b["db"], settings(b), make(_base(a)))
    check(b, report)


# -- over HTTP: JSON errors from the .json endpoints, a message on the Import page ---------------

def test_http_damaged_files_get_json_errors_and_the_page_a_message(new_instance, start_server):
    """A real server (SQLite): damaged files to import_and_sync.json and receive.json are 400 with a
    JSON error naming what and where; the Import page shows the message; nothing is written."""
    from test_pages import ADMIN, Client, count, synced_counts

    a, = instances(new_instance, "a")
    seed_small(a)
    data = export(a)
    srv = start_server("hostile")
    admin = Client(srv, basic=ADMIN)
    before, logs = synced_counts(srv), count(srv, "plugin_sync_log")
    damaged = [("cut.csv.gz", cut(gz, 0.5)(data), "TruncatedFile", "cut short"),
               ("bad.zip", cut(bundle, 0.5)(data), "FormatError", "zip bundle is damaged"),
               ("bad.csv.gz", flip(gz, 0.6)(data), None, ""),
               ("seq.csv", cell("sync_instance", "until@seq", "soon", row=0)(data), "BadValue", "until@seq"),
               ("nul.csv", nul(data), "FormatError", "NUL")]
    for name, body, kind, words in damaged:
        for path, send in (("/plugin_sync/import_and_sync.json", lambda p, b: admin.post(p, files=dict(data=(name, b)))),
                           ("/plugin_sync/receive.json",
                            lambda p, b: admin.request(p, b, {"Content-Type": "application/octet-stream"}))):
            status, headers, answer = send(path, body)
            assert status == 400 and headers["Content-Type"].startswith("application/json"), (path, name, answer[:300])
            error = json.loads(answer)["error"]
            assert kind is None or error["error"] == kind, (path, name, error)
            assert error["message"] and words in json.dumps(error), (path, name, error)
    browser = Client(srv).login(*ADMIN)
    for name, body, kind, words in damaged:
        key = formkey(browser.get("/plugin_sync/import_and_sync")[2], "plugin_sync_import")
        status, _, page = browser.post("/plugin_sync/import_and_sync", fields=dict(_formname="plugin_sync_import",
                                                                                   _formkey=key),
                                       files=dict(data=(name, body)))
        assert status == 400 and b"Internal error" not in page and b"Traceback" not in page, name
        assert b"Nothing was" in page or b"nothing was" in page or words.encode() in page, name
    assert synced_counts(srv) == before
    assert count(srv, "plugin_sync_log") == logs + 3 * len(damaged)  # every refused run is logged


def test_http_parameters_mean_what_they_say(new_instance, start_server):
    """?dry_run=1 in the URL of a form upload is a dry run; ?format= picks the format like ?fmt=;
    conflicting or unknown parameters are 400."""
    from test_pages import ADMIN, Client, synced_counts

    a, = instances(new_instance, "a")
    seed_small(a)
    data = export(a)
    srv = start_server("params")
    admin = Client(srv, basic=ADMIN)
    before = synced_counts(srv)
    status, _, body = admin.post("/plugin_sync/import_and_sync.json?dry_run=1", files=dict(data=("a.csv", data)))
    assert status == 200 and json.loads(body)["dry_run"] is True and json.loads(body)["totals"]["created"] > 0
    assert synced_counts(srv) == before
    for path, fields in (("/plugin_sync/import_and_sync.json?dry_run=1", dict(dry_run="0")),
                         ("/plugin_sync/import_and_sync.json?dryrun=1", {}),
                         ("/plugin_sync/import_and_sync.json?dry_run=maybe", {}),
                         ("/plugin_sync/import_and_sync.json", dict(dry_run="1", force="1"))):
        status, headers, body = admin.post(path, fields=fields, files=dict(data=("a.csv", data)))
        assert status == 400 and json.loads(body)["error"]["error"] == "BadRequest", (path, body)
    assert synced_counts(srv) == before
    status, headers, body = admin.get("/plugin_sync/export?format=gz")
    assert status == 200 and body[:2] == b"\x1f\x8b"
    status, headers, body = admin.get("/plugin_sync/export?format=zip")
    assert status == 200 and body[:4] == b"PK\x03\x04"
    for path in ("/plugin_sync/export?fmt=csv&format=gz", "/plugin_sync/export.csv?format=gz",
                 "/plugin_sync/export?formt=gz", "/plugin_sync/export?format=xml"):
        status, headers, body = admin.get(path)
        assert status == 400, (path, body[:200])


@pytest.mark.parametrize("interruption", [KeyboardInterrupt, MemoryError])
def test_an_interrupted_import_is_logged_as_an_error(pair, monkeypatch, interruption):
    """Ctrl-C or a MemoryError (exceptions without a message) mid-import: nothing written, and the log
    row says error, not ok."""
    from applications.eden.modules.plugin_sync import merge

    a, b = pair
    before = _state(b)

    def interrupted(self, section):
        raise interruption()

    monkeypatch.setattr(merge.Merger, "merge_table", interrupted)
    with pytest.raises(interruption):
        import_from(b["db"], settings(b), export(a))
    assert _state(b) == before
    db = b["db"]
    last = db(db.plugin_sync_log).select(orderby=~db.plugin_sync_log.id).first()
    assert (last.result, last.error) == ("error", interruption.__name__)
