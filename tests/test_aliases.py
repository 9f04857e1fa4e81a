"""Records known here under another uuid (aliases.py): setting `match`, the host's matcher, the alias table.

Two instances each hold "the same" person under a uuid of their own (as Eden's
default users' persons are).  By default (match = "keys", and persons have no
unique key) a file brings the other's as a new record; with match = "eden" the host's matcher (in Eden the
table's deduplicate rule; here a stand-in matching by name) finds the local one,
the incoming uuid becomes its alias, and the record, its later versions and the
records referring to it resolve to the local record under the usual rules.
"""
import datetime

import pytest

from synchelpers import instances, seed_lookups, settings, sync

from applications.eden.modules.plugin_sync.aliases import Aliases


def by_name(asked):
    """A host's matcher: pr_person by first and last name (Eden's person_duplicate does much the same)."""
    def matcher(tablename, rows, resolve):
        asked.append((tablename, [r["uuid"] for r in rows]))
        if tablename != "pr_person":
            return {}
        db = matcher.db
        found = {}
        for r in rows:
            local = db((db.pr_person.first_name == r["first_name"]) & (db.pr_person.last_name == r["last_name"])
                       ).select(db.pr_person.uuid).first()
            if local:
                found[r["uuid"]] = local.uuid
        return found
    return matcher


def admin(env, when):
    db = env["db"]
    seed_lookups(env)
    person = db.pr_person.insert(first_name="Admin", last_name="User", modified_on=when, created_on=when)
    db.commit()
    return db.pr_person[person].uuid


def person_rows(env):
    db = env["db"]
    return db(db.pr_person.first_name == "Admin").select(orderby=db.pr_person.id)


@pytest.fixture
def two(new_instance):
    a, b = instances(new_instance)
    t0 = datetime.datetime.utcnow().replace(microsecond=0) - datetime.timedelta(hours=1)
    return a, b, admin(a, t0), admin(b, t0 + datetime.timedelta(seconds=5))


def test_by_default_unknown_uuids_are_new_records(two):
    a, b, a_admin, b_admin = two
    assert settings(b).match == "keys"  # the default: by uuid, then by a unique key (pr_person has none)
    sync(a, b)
    assert [p.uuid for p in person_rows(b)] == [b_admin, a_admin]
    assert b["db"](b["db"].plugin_sync_alias).isempty()


def test_match_eden_makes_the_incoming_uuid_an_alias_of_the_local_record(two):
    a, b, a_admin, b_admin = two
    db_a, db_b = a["db"], b["db"]
    asked = []
    settings(b).match, settings(b).matcher = "eden", by_name(asked)
    settings(b).matcher.db = db_b
    db_a.hrm_human_resource.insert(person_id=db_a(db_a.pr_person.uuid == a_admin).select().first().id, type="staff")
    db_a.commit()

    report = sync(a, b)
    assert report.tables["pr_person"]["created"] == 0 and report.totals()["conflicts"] == 0
    assert [p.uuid for p in person_rows(b)] == [b_admin]  # B's record keeps its own uuid
    alias = db_b(db_b.plugin_sync_alias).select().first()
    assert (alias.tablename, alias.alias_uuid, alias.local_uuid) == ("pr_person", a_admin, b_admin)
    assert alias.origin == db_a.plugin_sync_identity(1).base_uuid
    # A's staff record of its person refers, here, to B's record
    hr = db_b(db_b.hrm_human_resource.uuid == db_a(db_a.hrm_human_resource).select().first().uuid).select().first()
    assert hr.person_id == person_rows(b)[0].id
    assert ("pr_person", [a_admin]) in asked

    # the alias holds from now on, without asking the matcher again, whatever the setting
    asked.clear()
    settings(b).match = "uuid"
    again = sync(a, b)
    assert again.totals()["created"] == again.totals()["updated"] == again.totals()["conflicts"] == 0
    assert asked == []
    # a later edit on A reaches B's record, under B's uuid (the usual rules: the newest version wins)
    later = datetime.datetime.utcnow().replace(microsecond=0)
    db_a(db_a.pr_person.uuid == a_admin).update(email="admin@a.example", modified_on=later)
    db_a.commit()
    report = sync(a, b)
    assert person_rows(b)[0].email == "admin@a.example" and person_rows(b)[0].uuid == b_admin
    assert len(person_rows(b)) == 1


def test_a_matched_record_edited_on_both_sides_is_a_conflict(two):
    a, b, a_admin, b_admin = two
    db_a, db_b = a["db"], b["db"]
    settings(b).match, settings(b).matcher = "eden", by_name([])
    settings(b).matcher.db = db_b
    now = datetime.datetime.utcnow().replace(microsecond=0)
    db_a(db_a.pr_person.uuid == a_admin).update(email="from-a@example.org", modified_on=now)
    db_b(db_b.pr_person.uuid == b_admin).update(email="from-b@example.org", modified_on=now - datetime.timedelta(seconds=30))
    db_a.commit()
    db_b.commit()
    report = sync(a, b)
    assert report.totals()["conflicts_took_incoming"] == 1  # never a silent overwrite: B's version is kept
    conflict = db_b(db_b.plugin_sync_conflict).select().first()
    assert conflict.record_uuid == b_admin and "from-b@example.org" in conflict.loser
    assert person_rows(b)[0].email == "from-a@example.org"


def test_a_dry_run_keeps_no_alias_and_a_bad_setting_is_refused(two):
    a, b, a_admin, b_admin = two
    settings(b).match, settings(b).matcher = "eden", by_name([])
    settings(b).matcher.db = b["db"]
    report = sync(a, b, dry_run=True)
    assert report.tables["pr_person"]["created"] == 0
    assert b["db"](b["db"].plugin_sync_alias).isempty()
    settings(b).match = "name"
    with pytest.raises(ValueError, match="match must be one of uuid, keys, eden"):
        Aliases.for_import(b["db"], settings(b))
