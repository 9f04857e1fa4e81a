"""Fields Eden's onaccept computes, made on arrival for the records that come without them.

Eden's import runs each record's onaccept (S3ImportItem.commit): beside the
affiliations (affiliations.py), some fill a field of their own that the
sender's copy may lack (made by code that ran no onaccept, or a file without
the column) or that never travels (a super record's field):

- a site's code (`org_site.code`, unique per instance, not a shared field):
  made by org_site_onaccept, which update_super calls for a new site;
- a project location's name (`project_location.name`, what Eden's map popups
  show): made by the table's onaccept from the project and the location;

and some keep a derived table (tables.DERIVED) that never travels, remade here
for the records that arrive (REMADE):

- a person's courses as one list (`hrm_trainings`, what the person's training
  tab and the staff list show): hrm_training_onaccept, set-based (a training
  record is one in five of a staff import);
- a person's availability rules (`pr_person_availability_rule`, from the
  availability's schedule, where pr.availability_json_rules is on): the
  table's own onaccept, once per availability written (rare);
- a trackable's last presence (`sit_trackable.track_timestmp`): what Eden's
  tracker sets with a presence, set-based (last_presence);
- stock cards and their log (`inv_stock_card`, `inv_stock_log`, where
  inv.stock_cards is on): the table's `onimport`, as Eden's import calls it
  (on_import).

Site codes set-based, by Eden's rule (site_code: a site is one record in 30
of an import, and Eden's function asks the database once per try); names by
the table's own onaccept, once per location that lacks one (rare), with
`modified_on` left as it is (as Eden's import does around onaccept), so that
the record's version stays the sender's.
"""
import contextlib
import random

from gluon import current
from gluon.storage import Storage

from .. import dialect

COMPUTED = {"project_location": "name"}  # {table: the field its onaccept computes}


def upkeep(db, names, is_eden):
    """The merge's per-table hook (part of entities.Model.after) for these synced tables: site codes of the
    sites, the computed fields of COMPUTED, the derived tables of REMADE, for the rows the import wrote."""
    auth = current.auth
    sites = {name for name in names if name in (getattr(auth, "org_site_types", None) or ())}
    computed = set(COMPUTED) & set(names)
    remade = {name for name in set(REMADE) & set(names) if REMADE[name][0] in db.tables}
    onimport = {name for name in names if current.s3db.get_config(name, "onimport")}

    def run(tablename, uuids):
        if not is_eden(db):
            return
        if tablename in sites:
            site_codes(db, tablename, uuids)
        if tablename in computed:
            computed_fields(db, tablename, uuids)
        if tablename in remade:
            REMADE[tablename][1](db, tablename, uuids)
        if tablename in onimport:
            on_import(db, tablename, uuids)
    run.tables = sites | computed | remade | onimport
    return run


def person_courses(db, tablename, uuids):
    """hrm_trainings as hrm_training_onaccept keeps it, for the persons of these trainings (created, changed or
    deleted): one row per person, its courses the distinct courses of the person's trainings not deleted
    (made if the person has none yet, updated where the list differs), set-based per chunk of persons."""
    table, ltable = db.hrm_training, db.hrm_trainings
    persons = set()
    for chunk in dialect.chunks(list(uuids)):
        persons.update(r.person_id for r in db(table.uuid.belongs(chunk)).select(table.person_id, distinct=True))
    persons.discard(None)
    for chunk in dialect.chunks(sorted(persons)):
        courses = {}
        query = table.person_id.belongs(chunk) & (table.deleted == False) & (table.course_id != None)  # noqa: E711,E712
        for r in db(query).select(table.person_id, table.course_id, distinct=True):
            courses.setdefault(r.person_id, []).append(r.course_id)
        have = {}
        for r in db(ltable.person_id.belongs(chunk)).select(ltable.id, ltable.person_id, ltable.course_id,
                                                             orderby=ltable.id):
            have.setdefault(r.person_id, r)  # (Eden updates the first it finds)
        for person_id in chunk:
            want, row = sorted(courses.get(person_id, ())), have.get(person_id)
            if row is None:
                ltable.insert(person_id=person_id, course_id=want)
            elif sorted(row.course_id or ()) != want:
                row.update_record(course_id=want)


def availability_rules(db, tablename, uuids):
    """pr_person_availability_rule, where Eden makes it (pr.availability_json_rules): the availability's own
    onaccept for each availability written, which rewrites its rules from its schedule."""
    if current.deployment_settings.get_pr_availability_json_rules():
        table = db[tablename]
        onaccept_each(db, tablename, lambda chunk: table.uuid.belongs(chunk) & (table.deleted != True), uuids)


def on_import(db, tablename, uuids):
    """The table's `onimport`, which Eden's import calls after it wrote a table's records (S3Resource.import_xml),
    with the ids written: in Eden's models only stock's (inv_item_onimport: the stock cards, where inv.stock_cards
    is on, and the warehouses' free capacity, where it is calculated), which reads created and updated as one."""
    table = db[tablename]
    ids = []
    for chunk in dialect.chunks(list(uuids)):
        ids += [r.id for r in db(table.uuid.belongs(chunk) & (table.deleted != True)).select(table.id)]
    if ids:
        _call(current.s3db.get_config(tablename, "onimport"), {"records": len(ids), "updated": ids})


def last_presence(db, tablename, uuids):
    """sit_trackable.track_timestmp, the time of a trackable's last presence, which Eden's tracker sets when it
    records one (S3Trackable's __update_timestamp): for the trackables of these presences, the latest time of
    their presences, where it is later than the one here; one statement per chunk."""
    ptable, ttable, ph = db.sit_presence, db.sit_trackable, dialect.placeholder(db)
    latest = "(SELECT MAX(p.%s) FROM %s p WHERE p.%s = %s.%s AND %s)" % (
        ptable.timestmp._rname, ptable._rname, ptable.track_id._rname, ttable._rname, ttable.track_id._rname,
        dialect.not_deleted(db, "p"))
    for chunk in dialect.chunks(list(uuids)):
        db.executesql("UPDATE %s SET %s = %s WHERE %s IN (SELECT %s FROM %s WHERE %s IN (%s)) AND (%s IS NULL OR %s < %s)"
                      % (ttable._rname, ttable.track_timestmp._rname, latest, ttable.track_id._rname,
                         ptable.track_id._rname, ptable._rname, ptable.uuid._rname, ",".join([ph] * len(chunk)),
                         ttable.track_timestmp._rname, ttable.track_timestmp._rname, latest), placeholders=list(chunk))


# {synced table: (the derived table its onaccept keeps, what remakes it here)}
REMADE = {"hrm_training": ("hrm_trainings", person_courses),
          "pr_person_availability": ("pr_person_availability_rule", availability_rules),
          "sit_presence": ("sit_trackable", last_presence)}  # (a super table's field, not a table)


def site_codes(db, tablename, uuids):
    """A code for each super record of these sites that has none, as org_site_onaccept makes it (Eden's
    org_SiteModel.generate_site_code), set-based: the codes in use read once, the new ones written in
    one statement per chunk (Eden's function asks the database once per try and site: 300 new offices
    took 2.5 s of a 16 s profiled merge of 10,000 records)."""
    if "code" not in db.org_site.fields:
        return
    stable, ph = db.org_site, dialect.placeholder(db)
    length = min(current.deployment_settings.get_org_site_code_len(), 10)
    used = None
    for chunk in dialect.chunks(list(uuids)):
        rows = db.executesql("SELECT s.site_id, s.name FROM %s s WHERE s.uuid IN (%s) AND s.instance_type = %s "
                             "AND s.code IS NULL AND %s" % (stable._rname, ",".join([ph] * len(chunk)), ph,
                                                            dialect.not_deleted(db, "s")),
                             placeholders=list(chunk) + [tablename])
        if not rows:
            continue
        if used is None:
            used = {r[0] for r in db.executesql("SELECT code FROM %s WHERE code IS NOT NULL" % stable._rname)}
        todo = []
        for site_id, name in rows:
            code = site_code(name, length, used)
            used.add(code)
            todo.append((code, site_id))
        db._adapter.cursor.executemany("UPDATE %s SET %s = %s WHERE site_id = %s" % (
            stable._rname, stable.code._rname, ph, ph), todo)


def site_code(name, length, used, rnd=random):
    """Eden's generate_site_code (org.py): the name's first two letters and its consonants after them, as
    a prefix filled up with X, then a random suffix of consonants and digits, 4 long first, longer after
    20 tries; a code not in `used`."""
    alpha, cons = "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "BCDFGHJKLMNPQRSTVWXYZ"
    if not name:
        name = "SITE"
    else:
        name = "".join(c for c in name[:2].upper() if c in alpha) + "".join(c for c in name[2:].upper() if c in cons)
    if not name:
        name = "".join(rnd.choice(alpha) for _ in range(length))
    prefix = (name[:length] + "X" * length)[:length]
    charset = "1234567890" + cons
    for suffix_length in range(min(length, 4), length + 1):
        for _ in range(20):
            code = prefix[:-suffix_length] + "".join(rnd.choice(charset) for _ in range(suffix_length))
            if code not in used:
                return code
    raise RuntimeError("Could not generate a site code")  # (Eden's words, where it gives up too)


def computed_fields(db, tablename, uuids):
    """The table's own onaccept, per record written whose computed field (COMPUTED) is empty."""
    table, field = db[tablename], COMPUTED[tablename]
    if field not in table.fields:
        return
    ph = dialect.placeholder(db)
    for chunk in dialect.chunks(list(uuids)):
        ids = [r[0] for r in db.executesql("SELECT t.id FROM %s t WHERE t.uuid IN (%s) AND t.%s IS NULL AND %s" % (
            table._rname, ",".join([ph] * len(chunk)), table[field]._rname, dialect.not_deleted(db, "t")),
            placeholders=list(chunk))]
        if ids:
            onaccept_each(db, tablename, table.id.belongs, ids)


def onaccept_each(db, tablename, where, keys):
    """The table's own onaccept for each record `where(keys)` selects, its version stamps kept (stamps_kept)."""
    s3db, table = current.s3db, db[tablename]
    onaccept = s3db.get_config(tablename, "create_onaccept") or s3db.get_config(tablename, "onaccept")
    if not onaccept:
        return
    with stamps_kept(table):
        for chunk in dialect.chunks(list(keys)):
            for row in db(where(chunk)).select():
                _call(onaccept, Storage(vars=Storage(row.as_dict()), record_id=row.id))


@contextlib.contextmanager
def stamps_kept(table):
    """pydal's update writes each field's `update` default (modified_on, modified_by): while Eden's own functions
    write the receiver's bookkeeping (an onaccept's fields, a realm), the record's version stays the sender's (as
    Eden's import keeps it around onaccept, S3ImportItem.commit)."""
    saved = {f.name: f.update for f in table if f.update is not None}
    for name in saved:
        table[name].update = None
    try:
        yield
    finally:
        for name, value in saved.items():
            table[name].update = value


def _call(onaccept, form):
    """Eden's callback(): a function or a list of them."""
    for fn in onaccept if isinstance(onaccept, (list, tuple)) else [onaccept]:
        fn(form)
