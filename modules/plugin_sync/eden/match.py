"""Records known here under another uuid, found by Eden's own deduplicate rules (match = "eden"):
an incoming row offered to the table's rule in the shape of Eden's S3ImportItem."""
import uuid

from gluon import current
from gluon.storage import Storage

from ..aliases import FieldRule, typed
from ..errors import MatchRuleError
from ..fileformat import NULL, UUID
from ..tables import references

METHOD = Storage(CREATE="create", UPDATE="update", DELETE="delete", MERGE="merge")  # S3ImportItem.METHOD
POLICY = Storage(THIS="THIS", OTHER="OTHER", NEWER="NEWER", MASTER="MASTER")  # S3ImportItem.POLICY


class _Job(object):
    """What a deduplicate rule reads of Eden's S3ImportJob: the job's other items (org's rule looks for a
    parent branch among them), its strategy and policies.  A sync offers one row at a time: no others."""

    def __init__(self):
        self.items, self.directory, self.references = Storage(), Storage(), []
        self.strategy = list(METHOD.values())
        self.update_policy = self.conflict_policy = POLICY.OTHER
        self.mandatory_fields, self.error, self.element = Storage(), None, None


class _Item(object):
    """An incoming row in the shape of Eden's S3ImportItem (modules/s3/s3import.py), as deduplicate rules
    read it (table, data, job, references, components...) and set it (id, method; error and accepted
    when a rule rejects the row).  What only an S3XML import has (its XML element) is None."""

    METHOD, POLICY = METHOD, POLICY

    def __init__(self, table, data, references=()):
        self.job = job = _Job()
        self.table, self.tablename, self.data = table, table._tablename, Storage(data)
        self.item_id = uuid.uuid4()
        self.uid = data.get("uuid")
        self.id, self.method, self.original, self.element, self.parent = None, METHOD.CREATE, None, None, None
        self.components, self.load_components, self.load_references, self.update = [], [], [], []
        self.references = list(references)
        self.skip, self.lock, self.conflict, self.modified, self.mci = False, False, False, True, 2
        self.error, self.accepted, self.permitted, self.committed = None, None, False, False
        self.mtime = data.get("modified_on")
        self.strategy, self.update_policy, self.conflict_policy = job.strategy, job.update_policy, job.conflict_policy
        self.onvalidation = self.onaccept = None
        job.items[self.item_id] = self


def _reference(field, target, local_id, uid):
    """One of S3ImportItem.references: the field and the record it names (here already: its local id)."""
    return Storage(field=field, element=None,
                   entry=Storage(tablename=target, element=None, uid=uid, id=local_id, item_id=None))


def matcher(tablename, rows, resolve):
    """{incoming uuid: local uuid} of the rows ({column: cell}) that the table's own `deduplicate` rule
    (the one Eden's S3XML import asks, often S3Duplicate) matches with a record here (match = "eden").

    A rule that fails on a row (it needs what only an S3XML import has) is a MatchRuleError naming
    the table, the rule and the row's uuid: the import stops, nothing written, rather than a row
    silently merged as new or an error without a place.
    """
    s3db = current.s3db
    rule = s3db.get_config(tablename, "deduplicate")
    if not rule:
        return {}
    table = s3db.table(tablename)
    refs = [(f, target) for f, target, is_list in references(table) if not is_list]
    ids = {f: resolve(target, {r.get(f + UUID) for r in rows} - {None, NULL, ""}) for f, target in refs}
    found = {}
    for row in rows:
        data, links = typed(table, row), []
        for f, target in refs:
            data[f] = ids[f].get(row.get(f + UUID))
            if data[f] is not None:
                links.append(_reference(f, target, data[f], row.get(f + UUID)))
        item = _Item(table, data, links)
        try:
            rule(item)
        except Exception as e:
            raise MatchRuleError(
                'Eden\'s deduplicate rule of %s (%s) cannot be used by match = "eden": it failed on record %s '
                '(%s: %s); nothing was written.  Set plugins.sync.match = "uuid", or give the table a rule '
                'that needs no S3XML import' % (tablename, _rule_name(rule), row.get("uuid"), type(e).__name__,
                                                (str(e).splitlines() or [""])[0][:200]),
                table=tablename, uuid=row.get("uuid")) from None
        if item.id:
            found[row["uuid"]] = item.id
    if not found:
        return {}
    here = current.db(table._id.belongs(set(found.values()))).select(table._id, table.uuid)
    uuids = {r[table._id.name]: r.uuid for r in here}
    return {u: uuids[i] for u, i in found.items() if i in uuids}


# The supply catalogue's tables: every Eden's templates load the same items into its catalogues (DefaultItems,
# StandardItems: hundreds of rows), each under uuids of its own, and their deduplicate rules are functions (an
# item by its code, else by name, unit and catalogue): applied by default, row by row, as Eden's import applies
# them.  Any other rule that is a function (persons', organisations') is a judgement: match = "eden".
CATALOGUE = ("supply_item_category", "supply_item", "supply_item_pack")


def field_rule(tablename):
    """The rule the default match = "keys" applies after the unique keys (aliases.py): the table's `deduplicate`
    as an aliases.FieldRule where it is Eden's S3Duplicate (field equality, set-based), the rule itself (through
    `matcher`, row by row) for the CATALOGUE; None for any other."""
    s3db = current.s3db
    rule = s3db.get_config(tablename, "deduplicate")
    if rule is not None and tablename in CATALOGUE:
        return matcher
    if rule is None or not any(c.__name__ == "S3Duplicate" for c in type(rule).__mro__):
        return None
    table = s3db.table(tablename)
    primary, secondary = sorted(getattr(rule, "primary", ()) or ()), sorted(getattr(rule, "secondary", ()) or ())
    if table is None or not primary or any(f not in table.fields for f in primary + secondary):
        return None  # (Eden's own import would raise SyntaxError on it)
    return FieldRule(tuple(primary), tuple(secondary), bool(getattr(rule, "ignore_case", True)),
                     bool(getattr(rule, "ignore_deleted", False)))


def _rule_name(rule):
    """A deduplicate rule as its source names it: org_OrganisationDuplicate.duplicate, S3Duplicate..."""
    owner = getattr(rule, "__self__", None)
    name = getattr(rule, "__qualname__", None) or type(rule).__name__
    return "%s.%s" % (owner.__name__, rule.__name__) if isinstance(owner, type) else name
