"""Differential test (issue 22): the plugin's receiver holds what Eden itself would hold.

A: a real Eden loaded through Eden's own bulk importer (S3BulkImporter, Eden's CSV
stylesheets) from the CSVs Eden ships in its templates, in every module the demo
enables (the default template's lookups, default/Demo, scripts/demo/tasks.cfg: IFRC/Train,
historic/Kashmir, historic/ARC, SAFIRE/BT, Disease/Ebola, CCC).  In `make test` each CSV
is cut to its first ROWS rows (every module's tables still get records); with
PLUGIN_SYNC_DIFF=full the whole files and the Timor-Leste script of `make run`.
B: A's records by the plugin (fileio.export_to from A, import_from into B).
C: A's records by Eden's own import of A's S3XML (S3Resource.export_xml, import_xml).

Every table of A that holds records is compared, by uuid, references as the uuid they
name: B with A (content), B with C (what Eden makes on arrival: derived tables, realms,
approved_by, super-entity rows and their computed fields).  ALLOWED is the one list of
differences that may exist; anything else fails the test with a report, one line per
difference (table, uuid, column, A / B / C values).
"""
import collections
import io
import os
import re
import shutil
import tempfile

import pytest

from edenseed import load_templates
from applications.eden.modules.plugin_sync import fileio
from applications.eden.modules.plugin_sync import tables as policy

FULL = os.environ.get("PLUGIN_SYNC_DIFF") == "full"
ROWS = 2  # rows of each template CSV in make test (the full set: PLUGIN_SYNC_DIFF=full)

ANY = "*"
# THE allowed differences: (table, column or row kind, reason).  Row kind "stays home": the table does not travel
# (its rows and their content are each instance's own, by design); "path (A: NULL)", "modified_on (B = C)": the column differs only under that
# condition (excused()).  Table ANY or "prefix_*": every such table.  Nothing else may differ.  (The derived tables,
# derived_tables(), are no allowance: their rows are compared by content with what Eden's own import made in C.)
ALLOWED = (
    (ANY, "created_by", "the local account that wrote the record: accounts are each instance's own"),
    (ANY, "modified_by", "as created_by"),
    (ANY, "owned_by_user", "the owner account is the receiver's (accept_owners is off by default)"),
    (ANY, "owned_by_group", "as owned_by_user"),
    (ANY, "mci", "Eden's local edit counter"),
    ("auth_*", "stays home", "accounts, roles and memberships: each instance's own (never synced)"),
    ("s3_*", "stays home", "Eden's bookkeeping: permissions, audit, import jobs (never synced)"),
    ("sync_*", "stays home", "Eden's own sync configuration with its secrets (never synced)"),
    ("scheduler_*", "stays home", "the scheduler's own jobs (never synced)"),
    ("gis_layer_*", "stays home", "map layers with API keys and passwords (never synced)"),
    ("gis_config", "stays home", "a site's own map configuration (never synced)"),
    ("pr_person_user", "stays home", "links of persons to local accounts (never synced)"),
    ("org_organisation_user", "stays home", "links of organisations to local accounts (never synced)"),
    ("plugin_sync_*", "stays home", "the plugin's own bookkeeping"),
    ("gis_marker", "stays home", "this site's map set-up (tables.EDEN_SITE_TABLES): every Eden prepopulates its "
     "own markers, and Eden's own import of A's refuses them too"),
    ("gis_style", "stays home", "as gis_marker"),
    ("org_site", "code (Eden's rule)", "a site's code is each instance's own (unique per instance, with a random "
     "suffix: org_site_onaccept): B holds a code made by Eden's rule, as C does, not A's"),
    (ANY, "realm (A or C)", "Eden's realm of a record depends on the order its importer meets records (a staff "
     "record's site link or a project's lead organisation arriving after it re-sets it: C); B holds Eden's realm "
     "of the record at the sender (A) or after Eden's own import (C)"),
    ("sit_presence", "interlock", "a presence's check-in link holds A's local id ('table,id': eden/model.py, "
     "LOCAL_TEXT): never copied, B holds none and the presence keeps its own location; Eden's own import (C) copies "
     "A's id, which names another record there"),
    ("gis_location", "path (A: NULL)", "Eden fills a location's path lazily (gis.update_location_tree, when it is "
     "read or edited): A and Eden's own import hold NULL, the plugin rebuilds it on arrival from the parents"),
    (ANY, "modified_on (B = C)", "a record the receiver already held with the same content (prepopulated by both): "
     "neither Eden's import nor the plugin rewrites it, its version stamp stays the receiver's"),
)
# what Eden makes on arrival, compared with C (Eden's own import): B must hold what C holds.  Every other column is
# content, compared with A.
MADE_ON_ARRIVAL = ("realm_entity", "approved_by")
# columns Eden computes (onaccept, or later: gis.update_location_tree fills a location's hierarchy and path when it
# is next read or edited): B holds either A's value or what Eden's own import holds (C)
COMPUTED = {"org_site": ("code",), "project_location": ("name",), "sit_trackable": ("track_timestmp",),
            "gis_location": ("L0", "L1", "L2", "L3", "L4", "L5", "path")}


def allowed(tablename, column):
    """The reason of ALLOWED for (table, column or row kind), or None."""
    for table, what, why in ALLOWED:
        if what in (column, ANY) and (table == tablename or table == ANY
                                      or table.endswith("*") and tablename.startswith(table[:-1])):
            return why
    return None


# ----------------------------------------------------------------------------- A: Eden's own importer


# ----------------------------------------------------------------------------- reading an instance


def tables_with_uuid(db):
    return [t for t in db.tables if "uuid" in db[t].fields]


def alive(table):
    return (table.deleted != True) if "deleted" in table.fields else (table.id > 0)  # noqa: E712


class Snapshot:
    """An instance's records, comparable across instances: {table: {uuid: {column: value}}}, every reference
    as the uuid it names, local ids in text (paths) likewise, accounts as their emails."""

    def __init__(self, env):
        db = self.db = env["db"]
        self.uuid_of = {}  # table -> {id: uuid}
        for t in tables_with_uuid(db):
            self.uuid_of[t] = {r.id: r.uuid for r in db(db[t]).select(db[t].id, db[t].uuid)}
        if "pr_role" in db.tables:  # a derived row's uuid is each instance's own: a role is named by its content
            pe = self.uuid_of["pr_pentity"]
            self.uuid_of["pr_role"] = {r.id: "role %r of %s" % (r.role, pe.get(r.pe_id)) for r in
                                       db(db.pr_role).select(db.pr_role.id, db.pr_role.role, db.pr_role.pe_id)}
        self.uuid_of["auth_user"] = {r.id: r.email for r in db(db.auth_user).select(db.auth_user.id,
                                                                                    db.auth_user.email)}
        self.rows = {t: self.read(t) for t in tables_with_uuid(db)}
        db.commit()

    def ref(self, target, value):
        if value is None:
            return None
        return self.uuid_of.get(target, {}).get(value, "<%s id %s: no such record>" % (target, value))

    def value(self, field, value):
        kind = field.type
        if kind.startswith("reference "):
            return self.ref(kind.split()[1].split(".")[0], value)
        if kind.startswith("list:reference "):
            return sorted(str(self.ref(kind.split()[1], v)) for v in value or ())
        if field.name == "path" and isinstance(value, str):  # gis_location.path, pr_role.path: local ids
            target = {"pr_role": "pr_pentity"}.get(field.tablename, field.tablename)
            return "/".join(str(self.ref(target, int(i))) for i in value.replace("|", "/").split("/") if i.isdigit())
        if field.name == "realm_entity":  # a pe_id with no declared reference: the entity it names
            return self.ref("pr_pentity", value)
        if field.name in ("approved_by",) and value:
            return self.ref("auth_user", value)
        return value

    def read(self, tablename):
        table = self.db[tablename]
        fields = [f for f in table if f.type != "id"]  # the local id (a super table's own key: pe_id, site_id...)
        out = {}
        for r in self.db(alive(table)).select(*fields):
            out[r.uuid] = {f.name: self.value(f, r[f.name]) for f in fields if f.name != "uuid"}
        return out


# ----------------------------------------------------------------------------- comparing


def derived_tables(db):
    """Tables whose rows Eden's onaccept makes, which the plugin says it remakes on arrival (tables.DERIVED): their
    uuids are each instance's own, so their rows are compared by content."""
    return [t for t, why in policy.DERIVED if "remade on arrival" in why and t in db.tables]


# a derived row's bookkeeping, which Eden itself sets by the path that made the row, not by its content: a role's
# path (rebuilt lazily, pr_rebuild_path), approved_by and realm_entity (0 / its own entity when Eden's import made
# the role, NULL when an onaccept outside it did: C holds both kinds for the same kind of role)
DERIVED_BOOKKEEPING = ("path", "approved_by", "realm_entity")


def content(rows, records):
    """A derived table's rows as a multiset of their content (no uuid, no timestamps, no bookkeeping), those that
    name `records` (uuids) only."""
    skip = {"created_on", "modified_on"} | set(policy.LOCAL_META) | set(DERIVED_BOOKKEEPING)
    out = collections.Counter()
    for r in rows.values():
        row = tuple(sorted((k, repr(v)) for k, v in r.items() if k not in skip))
        if set(re.findall(r"urn:uuid:[0-9a-f-]+", repr(row))) <= records:
            out[row] += 1
    return out


def excused(table, col, va, vb, vc, in_c):
    """The conditional entries of ALLOWED."""
    if col == "path" and va is None:
        return allowed(table, "path (A: NULL)")
    if col == "modified_on" and in_c and vb == vc:
        return allowed(table, "modified_on (B = C)")
    if (table, col) == ("org_site", "code") and vb and vc and len(vb) == len(vc) and vb[:-4] == vc[:-4]:
        return allowed(table, "code (Eden's rule)")  # the same prefix (from the name), a suffix of its own
    if col in MADE_ON_ARRIVAL and vb == va:
        return allowed(table, "realm (A or C)") if col == "realm_entity" else None
    return None


def differences(a, b, c):
    """Every difference not in ALLOWED: [(table, uuid, column, A, B, C)]."""
    out = []
    derived = set(derived_tables(a.db))
    held_b, held_c = (set().union(*(map(str, ids.values()) for ids in x.uuid_of.values())) for x in (b, c))
    supers = {t for t in a.db.tables if "instance_type" in a.db[t].fields}  # made on arrival from the instance rows
    for t in sorted(a.rows):
        rows_a = a.rows[t]
        if not rows_a:
            continue
        rows_b, rows_c = b.rows.get(t, {}), c.rows.get(t, {})
        if t in derived:  # (about the entities both hold: Eden's import may refuse records, printed with the report)
            both = held_b & held_c  # (the records its rows name, held by both)
            want, got = content(rows_c, both), content(rows_b, both)
            for row in sorted(want - got):
                out.append((t, "(derived)", "row", "", "missing", dict(row)))
            for row in sorted(got - want - content(rows_a, both)):  # (a row Eden made at the sender too is Eden's)
                out.append((t, "(derived)", "row", "", dict(row), "missing"))
            continue
        if allowed(t, "stays home"):  # its rows and their content are each instance's own (roles, permissions)
            continue
        missing = [u for u in rows_a if u not in rows_b]
        if missing:
            out.append((t, "%d of %d rows, e.g. %s" % (len(missing), len(rows_a), missing[0]), "row",
                        "present", "missing", "present" if missing[0] in rows_c else "missing"))
        for u in sorted(set(rows_a) & set(rows_b)):
            ra, rb, rc = rows_a[u], rows_b[u], rows_c.get(u, {})
            for col in sorted(ra):
                if allowed(t, col):
                    continue
                va, vb, vc = ra[col], rb.get(col), rc.get(col)
                if col in COMPUTED.get(t, ()):  # A's value, or what Eden's import holds (where it holds the record)
                    differs = vb != va and (vb != vc if u in rows_c else t not in supers)
                elif col in MADE_ON_ARRIVAL or t in supers:  # Eden's import is the reference
                    differs = u in rows_c and vb != vc
                else:
                    differs = vb != va
                if differs and not excused(t, col, va, vb, vc, u in rows_c):
                    out.append((t, u, col, va, vb, vc if u in rows_c else "(not in C)"))
    return out


def report(found, limit=400):
    lines = ["%d differences not in ALLOWED (table | uuid | column | A | B | C):" % len(found)]
    for t, u, col, va, vb, vc in found[:limit]:
        lines.append("  %s | %s | %s | A=%r | B=%r | C=%r" % (t, u, col, va, vb, vc))
    per_table = collections.Counter((d[0], d[2]) for d in found)
    lines.append("per table and column: %s" % ", ".join("%s.%s: %d" % (k[0], k[1], n)
                                                        for k, n in per_table.most_common()))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- B and C


def records_to_send(db):
    """A's tables that hold records and are not derived, never-synced or super tables: what C gets (as S3XML)."""
    never = set(policy.DERIVED_TABLES)  # (Eden makes them on arrival, as the plugin does)
    names = [t for t in tables_with_uuid(db) if t not in never and not policy.is_never_synced(db, t)
             and not db(alive(db[t])).isempty()]
    return policy.dependency_order(db, names)


def s3xml(env, names):
    """Eden's S3XML export of A's records, one document per table (loaded A is `current`)."""
    from gluon import current

    current.auth.override = True
    try:
        out = []
        for t in names:
            xml = env["s3db"].resource(t).export_xml(dereference=False, mcomponents=None)
            out.append((t, xml if isinstance(xml, bytes) else xml.encode("utf-8")))
        return out
    finally:
        current.auth.override = False


def eden_import(env, documents):
    """Eden's own import of the documents as one S3XML tree (a reference finds its record in the tree, as in
    one sync of Eden's), table by table, parents first: Eden's errors."""
    from gluon import current
    from lxml import etree

    current.request.env.request_method = "GET"
    current.auth.override = True
    errors = []
    tree = None
    for _, xml in documents:
        doc = etree.parse(io.BytesIO(xml))
        if tree is None:
            tree = doc
        else:
            tree.getroot().extend(doc.getroot().findall("resource"))
    try:
        for t, _ in documents:
            resource = env["s3db"].resource(t)
            resource.import_xml(tree)
            if resource.error:
                errors.append("%s: %s" % (t, resource.error))
    finally:
        current.auth.override = False
    env["db"].commit()
    return errors


@pytest.fixture
def work():
    folder = tempfile.mkdtemp(prefix="eden-diff-")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_receiver_holds_what_eden_and_the_sender_hold(eden_instance, work):
    a = eden_instance("a")
    errors = load_templates(a, work, rows=None if FULL else ROWS, scripts=FULL)
    assert not errors, "Eden's importer refused the template CSVs: %s" % errors[:20]
    # Eden's S3XML export first: it writes to A (gis.update_location_tree fills the hierarchy it exports)
    documents = s3xml(a, records_to_send(a["db"]))
    a["db"].commit()
    data = io.BytesIO()
    fileio.export_to(a["db"], a["plugin_sync_settings"], data, fmt="csv", log=False)

    b = eden_instance("b")
    fileio.import_from(b["db"], b["plugin_sync_settings"], data.getvalue(), name="a.csv")
    c = eden_instance("c")
    refused = eden_import(c, documents)

    found = differences(Snapshot(a), Snapshot(b), Snapshot(c))
    assert not found, report(found) + ("\nEden's own import (C) refused: %s" % refused if refused else "")
