"""The file formats: ours, plain pydal/appadmin exports, gzip, zip bundles with uploaded files."""
import io
import os

import pytest

from synchelpers import assert_converged, export, instances, seed_small, settings, sync

from applications.eden.modules.plugin_sync.errors import TableNotSynced
from applications.eden.modules.plugin_sync.fileio import import_from
from applications.eden.modules.plugin_sync.uploads import upload_folder


def test_export_never_contains_auth_settings_or_gis_keys(new_instance):
    a, = instances(new_instance, "a")
    seed_small(a)
    db = a["db"]
    db.auth_user.insert(first_name="Admin", email="admin@x", password=db.auth_user.password.validate("secret")[0])
    db.s3_setting.insert(name="mail_server", value="smtp.example.org:25")
    db.gis_config.insert(name="default", google_maps_key="AIzaSyD-SECRET-KEY", bing_maps_key="BING-SECRET")
    db.commit()
    text = export(a).decode("utf-8")
    for never in ("TABLE auth_", "TABLE s3_setting", "TABLE gis_config", "TABLE org_organisation_type",
                  "pbkdf2", "AIzaSyD-SECRET-KEY", "BING-SECRET", "smtp.example.org"):
        assert never not in text
    assert text.startswith("TABLE sync_instance\r\n") and text.endswith("END")
    for asked in (["auth_user"], ["gis_config"], ["pr_person", "s3_setting"]):
        with pytest.raises(TableNotSynced):
            export(a, tables=asked)


def test_plain_pydal_export_imports_with_references_fixed(new_instance):
    a, b = instances(new_instance)
    seed_small(a)
    db = a["db"]
    db.auth_user.insert(first_name="Admin", email="admin@x", password=db.auth_user.password.validate("secret")[0])
    db.gis_config.insert(name="default", google_maps_key="AIzaSyD-SECRET-KEY")
    db.commit()
    buf = io.StringIO()
    a["db"].export_to_csv_file(buf)  # what appadmin writes: every table, local ids, no uuids of references
    report = import_from(b["db"], settings(b), buf.getvalue().encode("utf-8"))
    assert report.plain_pydal
    assert any("plain pydal file" in n for n in report.notes)
    assert "auth_user" in report.skipped_tables and "gis_config" in report.skipped_tables
    assert_converged(a, b)
    again = import_from(b["db"], settings(b), buf.getvalue().encode("utf-8"))
    assert again.totals()["created"] == 0 and again.totals()["updated"] == 0


def test_pydal_importer_reads_our_files(new_instance):
    a, b = instances(new_instance)
    seed_small(a)
    data = export(a).decode("utf-8")
    b["db"].import_from_csv_file(io.StringIO(data), id_map={}, unique="uuid")
    b["db"].commit()
    dbb = b["db"]
    assert dbb(dbb.pr_person).count() == 2 and dbb(dbb.hms_hospital).count() == 1


def test_gzip_export_imports(new_instance):
    a, b = instances(new_instance)
    seed_small(a)
    data = export(a, fmt="gz")
    assert data[:2] == b"\x1f\x8b"
    report = import_from(b["db"], settings(b), data)
    assert report.totals()["created"] > 0
    assert_converged(a, b)


def test_bundle_carries_uploaded_files(new_instance):
    a, b = instances(new_instance)
    seed_small(a)
    db = a["db"]
    stored = db.doc_document.file.store(io.BytesIO("Situation report, día 3".encode("utf-8")), "sitrep.txt")
    db.doc_document.insert(name="Sitrep 3", file=stored)
    db.commit()
    data = export(a, fmt="zip")
    assert data[:4] == b"PK\x03\x04"
    report = import_from(b["db"], settings(b), data)
    assert report.tables["doc_document"]["created"] == 1
    dbb = b["db"]
    doc = dbb(dbb.doc_document).select().first()
    path = os.path.join(upload_folder(dbb, dbb.doc_document.file), doc.file)
    assert open(path, "rb").read().decode("utf-8") == "Situation report, día 3"
    assert_converged(a, b)


def test_dry_run_of_a_bundle_writes_no_file(new_instance):
    a, b = instances(new_instance)
    db = a["db"]
    stored = db.doc_document.file.store(io.BytesIO(b"x"), "x.txt")
    db.doc_document.insert(name="X", file=stored)
    db.commit()
    report = import_from(b["db"], settings(b), export(a, fmt="zip"), dry_run=True)
    assert report.tables["doc_document"]["created"] == 1
    dbb = b["db"]
    assert not os.path.exists(os.path.join(upload_folder(dbb, dbb.doc_document.file), stored))
    assert dbb(dbb.doc_document).count() == 0


def test_non_ascii_quotes_commas_and_newlines_round_trip(new_instance):
    a, b = instances(new_instance)
    db = a["db"]
    db.org_organisation.insert(name='Çeviri Derneği, "Afet" Rehber', comments="İlk satır\nİkinci, satır \"alıntı\"")
    db.commit()
    sync(a, b)
    assert_converged(a, b)
    dbb = b["db"]
    assert dbb(dbb.org_organisation).select().first().comments == "İlk satır\nİkinci, satır \"alıntı\""
