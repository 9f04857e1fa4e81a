"""References: resolve, defer, null.

A reference names its target by uuid (parse.py's one rule); here it becomes
the target's local id.  `IdCache` maps uuids to ids (one query per table and
batch, cached for the import).  `Resolver` decides each reference once:
resolved (the target is here), deferred (written as NULL until its target
is in: `Deferred`, fixed by `fix_deferred`), waiting (a NOT NULL reference
whose target is not in yet: the row is `Pending` until `Merger.retry_pending`),
or nulled (the target is not in the file and not here, or the sender's own
reference dangled), with a warning that names table, line and field.  In a
batch of a batched sync with more to come (batches.py), a reference not
resolved by the batch's end is carried over to the next batch
(plugin_sync_deferred), and nulled only after the range's last batch.
"""
import json
from collections import namedtuple
from itertools import repeat
from operator import itemgetter
from typing import NamedTuple

from .entities import is_super_table, key_of
from .errors import UnresolvedReference
from .fileformat import NULL
from .parse import key_column, ref_key
from .tables import references
from .values import bar_encode

ID_CACHE = 100000  # uuid -> id mappings kept during an import (about 15 MB at most)


class Deferred(NamedTuple):
    """A reference written as NULL (a list without the id) until its target is in: see fix_deferred."""

    table: str
    uuid: str  # of the row that refers
    field: str
    kind: str  # 'ref', 'list' or 'fk' (deleted_fk)
    target: str  # None for 'fk' (each field names its own)
    keys: object  # what it names: a key, a list of keys for 'list', {field: key} for 'fk' (parse.ref_key)
    line: int


# a reference set to NULL (or dropped from a list), said once its row is written: `pos` its position if it
# points into an unsynced table (a record here keeps its own), else None; `required`: NOT NULL, the row is refused
Nulled = namedtuple("Nulled", "field why pos required")
# a row's NOT NULL reference whose target is not in yet (the row waits: Pending); `key`: what it names (ref_key)
Missing = namedtuple("Missing", "field target key")
WAIT = object()  # Resolver.reference: the row waits for its NOT NULL reference's target


class Pending(NamedTuple):
    """A row waiting for a NOT NULL reference: written by retry_pending once its target is in."""

    plan: object  # its SectionPlan
    row: object  # the Incoming row
    local: object  # the record here when it first waited (local.Local), or None


class IdCache:
    """{table: {uuid: local id}} learnt during the import (bounded by ID_CACHE entries)."""

    def __init__(self, ctx):
        self.ctx, self.db = ctx, ctx.db
        self.cache, self.cached = {}, 0
        self.referenced = None  # tables some synced table refers to (computed at the first insert)
        self.aliases = None  # aliases.Aliases, when the import has any (set by the Merger)

    def clear(self):
        """Forget every mapping: records are about to be deleted (see tombstones.py)."""
        self.cache, self.cached = {}, 0

    def uuid_to_id(self, tablename, uuids):
        """{uuid: local id} for records of a table here.

        Mappings read or written during the import are cached (bounded by
        ID_CACHE entries): a uuid keeps its id until a record is deleted, and
        the merge deletes only at the end (Tombstones.apply clears the cache).
        """
        table, out, key = self.db[tablename], {}, key_of(self.db, tablename)  # uuid; a user's email (Eden)
        if key is None:
            return out
        wanted = uuids = set(uuids) if self.aliases is not None else uuids
        cache = self.cache.get(tablename)
        if cache:
            uuids = set(uuids)
            hits = uuids & cache.keys()
            out = {u: cache[u] for u in hits}
            uuids -= hits
        for where, params in self.ctx.in_list(table[key]._rname, uuids):  # a super table's key: pe_id...
            sql = "SELECT %s, %s FROM %s WHERE %s" % (table[key]._rname, table._id._rname, table._rname, where)
            found = dict(self.ctx.execute(sql, params))
            out.update(found)
            self.cache_ids(tablename, found)
        if self.aliases is not None and len(out) < len(wanted):  # a uuid not here may be an alias
            local = self.aliases.local_uuids(tablename, wanted - out.keys())
            ids = self.uuid_to_id(tablename, set(local.values())) if local else {}
            out.update((u, ids[lu]) for u, lu in local.items() if lu in ids)
        return out

    def cache_ids(self, tablename, found):
        if found and self.cached + len(found) <= ID_CACHE:
            self.cache.setdefault(tablename, {}).update(found)
            self.cached += len(found)

    def is_referenced(self, table):
        """Whether a synced table refers to this one (its uuid -> id mappings are worth caching)."""
        if self.referenced is None:
            self.referenced = {ref for name in self.ctx.synced for _, ref, _ in references(self.db[name])}
        return table._tablename in self.referenced and self.cached < ID_CACHE

    def inserted_after(self, table, after):
        """SQLite: the ids of the rows just inserted (those above `after`: one writer)."""
        return [r[0] for r in self.ctx.execute("SELECT id FROM %s WHERE id > %d ORDER BY id" % (table._rname, int(after)))]

    def learn_inserted(self, table, after):
        """Cache uuid -> id of the rows just inserted (ids above `after`), if other records refer to them."""
        if not self.is_referenced(table):
            return
        self.cache_ids(table._tablename, dict(self.ctx.execute("SELECT %s, id FROM %s WHERE id > %d" % (
            table.uuid._rname, table._rname, int(after)))))


class Resolver:
    """The references of one import: resolved now, deferred, waiting or nulled."""

    def __init__(self, ctx, ids, file_ids, writer):
        self.ctx, self.db, self.report = ctx, ctx.db, ctx.report
        self.ids, self.file_ids, self.writer = ids, file_ids, writer
        self.deferred = []  # [Deferred]: references written as NULL until their target is in
        self.instance_types = {}  # plain pydal files: {super table: {file key: instance table}} (learn_file_ids)
        self.pending = []  # [Pending]: rows waiting for a NOT NULL reference
        self.merged_tables = set()  # tables whose section is merged: a uuid of theirs not here now never will be
        self.more = False  # a batch with more of its range to come: a target may still arrive

    def resolve_columns(self, plan, parsed):
        """The column form of `reference`: (columns of values with references as local ids, [(row index,
        Nulled or Deferred)] in row order), or None when a row waits for a NOT NULL target or would be
        refused (the row-wise merge does these).  `parsed`: parse.Columns.  At once only the common case,
        a reference whose @uuid cell names a record here; every other one by ref_key and `reference`."""
        cols, cells, said, wanted, keycols, n = list(parsed.values), parsed.cells, [], {}, {}, len(parsed.uuids)
        for ref in plan.refs:
            values, notes = cols[ref.pos], cells[ref.note] if ref.note is not None else None
            if ref.kind == "ref":  # its @uuid cells (fast_ok): for the uuids found here, these are its keys
                keycols[ref.pos] = notes
                wanted.setdefault(ref.target, set()).update(notes)
            elif values.count(None) == n and (notes is None or notes.count(NULL) + notes.count("") == n):
                cols[ref.pos] = [None] * n  # no value and no annotation in any row: NULL, whatever the kind
            else:
                try:
                    keycols[ref.pos] = key_column(ref, cols, cells)
                except ValueError:  # a deleted_fk annotation that is not JSON: the row-wise parse names it
                    return None
                self.want(plan, ref, keycols[ref.pos], wanted)
        found = self.lookup(wanted)
        for ref in plan.refs:
            if ref.pos not in keycols:
                continue
            keys, values = keycols[ref.pos], cols[ref.pos]
            if ref.kind == "ref":  # rows with a value but no record found here go by the rule
                get = found.get(ref.target, {}).get
                out = [None if v is None else get(k) for v, k in zip(values, keys)] if None in values \
                    else list(map(get, keys))
                rest = [i for i, v in enumerate(out) if v is None and values[i] is not None] \
                    if out.count(None) > values.count(None) else ()
            else:
                out, rest = [None] * n, [i for i, k in enumerate(keys) if k or values[i] is not None]
            for i in rest:
                notes = []
                key = ref_key(ref.kind, values[i], keys[i]) if ref.kind == "ref" else keys[i]
                out[i] = self.reference(plan, ref, key, values[i], found, notes)
                if out[i] is WAIT or any(type(n) is Nulled and n.required for n in notes):
                    return None
                said.extend((i, n) for n in notes)
            cols[ref.pos] = out
        said.sort(key=_first)  # stable: in each row, in the order of its references
        return cols, said

    def keep(self, plan, line, uuid, notes):
        """For a row that is written (its line, uuid): count its Nulled references and say so, queue its Deferred."""
        for n in notes:
            if type(n) is Deferred:
                self.deferred.append(n._replace(uuid=uuid, line=line))
            else:
                self.nulled(plan, n.field, n.why, line, uuid)

    def nulled(self, plan, field, why, line, uuid):
        """Count a reference set to NULL and say so; user accounts missing here are said once per table and
        field, with their count (entities.Hooks.unmapped: Eden's created_by, owned_by_user...)."""
        self.report.count(plan.tablename, "refs_nulled")
        if not self.ctx.entities.unmapped(plan.table, field, why):
            self.report.warn("reference set to NULL: %s" % why, table=plan.tablename, line=line, column=field,
                             uuid=uuid)

    def lookup(self, wanted):
        """{target table: {uuid: local id}} of the records here of `wanted` ({table: uuids}), one query per table."""
        for uuids in wanted.values():
            uuids -= {None, "", NULL}
        return {t: self.ids.uuid_to_id(t, uuids) for t, uuids in wanted.items() if uuids}

    def want(self, plan, ref, keys, wanted):
        """Add to `wanted` ({table: uuids}) what a reference names in a batch (`keys`: ref_key per row)."""
        keys = [k for k in keys if k]
        if ref.kind == "fk":
            for fks in keys:
                for fk_field, key in fks.items():
                    t = _fk_target(plan.table, fk_field)
                    u = self.key_uuid(t, key) if t else None
                    if u:
                        wanted.setdefault(t, set()).add(u)
            return
        if ref.kind == "list":
            keys = [k for ks in keys for k in ks]
        wanted.setdefault(ref.target, set()).update(map(self.key_uuid, repeat(ref.target), keys))

    def lookup_rows(self, plan, batch):
        """lookup() of what the references of a batch of Incoming rows name."""
        wanted = {}
        for ref in plan.refs:
            self.want(plan, ref, [row.refs.get(ref.pos) for row in batch], wanted)
        return self.lookup(wanted)

    def learn_file_ids(self, section):
        """Read a skipped table's rows, learning {file id: uuid} of them; the number of rows.

        A plain pydal file (appadmin's) refers to rows by the sender's ids, also
        to the rows of tables that never sync.  A table is keyed on its own id
        field: `id`, or a super table's key.  So a contact's `pe_id` in an
        appadmin export of Eden is found in the file's `TABLE pr_pentity` (a
        site's `site_id` in `TABLE org_site`...), whose row of that key gives
        the uuid; Eden's super record shares its instance record's uuid, so
        that uuid names the receiver's own super record, as a `@uuid` would.
        """
        name, cols, n = section.tablename, section.columns, 0
        key = self.db[name]._id.name if name in self.db.tables else None
        if key not in cols or "uuid" not in cols:
            return sum(1 for _ in section.rows())
        ids, at, uuid_at = self.file_ids.setdefault(name, {}), cols.index(key), cols.index("uuid")
        # a super record's instance table: whether its record may still come later in the file (may_come)
        types = self.instance_types.setdefault(name, {}) if is_super_table(self.db, name) else None
        type_at = cols.index("instance_type") if types is not None and "instance_type" in cols else None
        for _, cells in section.rows():
            n += 1
            try:
                ids[int(cells[at])] = cells[uuid_at]
                if type_at is not None:
                    types[int(cells[at])] = cells[type_at]
            except ValueError:
                pass
        return n

    def key_uuid(self, target, key):
        if key[0] == "u":
            return key[1]
        if key[0] == "f":
            return self.file_ids.get(target, {}).get(key[1])
        return None

    def resolved_values(self, plan, row, found):
        """The row form of `reference`: the row's values with references turned into local ids; None if it
        must wait.  References nulled or deferred are noted on the row; they count only if it is written."""
        values = list(row.values)
        row.nulls, row.defers, row.missing = [], [], None
        for ref in plan.refs:
            notes, key = [], row.refs.get(ref.pos)
            value = self.reference(plan, ref, key, values[ref.pos], found, notes)
            if value is WAIT:
                row.missing = Missing(ref.field, ref.target, key)
                return None
            values[ref.pos] = value
            for n in notes:
                if type(n) is Deferred:
                    row.defers.append(n)
                elif n.required:
                    raise UnresolvedReference("required reference cannot be resolved: %s" % n.why,
                                              table=plan.tablename, line=row.line, column=n.field)
                else:
                    row.nulls.append(n)
        return values

    def reference(self, plan, ref, key, value, found, notes):
        """One reference of one row, the rule of both paths: what it is written as (a local id; for a list
        the ids found), or WAIT (a NOT NULL reference whose target is not in yet).  What there is to say is
        appended to `notes`: Nulled (set to NULL, dropped from a list) or Deferred (NULL until its target
        is in; its row's uuid and line are filled in by the caller).  `value`: the parsed value, `key`:
        ref_key of it, `found`: lookup()."""
        target, field = ref.target, ref.field
        if ref.kind == "fk":
            value, later = self.resolve_fk(plan.table, key, found)
            if later:  # an id whose record may come later in the file: fixed then (fix_deferred)
                notes.append(Deferred(plan.tablename, None, field, "fk", None, key, None))
            return value
        if ref.kind == "list":
            if not key:
                return None if value is None else "||"  # an empty list stays one
            ids = [found.get(target, {}).get(self.key_uuid(target, k)) for k in key]
            if None in ids:
                if not self.final_now(plan, target):
                    notes.append(Deferred(plan.tablename, None, field, "list", target, key, None))
                else:
                    notes.extend(Nulled(field, "%s %s is neither in the file nor here (dropped from the list)"
                                        % (target, self.key_uuid(target, k) or k[1]), None, False)
                                 for k, i in zip(key, ids) if i is None)
            return bar_encode([i for i in ids if i is not None])
        if key is None:
            return value
        if key[0] == "dangling":
            notes.append(Nulled(field, "the sender's own reference (id %s) pointed nowhere" % key[1], None,
                                ref.notnull))
            return None
        local = found.get(target, {}).get(self.key_uuid(target, key))
        if local is not None:
            return local
        if not ref.synced:  # not in this file by policy: resolve by uuid here or null it
            notes.append(Nulled(field, "%s %s is not here" % (target, key[1]), ref.pos, ref.notnull))
        elif ref.notnull:
            return WAIT
        elif self.final_now(plan, target):
            notes.append(Nulled(field, "%s %s is neither in the file nor here"
                                % (target, self.key_uuid(target, key) or "id %s" % key[1]), None, False))
        else:
            notes.append(Deferred(plan.tablename, None, field, "ref", target, key, None))
        return None

    def refuse_missing(self, plan, row):
        """A row's NOT NULL reference still names nothing after the last row: UnresolvedReference."""
        field, target, key = row.missing
        raise UnresolvedReference("required reference to %s %s is neither in the file nor here"
                                  % (target, self.key_uuid(target, key) or "id %s" % key[1]),
                                  table=plan.tablename, line=row.line, column=field)

    def final_now(self, plan, target):
        """An unresolved reference into a table whose section is merged (none of its rows still
        waiting) cannot resolve later in this file: it is NULL now, as at the end, so that a record
        whose only difference is such a reference compares as unchanged."""
        return (not self.more and target != plan.tablename and target in self.merged_tables
                and not any(p.plan.tablename == target for p in self.pending))

    def resolve_fk(self, table, keys, resolved):
        """deleted_fk travels as {field: uuid} (in a plain pydal file: {field: file id}): (its JSON of the
        ids here, whether an id that does not resolve yet may still come later in the file: may_come);
        ids that resolve nowhere are dropped."""
        if not keys:
            return None, False
        out, later = {}, False
        for fk_field, key in keys.items():
            t = _fk_target(table, fk_field)
            local = resolved.get(t, {}).get(self.key_uuid(t, key)) if t else None
            if local is not None:
                out[fk_field] = local
            elif t:
                later = later or self.may_come(table._tablename, t, key)
        return (json.dumps(out, sort_keys=True) if out else None), later

    def may_come(self, tablename, target, key):
        """Whether a deleted_fk id that does not resolve now may resolve later in this file: the section
        naming it is not read yet, or its record's section (a super record's: its instance record's, by
        the file's instance_type) is not merged yet.  Otherwise it is dropped now, so that a record whose
        only difference is such an id compares as unchanged (see final_now)."""
        if key[0] == "f" and target not in self.file_ids:
            return True
        if is_super_table(self.db, target):
            target = self.instance_types.get(target, {}).get(key[1]) if key[0] == "f" else None
            if target is None:
                return False
        return target not in self.merged_tables and (target == tablename or target in self.ctx.synced)

    def keep_local_unsynced(self, plan, row, values, local_values):
        """A reference into an unsynced table (a lookup list, auth_user) that is empty or does not
        resolve here says nothing about the record (the sender may just lack that lookup row):
        keep what the local record points to rather than null it."""
        for pos, f, target, kind, _, _, synced in plan.refs:
            if not synced and kind == "ref" and values[pos] is None:
                values[pos] = local_values[pos]
        row.nulls = [n for n in row.nulls if n.pos is None]

    def carry_over(self, peer):
        """End of a batch with more to come: the references still unresolved wait for the next batches
        (in plugin_sync_deferred, written in this import's transaction)."""
        table = self.db.plugin_sync_deferred
        for d in self.deferred:
            table.insert(peer=peer, deferred=json.dumps(list(d)))
        self.deferred = []

    def take_over(self, peer):
        """The references earlier batches of `peer` carried over: resolved with this batch's."""
        table = self.db.plugin_sync_deferred
        query = table.peer == peer
        for row in self.db(query).select(table.deferred, orderby=table.id):
            d = json.loads(row.deferred)
            kind, keys = d[3], d[5]
            d[5] = ([tuple(k) for k in keys] if kind == "list" else {f: tuple(k) for f, k in keys.items()}
                    if kind == "fk" else tuple(keys))
            self.deferred.append(Deferred(*d))
        self.db(query).delete()

    def fix_deferred(self, only_table=None, final=False):
        """Point NULL-ed references at their targets now that these are written."""
        keep, by_table = [], {}
        todo = [d for d in self.deferred if only_table is None or d.target == only_table or d.table == only_table]
        if not todo:
            return
        rest = [d for d in self.deferred if not (only_table is None or d.target == only_table or d.table == only_table)]
        wanted = {}
        for d in todo:
            for target, key in self.deferred_keys(d):
                u = self.key_uuid(target, key)
                if u:
                    wanted.setdefault(target, set()).add(u)
        resolved = {t: self.ids.uuid_to_id(t, us) for t, us in wanted.items()}
        for d in todo:
            tablename, row_uuid, field, kind, target, keys, line = d
            if kind == "fk":
                value, later = self.resolve_fk(self.db[tablename], keys, resolved)
                if later and not final:
                    keep.append(d)
                    continue
                by_table.setdefault((tablename, field), []).append((value, row_uuid))
                continue
            if kind == "list":
                ids = [resolved.get(target, {}).get(self.key_uuid(target, k)) for k in keys]
                if None in ids and not final:
                    keep.append(d)
                    continue
                for k, i in zip(keys, ids):
                    if i is None:
                        self.report.count(tablename, "refs_nulled")
                        self.report.warn("list reference dropped: %s %s is neither in the file nor here"
                                         % (target, self.key_uuid(target, k) or k[1]), table=tablename, line=line,
                                         column=field, uuid=row_uuid)
                by_table.setdefault((tablename, field), []).append((bar_encode([i for i in ids if i is not None]), row_uuid))
                continue
            local = resolved.get(target, {}).get(self.key_uuid(target, keys))
            if local is None:
                if not final:
                    keep.append(d)
                    continue
                self.report.count(tablename, "refs_nulled")
                self.report.warn("reference set to NULL: %s %s is neither in the file nor here"
                                 % (target, self.key_uuid(target, keys) or "id %s" % keys[1]),
                                 table=tablename, line=line, column=field, uuid=row_uuid)
                continue
            by_table.setdefault((tablename, field), []).append((local, row_uuid))
        for (tablename, field), params in by_table.items():
            self.writer.set_references(tablename, field, params)
        self.deferred = rest + keep

    def deferred_keys(self, d):
        """[(target table, key)] a Deferred waits for."""
        if d.kind == "fk":
            table = self.db[d.table]
            return [(_fk_target(table, f), key) for f, key in d.keys.items() if _fk_target(table, f)]
        return [(d.target, key) for key in (d.keys if d.kind == "list" else [d.keys])]


_first = itemgetter(0)


def _fk_target(table, fname):
    if fname in table.fields and table[fname].type.startswith("reference "):
        return table[fname].type[10:].strip()
    return None
