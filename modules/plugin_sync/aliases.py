"""Records known here under another uuid: the incoming uuid is an alias of a local record.

A record is its uuid (README, "Sync semantics"), but not every record that is
the same everywhere has one uuid everywhere: every Eden prepopulates its
lookups (markers, the "Default" supply catalogue, types, statuses...) and its
default users' person records under uuids of its own.  For each incoming
record whose uuid is unknown here (not a record, not an alias, not deleted
here) the setting `match` says how to find it here under another uuid:

- "keys" (the default): by the table's **unique key**, what the host's model
  declares identifies a record (a field with `unique=True`, or one whose
  validator is IS_NOT_IN_DB / Eden's IS_NOT_ONE_OF on that same field): the
  receiver cannot hold two records with one key value (its database or its
  own validator refuses the second), so a record with the key value of a
  local one is that record, or an error.  In Eden those are its prepopulated
  lookups, whose names are unique (`gis_marker.name`, `supply_catalog.name`,
  `org_organisation_type.name`, `project_status.name`...).  Empty keys match
  nothing; a reference field is no key (its value is a local id).
  Then, for what the unique keys leave, by the table's **field rule** where the
  host has one (`settings.key_rules(tablename)`): a FieldRule, the fields that
  must be equal (case aside for text) and those that must be where the incoming
  record has a value, set-based (one query per chunk) -- in Eden every table
  whose `deduplicate` is an S3Duplicate (the rule Eden's own import applies:
  catalogue items by catalogue and item, sectors, skills...); or a rule of the
  matcher's signature, row by row -- in Eden the supply catalogue's items,
  categories and packs, which every Eden's templates load under uuids of its
  own and whose rules are functions.  So the lookups every Eden prepopulates
  without a unique key meet as one record, as after Eden's own import.
- "eden": first the table's own `deduplicate` rule (eden/match.py,
  `matcher`), then the key for what the rule leaves.  A rule matches records
  that differ in their unique fields too (persons by name...): a judgement
  an administrator makes, hence not the default.
- "uuid": by uuid only (a record whose key is held here is then refused where
  the database holds the key unique).

A match is kept as an alias (`plugin_sync_alias`): from then on the
incoming uuid -- the record itself, later versions of it, references to it --
resolves to the local record, which keeps its own uuid.  The matched pair is
then merged like any other (newest wins, a concurrent edit is a conflict): a
match is never a silent overwrite.  Aliases made before hold whatever the
setting.

Only unknown uuids of a table that can match pay: one lookup per batch, then
one query per key (and the rule per row); without keys, rule or aliases the
merge does none of this.
"""
from typing import NamedTuple

from .dialect import char_bool, chunks
from .errors import MatchRuleError
from .fileformat import NULL, UUID
from .tables import references
from .values import is_text, parser

MATCHES = ("uuid", "keys", "eden")
DEFAULT_MATCH = "keys"
NOT_KEYS = ("id", "uuid")  # the local id; the uuid is the identity the key stands in for


def unique_keys(table):
    """The fields of `table` its model declares unique: `unique=True`, or a validator IS_NOT_IN_DB (Eden's
    IS_NOT_ONE_OF is one) on this very field.  Not references, lists or uploads (their values are local)."""
    keys = []
    for field in table:
        if field.name in NOT_KEYS or field.type.startswith(("reference", "list:", "big-reference")) or \
                field.type in ("id", "upload", "password", "blob", "json"):
            continue
        if field.unique or any(_not_in_db(v, field) for v in _validators(field.requires)):
            keys.append(field.name)
    return keys


def _validators(requires):
    """Every validator of a field's `requires`, those inside IS_EMPTY_OR (IS_NULL_OR) included."""
    todo, out = [requires], []
    while todo:
        v = todo.pop()
        if isinstance(v, (list, tuple)):
            todo.extend(v)
        elif v is not None:
            out.append(v)
            if getattr(v, "other", None) is not None:
                todo.append(v.other)
    return out


def _not_in_db(validator, field):
    """An IS_NOT_IN_DB (or a subclass, as Eden's IS_NOT_ONE_OF) on `field` itself: the field's values are unique."""
    if not any(c.__name__ == "IS_NOT_IN_DB" for c in type(validator).__mro__):
        return False
    return str(getattr(validator, "field", "")) == "%s.%s" % (field.tablename, field.name)


def key_matches(db, tablename, rows, keys):
    """{incoming uuid: local uuid} of the rows ({column: cell}) whose value of a unique key (of `keys`) a local
    record holds.  One query per key; the first key that matches decides; an empty key matches nothing."""
    table, found = db[tablename], {}
    for key in keys:
        values = {r.get(key) for r in rows if r.get("uuid") not in found} - {None, NULL, ""}
        if not values:
            continue
        here = {}
        for chunk in chunks(sorted(values)):
            for r in db(table[key].belongs(chunk)).select(table[key], table.uuid):
                here.setdefault(str(r[key]), r.uuid)
        for r in rows:
            if r.get("uuid") not in found and r.get(key) in here:
                found[r["uuid"]] = here[r[key]]
    return found


class FieldRule(NamedTuple):
    """A field-equality rule (Eden's S3Duplicate): a record here is the incoming one when every `primary` field
    is equal (text case aside with `ignore_case`) and every `secondary` one where the incoming record has a
    value; with `ignore_deleted`, no deleted record matches."""

    primary: tuple
    secondary: tuple = ()
    ignore_case: bool = True
    ignore_deleted: bool = False


def typed(table, row, fields=None):
    """The cells of a file's row ({column: cell}; those of `fields` only) as the values a rule compares (dates as
    dates...); a cell that does not read is left out (the merge itself reports it)."""
    char, data = char_bool(table._db), {}
    for f in row if fields is None else fields:
        if f not in table.fields or f not in row:
            continue
        cell, read = row[f], parser(table[f].type, char)
        try:
            data[f] = None if cell == NULL else cell if is_text(read) else read(cell)
        except ValueError:
            pass
    return data


def rule_matches(db, tablename, rows, rule, resolve):
    """{incoming uuid: local uuid} of the rows ({column: cell}) a local record matches by `rule` (the one with
    the lowest id where several do).  One query per chunk of the first primary field's values; a row with an
    empty primary field matches nothing (Eden's rule would take it for "field is NULL")."""
    table = db[tablename]
    targets = {f: t for f, t, is_list in references(table) if not is_list}
    wanted = [f for f in rule.primary + rule.secondary if f in targets]
    ids = {f: resolve(targets[f], {r.get(f + UUID) for r in rows} - {None, NULL, ""}) for f in wanted}
    plain = [f for f in rule.primary + rule.secondary if f not in targets]

    def key(field, value):
        if value is None or value == "":
            return None
        if rule.ignore_case and field.type in ("string", "text") and isinstance(value, str):
            return value.lower()
        return value

    def incoming(row, values, f):
        return ids[f].get(row.get(f + UUID)) if f in targets else key(table[f], values.get(f))

    first, offered = rule.primary[0], {}
    for r in rows:
        values = typed(table, r, plain)
        primary = tuple(incoming(r, values, f) for f in rule.primary)
        if None not in primary:
            offered[r["uuid"]] = (primary, {f: incoming(r, values, f) for f in rule.secondary})
    if not offered:
        return {}
    def column(f):
        return table[f].lower() if rule.ignore_case and table[f].type in ("string", "text") else table[f]

    fields = [table._id, table.uuid] + [table[f] for f in rule.primary + rule.secondary]
    query_extra = (table.deleted != True) if rule.ignore_deleted and "deleted" in table.fields else None  # noqa: E712
    for i, f in enumerate(rule.primary[1:], 1):  # the other primary fields narrow it too (a first one such as an
        values = sorted({p[i] for p, _ in offered.values()}, key=str)  # organisation is shared by thousands)
        if len(values) <= 900:
            query_extra = column(f).belongs(values) if query_extra is None else (query_extra & column(f).belongs(values))
    here = {}
    for chunk in chunks(sorted({p[0] for p, _ in offered.values()}, key=str)):
        query = column(first).belongs(chunk) if query_extra is None else (column(first).belongs(chunk) & query_extra)
        for r in db(query).select(*fields, orderby=table._id, cacheable=True):  # (plain rows: no lazy sets)
            primary = tuple(key(table[f], r[f]) for f in rule.primary)
            here.setdefault(primary, []).append((r.uuid, {f: key(table[f], r[f]) for f in rule.secondary}))
    found = {}
    for u, (primary, secondary) in offered.items():
        for local, theirs in here.get(primary, ()):
            if all(v is None or theirs.get(f) == v for f, v in secondary.items()):
                found[u] = local
                break
    return found


class Aliases:
    """The aliases of one import: {table: {incoming uuid: local uuid}}, and how unknown uuids are matched."""

    def __init__(self, db, matcher=None, keys=True, rules=None):
        self.db, self.matcher, self.keys = db, matcher, keys
        self.rules = rules if keys else None  # tablename -> FieldRule or None (the host's field rules)
        self.known, self.key_fields, self.field_rules = {}, {}, {}

    @classmethod
    def for_import(cls, db, settings, tables=()):
        """The aliases an import into `tables` uses, or None when there is nothing to translate (no alias
        here, and no key or rule to match by)."""
        match = settings.get("match") or DEFAULT_MATCH
        if match not in MATCHES:
            raise ValueError("plugins.sync.match must be one of %s, not %r" % (", ".join(MATCHES), match))
        matcher = settings.get("matcher") if match == "eden" else None
        aliases = cls(db, matcher, keys=match != "uuid", rules=settings.get("key_rules"))
        if matcher is None and not any(aliases.matches(t) for t in tables) and db(db.plugin_sync_alias).isempty():
            return None
        return aliases

    def keys_of(self, tablename):
        """The unique key fields unknown uuids of this table are matched by ([] with match = "uuid")."""
        if tablename not in self.key_fields:
            self.key_fields[tablename] = unique_keys(self.db[tablename]) if self.keys else []
        return self.key_fields[tablename]

    def rule_of(self, tablename):
        """The host's field rule of this table (None: none, or match = "uuid")."""
        if tablename not in self.field_rules:
            self.field_rules[tablename] = self.rules(tablename) if self.rules is not None else None
        return self.field_rules[tablename]

    def matches(self, tablename):
        """Whether unknown uuids of this table are matched at all: by the host's rule, a unique key, a field rule."""
        return self.matcher is not None or bool(self.keys_of(tablename)) or self.rule_of(tablename) is not None

    def match(self, tablename, rows, resolve):
        """{incoming uuid: local uuid}: the host's rule first (match = "eden"), then the unique key, then the
        field rule."""
        found = dict(self.matcher(tablename, rows, resolve)) if self.matcher is not None else {}
        rest = [r for r in rows if r.get("uuid") not in found]
        if rest and self.keys_of(tablename):
            found.update(key_matches(self.db, tablename, rest, self.keys_of(tablename)))
            rest = [r for r in rest if r.get("uuid") not in found]
        rule = self.rule_of(tablename) if rest else None
        if isinstance(rule, FieldRule):
            found.update(rule_matches(self.db, tablename, rest, rule, resolve))
        elif rule is not None:  # the host's own rule for this table, row by row (matcher's signature)
            found.update(rule(tablename, rest, resolve))
        return found

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
        table here.  The host's matcher, `matcher(tablename, rows, resolve)` with
        rows as {column: cell}, answers {incoming uuid: local uuid}; `resolve(target,
        uuids)` -> {uuid: local id} (the merge's uuid_to_id) is for the
        references it compares.
        """
        known = self.of_table(tablename)
        i = columns.index("uuid")
        changed, unknown, matching = False, [], self.matches(tablename)
        for line, cells in raw:
            local = known.get(cells[i])
            if local is not None:
                cells[i] = local
                changed = True
            elif matching:
                unknown.append(cells)
        if unknown:
            here = lookup([cells[i] for cells in unknown])
            unknown = [cells for cells in unknown if cells[i] not in here]
        if unknown:
            try:
                found = self.match(tablename, [dict(zip(columns, cells)) for cells in unknown], resolve)
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
