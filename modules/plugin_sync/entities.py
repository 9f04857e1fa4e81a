"""The host's data model in the sync: super-entities, realms, owners, users, location paths.

Sahana Eden keeps part of a record's meaning outside the record: its person
entity (`pr_pentity.pe_id`), its site (`org_site.site_id`) and other
super-entity rows, made by `s3db.update_super`; its realm (`realm_entity`, a
local `pe_id`); the ids of its owners (`owned_by_user`, `owned_by_group`) and
writers (`created_by`, `modified_by`); a location's `path` of local ids.  None
of these ids means anything on another instance.  What travels instead:

- a reference to any table travels as the referenced record's key
  (`key_of`): its uuid, a user's email (Eden's S3XML maps users by email);
  a reference to a super-entity as the super record's uuid, which is its
  instance record's uuid;
- `owned_by_group` (an integer, not a reference, in Eden) as its role's uuid
  (`auth_group.uuid`, Eden's role uid: "ADMIN"...);
- nothing of an instance's own super keys, `realm_entity`, `approved_by` and
  `path`: the receiver makes them, per batch and set-based (Hooks).

The host describes its model in one object (Model), made by its adapter and
attached to the `db`: Eden's by eden.model.entity_model, from s3db's configuration,
once per request; the minihost's (the engine tests' host) by its models/eden.py.
The engine stays plain: this module reads the Model and writes SQL, nothing of
web2py's `current`, except through the realm rule and the realm SQL the host
hands over (Model.realm_rule, Model.realm_sql).

A host that attaches none (a plain web2py app) gets NOTHING, a Model that
knows nothing: no super-entities, realms, paths, keys or local columns, so every
hook here does nothing; and since it can map none of them, a record's owners
and any reference to a table keyed on its own id (a super key no one here could
link) stay home.
"""
import array

from . import changes, dialect

MODEL = "_plugin_sync_model"  # the attribute of the db that holds its Model (set by the host adapter)
CHUNK = dialect.CHUNK
MAX_DEPTH = 64  # passes of the path rebuild: deeper chains (or a loop of parents) are left as they are
UNMAPPED_OWNERS = ("owned_by_group", "owned_by_user")  # what a host without a model keeps home (Eden's names)


class Super:
    """One super-entity of an instance table: the super table, its key, and the fields update_super copies."""

    def __init__(self, table, key, shared):
        self.table, self.key, self.shared = table, key, shared  # shared: {super field: instance field}


class Model:
    """What the host tells the engine about its data model: its super-entities (and the super tables
    that never sync as tables), the columns holding its own local ids (text ones too), its realms and
    their rule, its hierarchies (paths), the columns that name records across instances, its owners, its
    own upkeep, the approver of new records, and whether its fields' validators decide what is refused."""

    def __init__(self, supers=None, super_tables=(), keys=None, local=(), realms=(), realm_rule=None,
                 realm_sql=None, paths=None, ownership=None, after=None, described=True, validates=False,
                 approver=None, local_text=None, realms_on_update=None):
        self.supers = supers or {}  # {instance table: [Super]}
        # every super table (those of `supers` and any other the host has): never synced as a table
        self.super_tables = set(super_tables) | {s.table for ss in self.supers.values() for s in ss}
        self.keys = keys or {}  # {table: the column that names its records across instances, e.g. email}
        self.local = tuple(local)  # columns holding local ids in any table, never sent (Eden: realm_entity...)
        self.realms = set(realms)  # tables with a realm_entity the receiver computes
        self.realm_rule = realm_rule  # callable(tablename, uuids) -> True if it set them: the host's own rule
        self.realm_sql = realm_sql  # callable(db, table) -> SQL of a row `t`'s realm, or None (no realm)
        # the tables of `realms` whose realm is computed again when a record already here is updated (Eden: those
        # configured update_realm, as its import and forms do; the others keep the realm their record got when made
        # here); None: all of them
        self.realms_on_update = self.realms if realms_on_update is None else set(realms_on_update)
        self.paths = paths or {}  # {table: (parent field, path field)}: paths of local ids, rebuilt
        # {table: (field, ...)}: text holding local ids (a path, "table,id"): never sent; a path of `paths` is
        # rebuilt on arrival, any other left to the host (Eden rebuilds pr_role.path where it is NULL)
        self.local_text = dict(local_text or {})
        self.ownership = ownership or {}  # {integer field: table it names}: e.g. owned_by_group -> auth_group
        self.upkept = set(getattr(after, "tables", ()))  # the tables `after` looks after
        self.after = after  # callable(tablename, uuids): the host's own per-record upkeep, last (Eden: affiliations)
        self.described = described  # False: NOTHING, the model of a host that attaches none
        self.validates = validates  # True: the fields' validators (requires) decide what is refused (validators.py)
        self.approver = approver  # callable(table, account) -> approved_by of a record the merge creates (Eden's)

    def local_fields(self, db, table):
        """The columns of `table` that hold this instance's own ids: never sent; the receiver makes them
        (super keys, realms, paths) or leaves them (approved_by)."""
        name, fields = table._tablename, table.fields
        out = {f for f in self.local if f in fields}
        out |= {s.key for s in self.supers.get(name, ()) if s.key in fields}
        if name in self.paths:
            out.add(self.paths[name][1])
        out |= {f for f in self.local_text.get(name, ()) if f in fields}
        if not self.described:  # nothing maps them: the owners, and every reference to a super key
            out |= {f.name for f in table if f.name in UNMAPPED_OWNERS or _keyed_on_its_own(db, f)}
        return out


NOTHING = Model(described=False)


def _keyed_on_its_own(db, field):
    """Is this field a reference to a table keyed on a field of its own (pe_id, site_id...), not on id?"""
    if not field.type.startswith("reference "):
        return False
    target = field.type[10:].split(".")[0].strip()
    return target in db.tables and db[target]._id.name != "id"


def model(db):
    """The db's Model (NOTHING where the host attached none)."""
    return getattr(db, MODEL, None) or NOTHING


def attach(db, host_model):
    setattr(db, MODEL, host_model)


def local_fields(db, table):
    """The columns of `table` that hold this instance's own ids, by the db's Model (Model.local_fields)."""
    return model(db).local_fields(db, table)


def super_tables(db):
    """The super-entity tables of the db's model that are defined here (their uuid wants an index)."""
    return sorted(t for t in model(db).super_tables if t in db.tables)


def is_super_table(db, tablename):
    """A super table of the host's model: its records are made by the receiver, it never syncs as a table."""
    return tablename in model(db).super_tables


def key_of(db, tablename):
    """The column that names a record of `tablename` across instances: uuid, or the host's choice
    (Eden: a user's email); None if it has neither (the id, local, is all there is)."""
    key = model(db).keys.get(tablename) or "uuid"
    return key if key in db[tablename].fields else None


def creation_values(db, table, account):
    """[(field, value)] the host gives a record the merge creates, beyond the file's: approved_by as its own
    import sets it for the account that imports (Model.approver); [] if it has no such rule."""
    approver = model(db).approver
    if approver is None or "approved_by" not in table.fields:
        return []
    value = approver(table, account)
    return [] if value is None else [("approved_by", value)]


def ownership_refs(db, table):
    """(field, target table) of the integer fields that name a record of another table (owned_by_group)."""
    return [(f, t) for f, t in model(db).ownership.items() if f in table.fields and t in db.tables]


class Hooks:
    """What the merge calls: after each batch written (`written`) and before it commits (`finish`).

    After each batch: the super records of the batch's rows exist and the rows
    point at them (so that later tables' references to them resolve).  At the
    end, once every deferred reference is in: realms, the super records' shared
    fields (realm included), location paths, then the host's own upkeep.
    Set-based: a few statements per batch and table, whatever the number of
    rows.  Memory stays flat: the rows this import wrote are not kept here but
    read back at the end, a chunk at a time, from the change log (the rows
    changed since the merge's write mark: `mark`), where every write of the
    merge and of these hooks is captured.  Without a mark (not in a merge) their
    ids are kept, 8 bytes a row.
    """

    def __init__(self, db, tag_origin=lambda: None, mark=None):
        self.db, self.model = db, model(db)
        self.tag_origin = tag_origin  # the merge's origin tag for the changes these writes make
        self.mark = mark  # the merge's write mark (changes.write_mark), set by the merge once it holds the lock
        self.tables = {}  # {table: None}: the tables written to, in the order of their first batch (parents first)
        self.kept = {}  # {table: array of ids}: what was written, only where there is no mark
        self.first_new = {}  # {table: the lowest id this import created}: the ids from it on are new records
        self.missing_users = {}  # {(table, field): [count, an example]}: accounts not here (see unmapped)

    def written(self, tablename, written):
        """A batch of `tablename` was just written (the merge's Written: the ids it created and updated)."""
        m = self.model
        if not (tablename in m.supers or tablename in m.realms or tablename in m.paths or tablename in m.upkept):
            return
        ids = list(written.created_ids) + list(written.updated)
        self.tables.setdefault(tablename)
        if written.created_ids:  # (ids only grow: every record here before the import has a lower one)
            low = min(written.created_ids)
            self.first_new[tablename] = min(low, self.first_new.get(tablename, low))
        if self.mark is None:
            self.kept.setdefault(tablename, array.array("q")).extend(int(i) for i in ids)
        if tablename in m.supers:  # updated rows refresh the super records they had
            link_supers(self.db, tablename, m.supers[tablename], self.uuids_of(tablename, ids), self.tag_origin(),
                        refresh=bool(written.updated))

    def references_set(self, tablename, field, uuids):
        """Deferred references of these rows were just pointed at their targets: the super records, made when
        the rows were written (with the field NULL), take the field where update_super copies it."""
        for s in self.model.supers.get(tablename, ()):
            only = [sf for sf, inf in s.shared.items() if inf == field]
            if only:
                copy_shared(self.db, tablename, [s], list(uuids), only=only)

    def unmapped(self, table, field, why):
        """A reference to a user account that is not here was set to NULL: counted, and said once per table and
        field (at finish) rather than per row; False for any other reference (the merge says it itself)."""
        target = table[field].type[10:].split(".")[0].strip() if table[field].type.startswith("reference ") else None
        if target not in self.db.tables or key_of(self.db, target) != "email":
            return False
        tally = self.missing_users.setdefault((table._tablename, field), [0, why])
        tally[0] += 1
        return True

    def finish(self, report):
        """Realms, then the super records' copies of the instance fields (realm_entity among them), then paths,
        then the host's own upkeep (Eden: affiliations); each over what this import wrote, a chunk at a time."""
        for (tablename, field), (n, example) in sorted(self.missing_users.items()):
            report.warn("%d references to user accounts that are not here set to NULL (e.g. %s): no account "
                        "with that email here" % (n, example), table=tablename, column=field)
        m = self.model
        for tablename in self.tables:
            if tablename in m.supers:  # rows of earlier merges without their super records: linked now
                heal = sorted(unlinked(self.db, tablename, m.supers[tablename]))
                link_supers(self.db, tablename, m.supers[tablename], heal, self.tag_origin(), refresh=True)
                if self.mark is None:
                    self.kept[tablename].extend(self.ids_of(tablename, heal))
        for tablename in self.tables:
            if tablename in m.realms:
                for uuids in self.chunks(tablename, new_only=tablename not in m.realms_on_update):
                    set_realms(self.db, tablename, uuids, m, self.tag_origin())
                    if tablename in m.supers:  # the super records' copy of it (org_site.realm_entity)
                        copy_shared(self.db, tablename, m.supers[tablename], uuids, only=("realm_entity",))
            if tablename in m.paths:  # after the realms: the paths reach further (descendants), realms do not
                for uuids in self.chunks(tablename):
                    rebuild_paths(self.db, tablename, m.paths[tablename], uuids, self.tag_origin())
        if m.after is not None:
            for tablename in self.tables:
                if tablename in m.upkept:
                    for uuids in self.chunks(tablename):
                        m.after(tablename, uuids)

    def chunks(self, tablename, new_only=False):
        """The uuids of the rows of `tablename` this import wrote (new_only: created), CHUNK at a time, in the order
        of their ids: read back from the change log (changed since the mark), or from the ids kept.  (Rows that the
        path rebuild of an earlier chunk reached are among them, changed since the mark too: done again, which
        changes nothing.)"""
        low = self.first_new.get(tablename) if new_only else 0
        if low is None:
            return
        if self.mark is None:
            ids = sorted(i for i in set(self.kept.get(tablename, ())) if i >= low)
            for chunk in dialect.chunks(ids, CHUNK):
                yield self.uuids_of(tablename, chunk)
            return
        last = low - 1
        while True:
            chunk = changes_since(self.db, tablename, self.mark, last, CHUNK)
            if not chunk:
                return
            last = chunk[-1]
            yield self.uuids_of(tablename, chunk)

    def uuids_of(self, tablename, ids):
        table, out = self.db[tablename], []
        for chunk in dialect.chunks([int(i) for i in ids], CHUNK):
            out += [r[0] for r in self.db.executesql("SELECT %s FROM %s WHERE id IN (%s)" % (
                table.uuid._rname, table._rname, ",".join(map(str, chunk))))]
        return out

    def ids_of(self, tablename, uuids):
        table, ph, out = self.db[tablename], dialect.placeholder(self.db), []
        for chunk in dialect.chunks(list(uuids), CHUNK):
            out += [r[0] for r in self.db.executesql("SELECT id FROM %s WHERE %s IN (%s)" % (
                table._rname, table.uuid._rname, ",".join([ph] * len(chunk))), placeholders=chunk)]
        return out


def changes_since(db, tablename, mark, after, limit):
    """ids above `after` of the rows of `tablename` this transaction changed since `mark` (changes.write_mark),
    at most `limit`, ascending: what changes.written_since asks of the change log, a page at a time."""
    ph = dialect.placeholder(db)
    seq = "seq >= %d" % int(mark) if dialect.is_sqlite(db) else "seq = %d" % int(mark)  # as written_since
    return [int(r[0]) for r in db.executesql(
        "SELECT record_id FROM %s WHERE tablename = %s AND %s AND record_id > %d ORDER BY record_id LIMIT %d" % (
            changes.CHANGE, ph, seq, int(after), int(limit)), placeholders=[tablename])]


# ------------------------------------------------------------------ super-entities
def _shared(db, table, s, only=None):
    """[(super column, instance column)] that update_super copies (all, or those named in `only`)."""
    st = db[s.table]
    return [(st[sf]._rname, table[inf]._rname) for sf, inf in s.shared.items()
            if sf not in ("uuid", "instance_type", s.key) and (only is None or sf in only)]


def link_supers(db, tablename, supers, uuids, origin=None, refresh=False):
    """Make the missing super records of these rows, link the rows to them, and with `refresh` (rows that
    were here already: updated) copy their shared fields into the super records that were there.

    What s3db.update_super does per record, per batch and super-entity: one
    lookup of the super records there (by uuid and instance_type), one INSERT
    ... SELECT of the missing ones, one lookup of their new keys, one read of the
    rows' keys and one UPDATE of those that differ.  No subquery per row: a
    table just bulk-loaded has no statistics, and PostgreSQL plans a correlated
    subquery per row blind (a scan per row), where these are index lookups.
    """
    table, ph = db[tablename], dialect.placeholder(db)
    if refresh:
        copy_shared(db, tablename, supers, uuids)
    for chunk in dialect.chunks(list(uuids), CHUNK):
        links = {}  # {instance field: {uuid: super key}}: all of a row's super keys in one UPDATE
        for s in supers:
            st = db[s.table]
            shared = _shared(db, table, s)
            keys = _super_keys(db, st, s.key, tablename, chunk)
            missing = [u for u in chunk if u not in keys]
            if missing:
                cols = [st.uuid._rname, st.instance_type._rname] + [c for c, _ in shared]
                vals = ["t.%s" % table.uuid._rname, ph] + ["t.%s" % i for _, i in shared]
                # (a record deleted at the sender: Eden removes its super records, so none is made for it)
                db.executesql("INSERT INTO %s (%s) SELECT %s FROM %s t WHERE t.%s IN (%s) AND %s" % (
                    st._rname, ", ".join(cols), ", ".join(vals), table._rname, table.uuid._rname,
                    ",".join([ph] * len(missing)), _alive(db, table)), placeholders=[tablename] + missing)
                keys.update(_super_keys(db, st, s.key, tablename, missing))
            if s.key in table.fields:
                links[s.key] = keys
        if links:
            _set_keys(db, table, links, chunk, origin)


def _super_keys(db, st, key, tablename, uuids):
    """{uuid: super key} of the super records of these instance rows (uuid and instance_type)."""
    ph = dialect.placeholder(db)
    return dict(db.executesql("SELECT %s, %s FROM %s WHERE %s IN (%s) AND %s = %s" % (
        st.uuid._rname, st[key]._rname, st._rname, st.uuid._rname, ",".join([ph] * len(uuids)),
        st.instance_type._rname, ph), placeholders=list(uuids) + [tablename]))


def _set_keys(db, table, links, uuids, origin):
    """Point the rows at their super records ({field: {uuid: key}}), writing only the rows where a key differs
    (each such row keeps the keys it has where no super record is named)."""
    ph, fields = dialect.placeholder(db), list(links)
    rows = db.executesql("SELECT id, %s, %s FROM %s WHERE %s IN (%s)" % (
        table.uuid._rname, ", ".join(table[f]._rname for f in fields), table._rname, table.uuid._rname,
        ",".join([ph] * len(uuids))), placeholders=list(uuids))
    todo = []
    for row in rows:
        wanted = [links[f].get(row[1], have) for f, have in zip(fields, row[2:])]
        if wanted != list(row[2:]):
            todo.append(wanted + [row[0]])
    if not todo:
        return
    changes.bulk_begin(db, table._tablename)
    if dialect.is_sqlite(db):
        db._adapter.cursor.executemany("UPDATE %s SET %s WHERE id = ?" % (
            table._rname, ", ".join("%s = ?" % table[f]._rname for f in fields)), todo)
    else:  # one statement (psycopg2's executemany is a round trip per row)
        db.executesql("UPDATE %s AS t SET %s FROM unnest(%s) AS v(%s, i) WHERE t.id = v.i" % (
            table._rname, ", ".join("%s = v.k%d" % (table[f]._rname, n) for n, f in enumerate(fields)),
            ", ".join(["%s::bigint[]"] * (len(fields) + 1)), ", ".join("k%d" % n for n in range(len(fields)))),
            placeholders=[list(col) for col in zip(*todo)])
    changes.bulk_end(db, table._tablename, ids=[t[-1] for t in todo], origin=origin)


def copy_shared(db, tablename, supers, uuids, only=None):
    """The instance rows' shared fields (or those in `only`) into their super records: one UPDATE per
    super-entity and chunk (a correlated subquery per field: SQLite before 3.33 has no UPDATE ... FROM)."""
    table, ph = db[tablename], dialect.placeholder(db)
    for s in supers:
        st, shared = db[s.table], _shared(db, table, s, only)
        if not shared:
            continue
        sets = ", ".join("%s = (SELECT t.%s FROM %s t WHERE t.%s = %s.%s)" % (
            c, i, table._rname, table.uuid._rname, st._rname, st.uuid._rname) for c, i in shared)
        for chunk in dialect.chunks(list(uuids), CHUNK):
            db.executesql("UPDATE %s SET %s WHERE %s IN (%s) AND %s = %s" % (
                st._rname, sets, st.uuid._rname, ",".join([ph] * len(chunk)), st.instance_type._rname, ph),
                placeholders=chunk + [tablename])


def _alive(db, table):
    """SQL: the row `t` is not deleted (booleans are 'T'/'F' where pydal stores them as characters)."""
    if "deleted" not in table.fields:
        return "1 = 1"
    return dialect.not_deleted(db, "t", table.deleted._rname)


def unlinked(db, tablename, supers):
    """uuids of live rows of `tablename` without one of their super records (linked by nothing so far: e.g.
    merged before the plugin made super records): the merge links them too."""
    table, out = db[tablename], set()
    for s in supers:
        if s.key in table.fields:
            out.update(r[0] for r in db.executesql("SELECT t.%s FROM %s t WHERE t.%s IS NULL AND %s" % (
                table.uuid._rname, table._rname, table[s.key]._rname, _alive(db, table))))
    return out


def _update_tracked(db, table, sets, set_params, where, where_params, origin):
    """UPDATE rows of a synced table, their changes captured set-based like the merge's own (changes.bulk_*).

    `sets` and `where` speak of the row as `t` (correlated subqueries may).
    """
    name = table._tablename
    ids = [r[0] for r in db.executesql("SELECT t.id FROM %s t WHERE %s" % (table._rname, where),
                                       placeholders=list(where_params))]
    if not ids:
        return 0
    changes.bulk_begin(db, name)
    for chunk in dialect.chunks(ids, CHUNK):
        db.executesql("UPDATE %s AS t SET %s WHERE t.id IN (%s)" % (table._rname, sets, ",".join(map(str, chunk))),
                      placeholders=list(set_params))
    changes.bulk_end(db, name, ids=ids, origin=origin)
    return len(ids)


# ------------------------------------------------------------------ realms
def set_realms(db, tablename, uuids, host_model, origin=None):
    """realm_entity of these rows, by the host's rule: its own function if it has one for this table
    (Model.realm_rule), else its realm as SQL (Model.realm_sql: Eden's default cascade, in eden.py), as one
    UPDATE per chunk of the rows whose realm differs; no SQL: no realm (NULL)."""
    rule = host_model.realm_rule
    if rule is not None and rule(tablename, uuids):
        return
    table, ph = db[tablename], dialect.placeholder(db)
    realm = host_model.realm_sql(db, table) if host_model.realm_sql else None
    for chunk in dialect.chunks(list(uuids), CHUNK):
        marks = ",".join([ph] * len(chunk))
        if realm is None:
            _update_tracked(db, table, "realm_entity = NULL", [], "t.%s IN (%s) AND t.realm_entity IS NOT NULL" % (
                table.uuid._rname, marks), chunk, origin)
            continue
        _update_tracked(db, table, "realm_entity = %s" % realm, [],
                        "t.%s IN (%s) AND (t.realm_entity IS NULL AND %s IS NOT NULL OR t.realm_entity <> %s)" % (
                            table.uuid._rname, marks, realm, realm), chunk, origin)


# ------------------------------------------------------------------ location paths
def rebuild_paths(db, tablename, fields, uuids, origin=None):
    """Each written row's path (and its descendants') is its own chain of local ids: "1/5/42".

    What Eden's gis.update_location_tree keeps, set-based: each pass computes
    the path of the rows to do from their parents' paths in one query and
    writes the changed ones in one statement; the next pass does the children
    of what changed (and rows whose parent changed in the same pass), until
    nothing changes.
    """
    parent, path = fields
    table, ph = db[tablename], dialect.placeholder(db)
    t_parent, t_path, rname = table[parent]._rname, table[path]._rname, table._rname
    concat = "p.%s || '/' || CAST(t.id AS VARCHAR(20))" % t_path
    computed = "CASE WHEN t.%s IS NULL THEN CAST(t.id AS VARCHAR(20)) ELSE %s END" % (t_parent, concat)
    todo = []
    for chunk in dialect.chunks(list(uuids), CHUNK):
        todo += [r[0] for r in db.executesql("SELECT id FROM %s WHERE %s IN (%s)" % (
            rname, table.uuid._rname, ",".join([ph] * len(chunk))), placeholders=chunk)]
    todo += _pathless_ancestors(db, table, t_parent, t_path, todo)
    for _ in range(MAX_DEPTH):
        if not todo:
            return
        changed = []
        for chunk in dialect.chunks(sorted(set(todo)), CHUNK):
            rows = db.executesql(
                "SELECT t.id, %s FROM %s t LEFT JOIN %s p ON p.id = t.%s WHERE t.id IN (%s) AND "
                "(t.%s IS NULL OR p.%s IS NOT NULL) " % (computed, rname, rname, t_parent, ",".join(map(str, chunk)),
                                                         t_parent, t_path) +
                "AND (t.%s IS NULL OR t.%s <> %s)" % (t_path, t_path, computed))
            changed += rows
        if not changed:
            return
        changes.bulk_begin(db, tablename)
        sql = "UPDATE %s SET %s = %s WHERE id = %s" % (rname, t_path, ph, ph)
        db._adapter.cursor.executemany(sql, [(p, i) for i, p in changed])
        changes.bulk_end(db, tablename, ids=[i for i, _ in changed], origin=origin)
        ids = [i for i, _ in changed]
        todo = []
        for chunk in dialect.chunks(ids, CHUNK):
            todo += [r[0] for r in db.executesql("SELECT id FROM %s WHERE %s IN (%s)" % (
                rname, t_parent, ",".join(map(str, chunk))))]


def _pathless_ancestors(db, table, t_parent, t_path, ids):
    """The ancestors of these rows that have no path yet (a parent made without Eden's hooks): done first."""
    out, seen, frontier = [], set(ids), list(ids)
    for _ in range(MAX_DEPTH):
        found = []
        for chunk in dialect.chunks(frontier, CHUNK):
            found += [r[0] for r in db.executesql(
                "SELECT p.id FROM %s t JOIN %s p ON p.id = t.%s WHERE t.id IN (%s) AND p.%s IS NULL" % (
                    table._rname, table._rname, t_parent, ",".join(map(str, chunk)), t_path))]
        frontier = [i for i in set(found) if i not in seen]
        if not frontier:
            break
        seen.update(frontier)
        out += frontier
    return out
