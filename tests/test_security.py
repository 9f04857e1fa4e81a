"""Security: what a hostile peer (or a careless administrator's file) cannot do, on SQLite and PostgreSQL.

Issue 13's findings, each replayed against the engine: upload values naming
files outside the upload folder, files speaking for another instance or
claiming more of our changes than we ever exported, javascript: URLs, gzip
and zip bombs, oversized cells and uploads.  The HTTP side (accounts bound to
instances, throttled logins, request size, cookies, deadlines) is in
test_security_http.py.
"""
import csv
import datetime
import gzip
import io
import os
import zipfile

import pytest

from synchelpers import export, instances, seed_small, settings

from applications.eden.modules.plugin_sync.errors import BadValue, FormatError, Refused, TooLarge
from applications.eden.modules.plugin_sync.fileio import export_to, import_from
from applications.eden.modules.plugin_sync.peers import this_instance
from applications.eden.modules.plugin_sync.uploads import path_of, upload_folder

EVIL_NAMES = ["../databases/storage.sqlite", "/etc/passwd", "../databases/session.key",
              "doc_document.file.aa/../../../etc/passwd", "..", "C:\\windows\\win.ini", "x\x00.txt"]


def _document(env, name="Sitrep", content=b"report"):
    db = env["db"]
    stored = db.doc_document.file.store(io.BytesIO(content), "sitrep.txt")
    db.doc_document.insert(name=name, file=stored)
    db.commit()
    return stored


def _state(env):
    """What an import must leave as it was: documents, files, peers and their checkpoints."""
    db = env["db"]
    db.commit()
    out = (db(db.doc_document).select(db.doc_document.uuid, db.doc_document.file, orderby=db.doc_document.uuid).as_list(),
           db(db.sync_instance).select(db.sync_instance.base_uuid, db.sync_instance.url,
                                       db.sync_instance.checkpoint_received, orderby=db.sync_instance.base_uuid).as_list(),
           sorted(os.listdir(upload_folder(db, db.doc_document.file)))
           if os.path.isdir(upload_folder(db, db.doc_document.file)) else [])
    db.commit()
    return out


@pytest.fixture
def limited():
    """Set limits on an instance's settings for one test (restored afterwards)."""
    changed = []

    def set_limits(env, **limits):
        s = settings(env)
        for k, v in limits.items():
            changed.append((s, k, s.get(k)))
            s[k] = v

    yield set_limits
    for s, k, v in reversed(changed):
        s[k] = v


# ------------------------------------------------------------------ 1. upload values are file names, not paths


@pytest.mark.parametrize("evil", EVIL_NAMES)
def test_upload_value_naming_a_file_outside_the_upload_folder_is_refused_on_import(new_instance, evil):
    a, b = instances(new_instance)
    stored = _document(a)
    text = export(a).decode("utf-8").replace(stored, evil.replace('"', ""))
    before = _state(b)
    # a NUL is refused by the reader already, in any text cell (PostgreSQL cannot store one)
    with pytest.raises(FormatError if "\x00" in evil else BadValue) as e:
        import_from(b["db"], settings(b), text.encode("utf-8"))
    assert (e.value.table, e.value.column) == ("doc_document", "file") and e.value.line > 1
    assert ("NUL character" if "\x00" in evil else "upload folder") in e.value.message
    assert _state(b) == before  # nothing written, no file, no checkpoint moved


@pytest.mark.parametrize("evil", ["../databases/storage.sqlite", "/etc/passwd", "../databases/session.key"])
def test_export_never_reads_a_stored_value_that_points_outside_the_upload_folder(new_instance, evil):
    a, = instances(new_instance, "a")
    db = a["db"]
    good = _document(a, "Good", b"fine")
    db.doc_document.insert(name="Careless", file=evil)  # e.g. written by a careless script
    db.commit()
    out = io.BytesIO()
    counts = export_to(db, settings(a), out, fmt="zip")
    names = zipfile.ZipFile(io.BytesIO(out.getvalue())).namelist()
    assert sorted(names) == ["data.csv", "uploads/" + good]
    assert any(evil in w and "not sent" in w for w in counts["warnings"])
    assert path_of(db, db.doc_document.file, evil) is None
    # the same through the peer endpoint's engine function: no file, a warning in the log
    from applications.eden.modules.plugin_sync import replicate

    data, fmt, _, _ = replicate.changes(db, settings(a), 0)
    assert fmt == "zip" and "uploads/" + evil not in zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert b"root:" not in data and b"SQLite format" not in data


def test_a_symbolic_link_out_of_the_upload_folder_is_not_followed(new_instance):
    a, = instances(new_instance, "a")
    db = a["db"]
    folder = upload_folder(db, db.doc_document.file)
    os.makedirs(folder, exist_ok=True)
    os.symlink("/etc/passwd", os.path.join(folder, "doc_document.file.aaaa.txt"))
    db.doc_document.insert(name="Link", file="doc_document.file.aaaa.txt")
    db.commit()
    out = io.BytesIO()
    counts = export_to(db, settings(a), out, fmt="zip")
    assert zipfile.ZipFile(io.BytesIO(out.getvalue())).namelist() == ["data.csv"]
    assert counts["warnings"]


def test_plain_upload_names_still_travel_in_bundles(new_instance):
    a, b = instances(new_instance)
    stored = _document(a, content="día 3".encode("utf-8"))
    report = import_from(b["db"], settings(b), export(a, fmt="zip"))
    assert report.tables["doc_document"]["created"] == 1
    dbb = b["db"]
    with open(path_of(dbb, dbb.doc_document.file, stored), "rb") as f:
        assert f.read().decode("utf-8") == "día 3"


# ------------------------------------------------------------------ 2. a file speaks only for its sender


def test_a_peer_cannot_push_a_file_in_another_instances_name(new_instance):
    a, b, c = instances(new_instance, "a", "b", "c")
    seed_small(a)
    file_of_a = export(a)
    c_uuid = this_instance(c["db"]).base_uuid
    before = _state(b)
    with pytest.raises(Refused) as e:
        import_from(b["db"], settings(b), file_of_a, sender=c_uuid)  # c's login, a's file
    assert (e.value.table, e.value.column) == ("sync_instance", "base_uuid")
    assert "a peer may only send its own changes" in e.value.message
    assert _state(b) == before and b["db"](b["db"].pr_person).count() == 0
    # a's own login may
    a_uuid = this_instance(a["db"]).base_uuid
    report = import_from(b["db"], settings(b), file_of_a, sender=a_uuid)
    assert report.tables["pr_person"]["created"] == 2
    assert b["db"](b["db"].sync_instance.base_uuid == a_uuid).select().first().checkpoint_received > 0


def _set_cells(text, table, match_column, match_value, column, value):
    """The file with one cell of `table`'s rows where match_column == match_value set to value."""
    rows = list(csv.reader(io.StringIO(text)))
    current, header = None, None
    for row in rows:
        if len(row) == 1 and row[0].startswith("TABLE "):
            current, header = row[0][6:], None
            continue
        if current == table and header is None and row:
            header = [c.split(".", 1)[1] for c in row]
            continue
        if current == table and header and len(row) == len(header) and row[header.index(match_column)] == match_value:
            row[header.index(column)] = value
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue()


def test_a_claim_to_have_merged_more_of_our_changes_than_we_exported_is_capped(new_instance):
    """Finding 2b: a file claiming merged@seq 999999999 of us must not overwrite an unseen local edit."""
    b, c = instances(new_instance, "b", "c")
    seed_small(b, prefix="B")
    import_from(c["db"], settings(c), export(b))  # c has b's data: b's exported_until is that export's
    dbb, dbc = b["db"], c["db"]
    dbb(dbb.org_organisation.name == "B Red Cross").update(acronym="FRESH")  # after the export: c never saw it
    dbb.commit()
    dbc(dbc.org_organisation.name == "B Red Cross").update(
        acronym="OLD", modified_on=datetime.datetime(2020, 1, 1))
    dbc.commit()
    b_uuid = this_instance(dbb).base_uuid
    forged = _set_cells(export(c).decode("utf-8"), "sync_instance", "base_uuid", b_uuid, "merged@seq", "999999999")
    assert "999999999" in forged
    report = import_from(dbb, settings(b), forged.encode("utf-8"))
    assert dbb(dbb.org_organisation.name == "B Red Cross").select().first().acronym == "FRESH"
    conflicts = dbb(dbb.plugin_sync_conflict.tablename == "org_organisation").select()
    assert len(conflicts) == 1 and conflicts[0].resolution == "kept_local" and "OLD" in conflicts[0].loser
    assert any("999999999" in w["message"] and w["column"] == "merged@seq" for w in report.warnings)


def test_an_administrators_file_from_this_instance_itself_moves_no_checkpoint(new_instance):
    a, b = instances(new_instance)
    seed_small(a)
    import_from(b["db"], settings(b), export(a))
    own = export(b)
    before = _state(b)
    report = import_from(b["db"], settings(b), own)
    assert "this file was exported by this instance itself" in report.notes
    assert _state(b) == before


# ------------------------------------------------------------------ 4. peer URLs are http(s) only


@pytest.mark.parametrize("url", ["javascript:alert(document.cookie)", "data:text/html,<script>x</script>",
                                 "JaVaScRiPt:alert(1)", "http://x\"><script>"])
def test_a_file_whose_sender_url_is_not_http_is_refused(new_instance, url):
    a, b = instances(new_instance)
    seed_small(a)
    a_uuid = this_instance(a["db"]).base_uuid
    text = _set_cells(export(a).decode("utf-8"), "sync_instance", "base_uuid", a_uuid, "url", url)
    before = _state(b)
    with pytest.raises(Refused) as e:
        import_from(b["db"], settings(b), text.encode("utf-8"))
    assert (e.value.table, e.value.column, e.value.line) == ("sync_instance", "url", 3)
    assert _state(b) == before


def test_the_peers_form_accepts_only_http_urls(new_instance):
    a, = instances(new_instance, "a")
    field = a["db"].sync_instance.url
    for bad in ("javascript:alert(1)", "data:text/html,x", "ftp://host/x"):
        assert field.validate(bad)[1] is not None, bad
    assert field.validate("https://hq.example.org/eden")[1] is None


# ------------------------------------------------------------------ 3. bounds on memory and disk


def _bomb(size, cell=False):
    """A gzip'd file of a valid table whose one cell (or many lines) inflate to `size` bytes."""
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9) as gz:
        # hospitals: a plain table of the minihost (no super record, no realm), so the bomb costs the reader only
        gz.write(b"TABLE hms_hospital\r\nhms_hospital.name,hms_hospital.uuid\r\n")
        if cell:
            gz.write(b'"')
            for _ in range(size >> 20):
                gz.write(b"a" * (1 << 20))
            gz.write(b'",urn:uuid:1\r\n\r\nEND')
        else:
            line = b"x,urn:uuid:%d\r\n"
            for k in range(size // 20):
                gz.write(line % k)
    return raw.getvalue()


def test_a_gzip_bomb_stops_at_the_inflation_limits(new_instance, limited):
    a, = instances(new_instance, "a")
    limited(a, max_inflated_size=4 << 20, max_ratio=50)
    bomb = _bomb(64 << 20, cell=True)
    assert len(bomb) < 200000
    with pytest.raises(TooLarge) as e:
        import_from(a["db"], settings(a), bomb)
    assert "max_ratio" in e.value.message or "max_inflated_size" in e.value.message
    limited(a, max_ratio=10 ** 6)  # the size bound alone
    with pytest.raises(TooLarge) as e:
        import_from(a["db"], settings(a), _bomb(16 << 20))
    assert "max_inflated_size" in e.value.message and e.value.table == "hms_hospital"
    assert a["db"](a["db"].hms_hospital).count() == 0


def test_a_cell_or_line_beyond_max_cell_size_is_refused_with_its_place(new_instance, limited):
    a, = instances(new_instance, "a")
    limited(a, max_cell_size=1 << 20)
    text = (b"TABLE org_organisation\r\norg_organisation.name,org_organisation.uuid\r\nsmall,urn:uuid:1\r\n"
            b'"' + b"a" * (2 << 20) + b'",urn:uuid:2\r\n\r\nEND')
    with pytest.raises(TooLarge) as e:
        import_from(a["db"], settings(a), text)
    assert (e.value.table, e.value.line) == ("org_organisation", 4) and "max_cell_size" in e.value.message
    assert a["db"](a["db"].org_organisation).count() == 0


def test_an_uploaded_file_beyond_max_upload_size_is_refused_and_not_written(new_instance, limited):
    a, b = instances(new_instance)
    stored = _document(a, content=b"z" * (3 << 20))
    limited(b, max_upload_size=1 << 20)
    before = _state(b)
    with pytest.raises(TooLarge) as e:
        import_from(b["db"], settings(b), export(a, fmt="zip"))
    assert (e.value.table, e.value.column) == ("doc_document", "file") and "max_upload_size" in e.value.message
    assert stored[:20] in e.value.message
    assert _state(b) == before


def test_a_zip_entry_claiming_a_huge_csv_is_refused_before_reading(new_instance, limited):
    a, = instances(new_instance, "a")
    limited(a, max_inflated_size=1 << 20)
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("data.csv", b"TABLE org_organisation\r\n" + b"\r\n" * (2 << 20))
    with pytest.raises(TooLarge) as e:
        import_from(a["db"], settings(a), raw.getvalue())
    assert "max_inflated_size" in e.value.message


# ------------------------------------------------------------------ 6. the sync format stays lossless


def test_formula_like_cells_travel_verbatim_in_the_sync_format(new_instance):
    a, b = instances(new_instance)
    db = a["db"]
    for name in ("=HYPERLINK(\"http://x\")", "+1-2", "-cmd", "@SUM(A1)"):
        db.org_organisation.insert(name=name)
    db.commit()
    import_from(b["db"], settings(b), export(a))
    dbb = b["db"]
    assert sorted(r.name for r in dbb(dbb.org_organisation).select()) == sorted(
        ["=HYPERLINK(\"http://x\")", "+1-2", "-cmd", "@SUM(A1)"])


def test_peer_passwords_never_leave_in_a_file(new_instance):
    a, b = instances(new_instance)
    seed_small(a)
    db = a["db"]
    db.sync_instance.insert(base_uuid="peer-1", uuid="urn:uuid:peer-1", username="me@peer", password="Pa55-secret-77",
                            checkpoint_received=5)
    db.commit()
    for fmt in ("csv", "gz", "zip"):
        data = export(a, fmt=fmt)
        text = data if fmt == "csv" else (gzip.decompress(data) if fmt == "gz" else
                                          zipfile.ZipFile(io.BytesIO(data)).read("data.csv"))
        assert b"Pa55-secret-77" not in text and b"me@peer" not in text
    logs = db(db.plugin_sync_log).select()
    assert all("Pa55-secret-77" not in (r.report or "") for r in logs)


# ------------------------------------------------------------------ 2. binding an account: the CLI


def test_cli_account_binds_a_login_to_the_instance_it_speaks_for(new_instance):
    from test_cli import cli

    from applications.eden.modules.plugin_sync.accounts import speaks_for

    b, = instances(new_instance, "b")
    b["db"].commit()
    peer = "a1a1a1a1-0000-4000-8000-0000000000a1"
    r = cli(b, "account", "peer-a@b.local", "--password", "S3cret-pw", "--peer", peer)
    assert r.returncode == 0 and b"as instance " + peer.encode() in r.stdout, r.stderr
    r = cli(b, "account", "reader@b.local", "--password", "S3cret-pw")
    assert r.returncode == 0 and b"bind it with --peer" in r.stdout
    db = b["db"]
    db.commit()
    users = {u.email: u.id for u in db(db.auth_user).select()}
    assert speaks_for(db, users["peer-a@b.local"]) == peer and speaks_for(db, users["reader@b.local"]) is None
    # an account speaks for one instance: binding it to another moves it
    r = cli(b, "account", "peer-a@b.local", "--password", "S3cret-pw", "--peer", "other-instance")
    db.commit()
    assert speaks_for(db, users["peer-a@b.local"]) == "other-instance"
    assert db(db.sync_instance.account == users["peer-a@b.local"]).count() == 1
    # binding to this instance itself is bad usage, with a clear message
    me = this_instance(db).base_uuid
    db.commit()
    r = cli(b, "account", "peer-a@b.local", "--password", "S3cret-pw", "--peer", me)
    assert r.returncode == 2 and b"this instance's own base_uuid" in r.stderr, r.stderr


# ------------------------------------------------------------------ what held: never-synced tables, injection


def test_a_file_writing_auth_and_plugin_tables_or_sql_writes_nothing_there(new_instance):
    b, = instances(new_instance, "b")
    db = b["db"]
    before = {t: db(db[t]).count() for t in ("auth_user", "auth_group", "auth_membership", "s3_setting",
                                            "plugin_sync_throttle", "plugin_sync_identity", "org_organisation")}
    evil = ("TABLE auth_user\r\nauth_user.id,auth_user.email,auth_user.password,auth_user.uuid\r\n"
            "1,evil@x,\"pbkdf2(1000,20,sha512)$x$y\",urn:uuid:u1\r\n\r\n"
            "TABLE auth_membership\r\nauth_membership.id,auth_membership.user_id,auth_membership.group_id\r\n1,1,1\r\n\r\n"
            "TABLE plugin_sync_identity\r\nplugin_sync_identity.id,plugin_sync_identity.base_uuid\r\n1,mine\r\n\r\n"
            "TABLE org_organisation; DROP TABLE pr_person; --\r\nx.name,x.uuid\r\na,urn:uuid:o1\r\n\r\n"
            "TABLE org_organisation\r\norg_organisation.name,org_organisation.uuid,org_organisation.acronym\r\n"
            "\"x'); DROP TABLE pr_person; --\",urn:uuid:o2,\"' OR 1=1 --\"\r\n\r\nEND")
    report = import_from(db, settings(b), evil.encode("utf-8"))
    assert {"auth_user", "auth_membership", "plugin_sync_identity"} <= set(report.skipped_tables)
    after = {t: db(db[t]).count() for t in before}
    assert after == dict(before, org_organisation=before["org_organisation"] + 1)
    row = db(db.org_organisation.uuid == "urn:uuid:o2").select().first()
    assert row.name == "x'); DROP TABLE pr_person; --" and row.acronym == "' OR 1=1 --"
    assert db(db.pr_person).count() == 0 and "pr_person" in db.tables  # the table is still there
    assert db(db.auth_user.email == "evil@x").isempty()


def test_changes_with_a_large_document_are_written_to_disk_not_memory(new_instance):
    import tracemalloc

    from applications.eden.modules.plugin_sync import replicate

    a, = instances(new_instance, "a")
    _document(a, content=os.urandom(24 << 20))
    tracemalloc.start()
    try:
        out, fmt, _, _ = replicate.changes_file(a["db"], settings(a), 0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    with out:
        out.seek(0, 2)
        assert fmt == "zip" and out.tell() > 24 << 20 and not isinstance(out, io.BytesIO)
    assert peak < 8 << 20, peak  # the bundle (24 MiB and more) never sat in memory


def test_upload_paths_with_uploadseparate_stay_in_their_subfolder(new_instance, tmp_path):
    from gluon.storage import Storage

    a, = instances(new_instance, "a")
    field = Storage(uploadfolder=str(tmp_path), uploadseparate=True, tablename="doc_document", name="file")
    name = "doc_document.file.ab12cd34.txt"
    assert path_of(a["db"], field, name) == str(tmp_path / "doc_document.file" / "ab" / name)
    for bad in EVIL_NAMES + ["noprefix.txt", ""]:
        assert path_of(a["db"], field, bad) is None, bad
