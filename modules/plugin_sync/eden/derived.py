"""Fields Eden's onaccept computes, made on arrival for the records that come without them.

Eden's import runs each record's onaccept (S3ImportItem.commit): beside the
affiliations (affiliations.py), some fill a field of their own that the
sender's copy may lack (made by code that ran no onaccept, or a file without
the column) or that never travels (a super record's field):

- a site's code (`org_site.code`, unique per instance, not a shared field):
  made by org_site_onaccept, which update_super calls for a new site;
- a project location's name (`project_location.name`, what Eden's map popups
  show): made by the table's onaccept from the project and the location.

Site codes set-based, by Eden's rule (site_code: a site is one record in 30
of an import, and Eden's function asks the database once per try); names by
the table's own onaccept, once per location that lacks one (rare), with
`modified_on` left as it is (as Eden's import does around onaccept), so that
the record's version stays the sender's.
"""
import random

from gluon import current
from gluon.storage import Storage

from .. import dialect

COMPUTED = {"project_location": "name"}  # {table: the field its onaccept computes}


def upkeep(db, names, is_eden):
    """The merge's per-table hook (part of entities.Model.after) for these synced tables: site codes of the
    sites, the computed fields of COMPUTED, for the rows the import wrote."""
    auth = current.auth
    sites = {name for name in names if name in (getattr(auth, "org_site_types", None) or ())}
    computed = set(COMPUTED) & set(names)

    def run(tablename, uuids):
        if not is_eden(db):
            return
        if tablename in sites:
            site_codes(db, tablename, uuids)
        if tablename in computed:
            computed_fields(db, tablename, uuids)
    run.tables = sites | computed
    return run


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
    s3db = current.s3db
    onaccept = s3db.get_config(tablename, "create_onaccept") or s3db.get_config(tablename, "onaccept")
    table, field = db[tablename], COMPUTED[tablename]
    if not onaccept or field not in table.fields:
        return
    ph = dialect.placeholder(db)
    for chunk in dialect.chunks(list(uuids)):
        ids = [r[0] for r in db.executesql("SELECT t.id FROM %s t WHERE t.uuid IN (%s) AND t.%s IS NULL AND %s" % (
            table._rname, ",".join([ph] * len(chunk)), table[field]._rname, dialect.not_deleted(db, "t")),
            placeholders=list(chunk))]
        if not ids:
            continue
        with _stamps_kept(table):
            for row in db(table.id.belongs(ids)).select():
                _call(onaccept, Storage(vars=Storage(row.as_dict()), record_id=row.id))


class _stamps_kept:
    """While Eden's onaccept writes: the record's modified_on (and modified_by) stay (S3ImportItem.commit)."""

    def __init__(self, table):
        self.fields = [table[f] for f in ("modified_on", "modified_by") if f in table.fields]

    def __enter__(self):
        self.saved = [f.update for f in self.fields]
        for f in self.fields:
            f.update = None

    def __exit__(self, *exc):
        for f, update in zip(self.fields, self.saved):
            f.update = update


def _call(onaccept, form):
    """Eden's callback(): a function or a list of them."""
    for fn in onaccept if isinstance(onaccept, (list, tuple)) else [onaccept]:
        fn(form)
