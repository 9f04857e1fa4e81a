"""Records known here under another uuid: the incoming uuid is an alias of a local record.

A record is its uuid (README, "Sync semantics"), but not every record that is
the same everywhere has one uuid everywhere: Eden's prepopulate gives each
instance's default users' person records uuids of their own.  Setting
`match = "eden"` asks the host, for each incoming record whose uuid is unknown
here (not a record, not an alias, not deleted here), whether it has the record
under another uuid: in Eden, the table's own `deduplicate` rule (eden.py,
`matcher`).  A match is kept as an alias (`plugin_sync_alias`): from then on the
incoming uuid -- the record itself, later versions of it, references to it --
resolves to the local record, which keeps its own uuid.  The matched pair is
then merged like any other (newest wins, a concurrent edit is a conflict): a
match is never a silent overwrite.  The default, `match = "uuid"`, matches by
uuid only; aliases made before still hold.

Only unknown uuids pay: one lookup per batch, and the matcher for the rows it
leaves.  Without the matcher and without aliases, the merge does none of this.
"""
from .errors import MatchRuleError

MATCHES = ("uuid", "eden")


class Aliases:
    """The aliases of one import: {table: {incoming uuid: local uuid}}, and the host's matcher."""

    def __init__(self, db, matcher=None):
        self.db, self.matcher = db, matcher
        self.known = {}

    @classmethod
    def for_import(cls, db, settings):
        """The aliases an import uses, or None when there is nothing to translate (the common case)."""
        match = settings.get("match") or "uuid"
        if match not in MATCHES:
            raise ValueError("plugins.sync.match must be one of %s, not %r" % (", ".join(MATCHES), match))
        matcher = settings.get("matcher") if match == "eden" else None
        if matcher is None and db(db.plugin_sync_alias).isempty():
            return None
        return cls(db, matcher)

    def of_table(self, tablename):
        if tablename not in self.known:  # None: the aliases of every table
            a = self.db.plugin_sync_alias
            query = (a.tablename == tablename) if tablename else (a.id > 0)
            rows = self.db(query).select(a.alias_uuid, a.local_uuid)
            self.known[tablename] = {r.alias_uuid: r.local_uuid for r in rows}
        return self.known[tablename]

    def translate(self, tablename, columns, raw, lookup, resolve, origin=None):
        """Rewrite the uuid cell of the rows of `raw` ([(line, cells)]) that are aliases here; True if any.

        `lookup(uuids)`: those of them that are records or tombstones of the
        table here.  The matcher, `matcher(tablename, rows, resolve)` with rows
        as {column: cell}, answers {incoming uuid: local uuid}; `resolve(target,
        uuids)` -> {uuid: local id} (the merge's uuid_to_id) is for the
        references it compares.
        """
        known = self.of_table(tablename)
        i = columns.index("uuid")
        changed, unknown = False, []
        for line, cells in raw:
            local = known.get(cells[i])
            if local is not None:
                cells[i] = local
                changed = True
            elif self.matcher is not None:
                unknown.append(cells)
        if unknown:
            here = lookup([cells[i] for cells in unknown])
            unknown = [cells for cells in unknown if cells[i] not in here]
        if unknown:
            try:
                found = self.matcher(tablename, [dict(zip(columns, cells)) for cells in unknown], resolve)
            except MatchRuleError as e:  # the host's rule cannot be used here: said with the row's line
                line = next((ln for ln, cells in raw if cells[i] == e.uuid), e.line)
                raise MatchRuleError(e.message, table=e.table or tablename, line=line, column="uuid") from None
            taken = {cells[i] for _, cells in raw}  # a local record that is in the file is itself
            for cells in unknown:
                local = found.get(cells[i])
                if local is None or local in taken:
                    continue
                taken.add(local)
                self.add(tablename, cells[i], local, origin)
                cells[i] = local
                changed = True
        return changed

    def add(self, tablename, alias, local, origin=None):
        self.db.plugin_sync_alias.insert(tablename=tablename, alias_uuid=alias, local_uuid=local, origin=origin)
        self.of_table(tablename)[alias] = local
        self.known.get(None, {})[alias] = local

    def local_uuids(self, tablename, uuids):
        """{incoming uuid: local uuid} for those of `uuids` that are aliases here.

        An alias of another table counts too: a super record (pr_pentity, org_site) shares its
        uuid with its instance record (pr_person...), so a reference to the super record by the
        person's alias is a reference to the local person's super record.
        """
        known = self.of_table(tablename)
        out = {u: known[u] for u in uuids if u in known}
        if len(out) < len(uuids):
            anywhere = self.of_table(None)
            out.update((u, anywhere[u]) for u in uuids if u not in out and u in anywhere)
        return out
