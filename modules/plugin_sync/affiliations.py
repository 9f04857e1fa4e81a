"""Eden's organisational affiliations after an import: a site's and a staff member's place under their
organisation (pr_affiliation to the organisation's "Sites", "Staff" or "Volunteer" role, pr_role), which
Eden's realm hierarchies and the organisation's pages read, and which Eden keeps in the tables' onaccept.

Branches, organisation groups, teams and group memberships: Eden's own function per record (few rows).
Set-based for what an import mostly brings (new sites and staff, whose entity has no affiliation of
that kind yet), Eden's own per-record functions for the rest (a changed organisation, an entity that
owns OU roles): upkeep(db, names, is_eden) is the merge's per-table hook (entities.Model.after).
"""
from gluon import current

from . import dialect


def upkeep(db, names, is_eden):
    """Eden's organisational affiliations (pr_affiliation: a site's and a staff member's place under their
    organisation, which realm hierarchies and the organisation's pages read) for what the import wrote, as
    Eden's own functions keep them (what the tables' onaccept calls): for the records without their
    affiliation yet, set-based where the entity has no affiliation of that kind yet (affiliate_staff,
    affiliate_sites: new records, the bulk of an import), else Eden's function per record.

    is_eden(db): the Eden adapter's test that Eden serves this `db` in this thread (handed in, so that
    this module needs nothing of the adapter that calls it)."""
    auth, s3db = current.auth, current.s3db
    sites = {name for name in names if name in (getattr(auth, "org_site_types", None) or ())}
    staff = {"hrm_human_resource"} & set(names)
    links = set(LINKS) & set(names)

    def upkeep(tablename, uuids):
        if not is_eden(db) or tablename not in sites | staff | links:
            return
        table = db[tablename]
        if tablename in links:  # few rows: Eden's own function per record written
            for k in range(0, len(uuids), 900):
                for record_id in db(table.uuid.belongs(uuids[k:k + 900])).select(table.id).column("id"):
                    s3db.pr_update_affiliations(tablename, record_id)
            return
        for k in range(0, len(uuids), 900):
            ids = _unaffiliated(db, table, uuids[k:k + 900], tablename in staff)
            if tablename in staff:
                for record_id in affiliate_staff(db, table, ids):  # the set-based common case first
                    s3db.pr_update_affiliations(table, record_id)
            else:
                for record_id in affiliate_sites(db, table, ids):
                    s3db.org_update_affiliations(tablename, {"id": record_id})
    upkeep.tables = sites | staff | links
    return upkeep


# The other records whose onaccept makes affiliations (Eden's pr_update_affiliations dispatches them): an
# organisation's branches ("Branches"), organisation groups' members, teams, persons' group memberships
# ("Members").  Rare, so Eden's own function runs for each record written.
LINKS = ("org_organisation_branch", "org_group_membership", "org_organisation_team", "pr_group_membership")


# Eden's names (pr.py: pr_human_resource_update_affiliations, OU)
STAFF, VOLUNTEER, SITES, OU = "Staff", "Volunteer", "Sites", 1


def affiliate_sites(db, table, ids):
    """Eden's org_site_update_affiliations for the sites `ids` (of an instance table of org_site: offices,
    facilities...), set-based for the common case; the ids it leaves to Eden's own org_update_affiliations.

    The common case: the site has an entity, no current "Sites" affiliation (a
    new site: Eden's function then removes nothing) and owns no OU role (the path
    rebuild of pr_add_to_role is a no-op, see affiliate_staff).  For those: the
    affiliation to the organisation's "Sites" role (made if missing, type OU),
    as add_affiliations does it; a site without organisation gets none, as in
    Eden.
    """
    if not ids:
        return []
    rows = db.executesql("SELECT t.id, t.pe_id, o.pe_id FROM %s t LEFT JOIN %s o ON o.id = t.organisation_id "
                         "WHERE t.id IN (%s)" % (table._rname, db.org_organisation._rname, _ints(ids)))
    busy = _busy_entities(db, {pe for _, pe, _ in rows if pe is not None}, (SITES,))
    add_affiliations(db, [(org_pe, SITES, pe) for _, pe, org_pe in rows if pe is not None and pe not in busy
                          and org_pe])
    return [rid for rid, pe, _ in rows if pe is None or pe in busy]


def affiliate_staff(db, table, ids):
    """Eden's pr_human_resource_update_affiliations for the staff records `ids` (hrm_human_resource), set-based
    for the common case of an import; the ids it leaves to Eden's own per-record function.

    The common case: the record's person has an entity, no current Staff or
    Volunteer affiliation (a person new here: Eden's function then removes
    nothing) and owns no OU role (then pr_add_to_role's `pr_rebuild_path(pe_id,
    clear=True)` is a no-op: it clears and rebuilds the paths of the OU roles
    the person's entity owns, and of their descendants: there are none; the
    roles it makes belong to the sites and organisations, never to the person,
    so this holds after them too).  For those persons, from all their current
    staff records (status 1, type 1 staff or 2 volunteer, not deleted), the
    masters as Eden computes them: type 1 the site's entity where the site's
    instance table has a pe_id, and the organisation's, role "Staff"; type 2 the
    organisation's, role "Volunteer".  Then per chunk: one lookup of the
    masters' roles, one INSERT of the missing ones (pe_id, role, role_type OU,
    path NULL: Eden's lazy rebuild), one lookup of their ids, one of the
    affiliations there (any, as pr_add_to_role asks) and one INSERT of the
    missing ones; the rows as the DAL's insert makes them (its defaults: uuid,
    created_on...).  Everyone else (a changed organisation, a person who owns
    OU roles, a record without person) goes to Eden's function per record.
    """
    if not ids:
        return []
    ptable = db.pr_person
    rows = db.executesql("SELECT h.id, h.person_id, p.pe_id FROM %s h LEFT JOIN %s p ON p.id = h.person_id "
                         "WHERE h.id IN (%s)" % (table._rname, ptable._rname, _ints(ids)))
    entity = {pid: pe for _, pid, pe in rows if pid is not None and pe is not None}
    busy = _busy_entities(db, set(entity.values()), (STAFF, VOLUNTEER))
    left = [rid for rid, pid, pe in rows if pid not in entity or entity[pid] in busy]
    todo = {pid: pe for pid, pe in entity.items() if pe not in busy}
    if not todo:
        return left
    otable = db.org_organisation
    hrs = db.executesql(
        "SELECT h.person_id, h.type, h.site_id, o.pe_id FROM %s h LEFT JOIN %s o ON o.id = h.organisation_id "
        "WHERE h.person_id IN (%s) AND h.status = 1 AND h.type IN (1, 2) AND %s" % (
            table._rname, otable._rname, _ints(todo), dialect.not_deleted(db, "h")))
    site_pe = site_entities(db, {site for _, kind, site, _ in hrs if kind == 1 and site})
    masters = {}  # {person_id: {role: [master pe_id]}}, in Eden's order
    for pid, kind, site, org_pe in hrs:
        mine = masters.setdefault(pid, {STAFF: [], VOLUNTEER: []})
        role = STAFF if kind == 1 else VOLUNTEER
        for pe in ([site_pe.get(site)] if kind == 1 else []) + [org_pe]:
            if pe and pe not in mine[role]:
                mine[role].append(pe)
    add_affiliations(db, [(m, role, todo[pid]) for pid, mine in masters.items() for role in (STAFF, VOLUNTEER)
                          for m in mine[role]])
    return left


def site_entities(db, site_ids):
    """{site_id: pe_id} of the sites whose instance table has a pe_id (as Eden reads it: org_site's
    instance_type, then that table's row of the site_id; deleted or not)."""
    s3db, out = current.s3db, {}
    if not site_ids:
        return out
    stable, kinds = db.org_site, {}
    for chunk in dialect.chunks(sorted(site_ids)):
        for site, kind in db.executesql("SELECT site_id, instance_type FROM %s WHERE site_id IN (%s)" % (
                stable._rname, _ints(chunk))):
            kinds.setdefault(kind, []).append(site)
    for kind, sites in kinds.items():
        itable = s3db.table(kind, None) if kind else None
        if itable is None or "pe_id" not in itable.fields or "site_id" not in itable.fields:
            continue
        for chunk in dialect.chunks(sites):
            for site, pe in db.executesql("SELECT site_id, pe_id FROM %s WHERE site_id IN (%s) ORDER BY id" % (
                    itable._rname, _ints(chunk))):
                out.setdefault(site, pe)
    return out


def _busy_entities(db, pe_ids, roles):
    """The entities among `pe_ids` that Eden's per-record function must see: with a current affiliation in one
    of these roles (it may remove one), or owning a current OU role (pr_rebuild_path has paths to redo)."""
    out = set()
    if not pe_ids:
        return out
    s3db, ph = current.s3db, dialect.placeholder(db)
    atable, rtable = s3db.table("pr_affiliation"), s3db.table("pr_role")
    for chunk in dialect.chunks(sorted(pe_ids)):
        marks = _ints(chunk)
        out.update(r[0] for r in db.executesql(
            "SELECT a.pe_id FROM %s a JOIN %s r ON r.id = a.role_id WHERE a.pe_id IN (%s) AND %s AND %s "
            "AND r.role IN (%s) UNION SELECT r.pe_id FROM %s r WHERE r.pe_id IN (%s) AND r.role_type = %d AND %s" % (
                atable._rname, rtable._rname, marks, dialect.not_deleted(db, "a"), dialect.not_deleted(db, "r"), ",".join([ph] * len(roles)),
                rtable._rname, marks, OU, dialect.not_deleted(db, "r")), placeholders=list(roles)))
    return out


def add_affiliations(db, wanted):
    """Eden's pr_add_affiliation(master, affiliate, role, role_type=OU) for each (master, role, affiliate) of
    `wanted`, set-based, for affiliates that own no OU role (see affiliate_staff: the path rebuild is a no-op).

    As Eden: a master's current role of that name, whatever its type (the first
    one), else a new one of type OU with no path; an affiliation unless one of
    that role and entity is there (deleted or not, as pr_add_to_role asks).
    """
    if not wanted:
        return
    s3db = current.s3db
    rtable, atable = s3db.table("pr_role"), s3db.table("pr_affiliation")
    keys = sorted({(m, role) for m, role, _ in wanted})
    roles = _roles_of(db, rtable, keys)
    missing = [k for k in keys if k not in roles]
    if missing:
        insert_rows(db, rtable, [dict(pe_id=m, role=role, role_type=OU) for m, role in missing])
        roles.update(_roles_of(db, rtable, missing))
    pairs = list(dict.fromkeys((roles[(m, role)], a) for m, role, a in wanted if (m, role) in roles))
    there = set()
    for chunk in dialect.chunks(pairs):
        there.update(db.executesql("SELECT role_id, pe_id FROM %s WHERE role_id IN (%s) AND pe_id IN (%s)" % (
            atable._rname, _ints({r for r, _ in chunk}), _ints({a for _, a in chunk}))))
    insert_rows(db, atable, [dict(role_id=r, pe_id=a) for r, a in pairs if (r, a) not in there])


def _roles_of(db, rtable, keys):
    """{(pe_id, role): id} of the current roles of these names of these entities (the lowest id of each)."""
    ph, out = dialect.placeholder(db), {}
    wanted = set(keys)
    for chunk in dialect.chunks(keys):
        names = sorted({role for _, role in chunk})
        for pe, role, rid in db.executesql(
                "SELECT r.pe_id, r.role, min(r.id) FROM %s r WHERE r.pe_id IN (%s) AND r.role IN (%s) AND %s "
                "GROUP BY r.pe_id, r.role" % (rtable._rname, _ints({m for m, _ in chunk}), ",".join([ph] * len(names)),
                                              dialect.not_deleted(db, "r")), placeholders=names):
            if (pe, role) in wanted:
                out[(pe, role)] = rid
    return out


def insert_rows(db, table, rows, size=400):
    """Insert these rows (dicts of the same fields) as the DAL's `table.insert(**row)` would make each (its
    defaults and computed fields, a fresh uuid per row, its before-insert callbacks), one multi-row INSERT per
    `size` rows; through the DAL's bulk_insert (a statement per row) where the table has after-insert callbacks."""
    if not rows:
        return
    if table._after_insert:  # (Eden's tables have none)
        table.bulk_insert(rows)
        return
    adapter = db._adapter
    literal = _literals(adapter)
    for k in range(0, len(rows), size):
        ops = []
        for r in rows[k:k + size]:
            row = table._fields_and_values_for_insert(dict(r))
            if any(f(row) for f in table._before_insert):  # (as the DAL's insert: such a row is not inserted)
                continue
            ops.append(sorted(row.op_values(), key=lambda fv: fv[0].name))
        if not ops:
            continue
        fields = [f for f, _ in ops[0]]
        if any([f for f, _ in op] != fields for op in ops):  # (not the same fields: one at a time)
            for op in ops:
                adapter.insert(table, op)
            continue
        db.executesql("INSERT INTO %s (%s) VALUES %s" % (
            table._rname, ", ".join(f._rname for f in fields),
            ", ".join("(%s)" % ", ".join(literal(f, v) for f, v in op) for op in ops)))


def _literals(adapter):
    """The DAL's SQL literal of a field's value (adapter.expand), computed once per value that is the same on
    many rows (a default: deleted, mci, an owner...); per row for a callable default (created_on) and for a
    field of a custom type, whose encoder may make a value (Eden's uuid: a new one for "")."""
    memo = {}

    def literal(f, v):
        if callable(v) or not isinstance(f.type, str):
            return adapter.expand(v, f.type)
        key = (f.name, type(v), v)
        try:
            return memo[key]
        except KeyError:
            memo[key] = out = adapter.expand(v, f.type)
            return out
        except TypeError:  # (not hashable)
            return adapter.expand(v, f.type)
    return literal


def _ints(values):
    return ",".join(str(int(v)) for v in values)


def _unaffiliated(db, table, uuids, staff):
    """ids of these records whose entity (a site's; a staff record's person's) has no affiliation with their
    organisation yet, so that Eden's functions run only where there is work (new records, a changed
    organisation), not for every record a re-sync updates.  Two queries: the records' entities and
    organisations, then the affiliations of those entities (Eden gives pr_affiliation.pe_id no index: a
    subquery per record would scan it per record)."""
    s3db, ph = current.s3db, dialect.placeholder(db)
    atable, rtable, otable = s3db.table("pr_affiliation"), s3db.table("pr_role"), db.org_organisation
    if staff:
        entity = "LEFT JOIN %s p ON p.id = t.person_id" % db.pr_person._rname, "p.pe_id"
    else:
        entity = "", "t.pe_id"
    rows = db.executesql("SELECT t.id, %s, t.organisation_id FROM %s t %s WHERE t.uuid IN (%s) AND "
                         "t.organisation_id IS NOT NULL" % (entity[1], table._rname, entity[0],
                                                            ",".join([ph] * len(uuids))), placeholders=list(uuids))
    pes = {pe for _, pe, _ in rows if pe is not None}
    there = set()
    for chunk in dialect.chunks(sorted(pes)):
        there.update(db.executesql(
            "SELECT a.pe_id, o.id FROM %s a JOIN %s r ON r.id = a.role_id JOIN %s o ON o.pe_id = r.pe_id "
            "WHERE a.pe_id IN (%s) AND %s AND %s" % (atable._rname, rtable._rname, otable._rname, _ints(chunk),
                                                     dialect.not_deleted(db, "a"), dialect.not_deleted(db, "r"))))
    return [rid for rid, pe, org in rows if (pe, org) not in there]
