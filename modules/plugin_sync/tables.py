"""The table policy: which tables sync, in which order, under which conflict rule.

Default: every table that has a `uuid` and a `modified_on` field (in Sahana Eden:
those of its enabled modules, minus the DERIVED ones and its map set-up, see
eden/model.py), minus lookup lists that are identical
on every site, site-specific tables, and never -- whatever a request, a file or a
setting asks -- the tables that hold secrets or local bookkeeping (NEVER_PREFIXES,
NEVER_TABLES).  Within a synced table, columns that hold secrets or local ids
never travel either (local_fields): not exported, ignored on import; and the
columns that travel but are local, not content (LOCAL_META: id, mci,
created_by, modified_by) are defined here once for the merge, the pages and
the tests.  Which columns hold the host's own local ids (realm_entity, a
record's super keys, gis_location.path) and which tables are its super tables
is the host's data model, not policy: entities.Model, asked here.
The host app overrides the rest through settings (see models/plugin_sync.py).
"""
import re

from . import entities
from .errors import TableNotSynced
from .fileformat import EMAIL, UUID

DEFAULT_LOOKUP_TABLES = ("org_organisation_type",)  # a plain host's default (Eden: none, see eden.py)
DEFAULT_SITE_TABLES = ("s3_setting", "gis_config")
# Sahana Eden: by default every table of Eden's enabled modules that holds data people enter (eden/model.py
# reads them from Eden's own model), minus the never-list, this site's map configuration (EDEN_SITE_TABLES) and
# the derived tables (DERIVED).  Overridable: plugins.sync.tables, plugins.sync.exclude.
EDEN_SITE_TABLES = (  # this site's map set-up, beside gis_config and the layers (never-list): markers, projections...
    "gis_marker", "gis_projection", "gis_style", "gis_symbology", "gis_menu", "gis_poi_feed")
# Derived: rows that Eden's own code makes from other records (a table's onaccept/ondelete, its scheduled tasks),
# never a person's entry.  The receiver makes its own from what arrives, as Eden would: a copy from the sender
# would double them (Eden makes them here too) and carry the sender's local ids (pr_role.path).  The rule, read
# in Eden's code: a table whose only writers are Eden's functions (an `insert` in an onaccept or a task), with no
# form of its own.  A table that Eden's code fills AND people enter (hrm_job_title_human_resource, asset_log,
# supply_item_pack, supply_catalog_item: Eden's onaccept adds a default row, a person adds more) holds entered
# data: it syncs.  So does a log of events that Eden's onaccept writes where the event happens (org_site_event,
# cr_shelter_registration_history: a shelter registration's changes of status): made once, at the instance where
# the event happened, it travels; the receiver would make one row for the last state only.  (table, reason);
# "remade" tells what the sync makes on arrival.
DERIVED = (
    ("pr_affiliation", "made by Eden's onaccept of sites, staff, branches, teams and groups: remade on arrival "
                       "(affiliations.py)"),
    ("pr_role", "the affiliations' roles, made with them by Eden: remade on arrival (affiliations.py)"),
    ("pr_person_availability_rule", "made by Eden's onaccept of a person's availability from its schedule "
                                    "(where pr.availability_json_rules is on): remade on arrival (eden/derived.py)"),
    ("hrm_trainings", "made by Eden's onaccept of trainings (a person's courses as one list): remade on arrival "
                      "(eden/derived.py)"),
    ("inv_stock_card", "made by Eden's stock functions (where inv.stock_cards is on): remade on arrival as Eden's "
                       "import makes it (the stock's onimport, eden/derived.py)"),
    ("inv_stock_log", "a stock card's movements, made with it: remade on arrival with the card (eden/derived.py)"),
    ("stats_demographic_aggregate", "computed by Eden's aggregation task from demographic data, which an "
                                    "administrator runs (Eden's import does not either): each instance its own"),
    ("disease_stats_aggregate", "computed by Eden's aggregation task"),
    ("vulnerability_aggregate", "computed by Eden's aggregation task"),
    ("vulnerability_aggregated_indicator", "computed by Eden's aggregation task"),
    ("gis_cache", "Eden's map cache"), ("gis_cache2", "Eden's map cache"),
    ("gis_feature_query", "Eden's map cache of feature queries"),
)
DERIVED_TABLES = tuple(t for t, _ in DERIVED)
# Never synced, whatever the settings say (hard-coded; enforced by export and import):
NEVER_PREFIXES = (
    "auth_",  # accounts, password hashes, roles, memberships, consent
    "web2py_session", "scheduler_",  # sessions, the scheduler's jobs
    "plugin_sync_",  # the plugin's own bookkeeping (the identity travels in each file's header)
    "sync_",  # Eden's own sync: sync_repository (passwords, client secrets, tokens), sync_task...
    "msg_",  # messaging: channels with passwords and tokens, their settings, and the messages
    "setup_",  # Eden's deployment set-up: cloud keys, server private keys, SMTP passwords
    "s3_",  # Eden's system tables: s3_permission (ACL), audit, import jobs, settings
    "gis_layer_",  # GIS layers: WMS/ArcREST passwords, Bing/Google/OpenWeatherMap API keys
)
NEVER_TABLES = (
    "sync_instance",  # the peers, with the logins used there (the sender's identity travels apart)
    "pr_person_user", "org_organisation_user",  # links of records to local user accounts
    "gis_config",  # a site's map configuration (with API keys)
)
# Columns that never travel, in any synced table: secrets (password-type fields and
# names like these), and the host's local ids, which its data model names (entities.Model.local_fields:
# in Eden a record's own super keys, realm_entity, approved_by, gis_location.path).
SECRET_COLUMN = re.compile(
    r"(^|_)(password|passwd|pwd|secret|token|apikey|api_key|private_key|secret_key|access_key|auth_key|"
    r"maps_key)($|_)")
# Columns that travel but are local, not content: the local id, the local edit counter and the
# local accounts that wrote or own the record differ between instances by design.  Never compared by the
# merge, never shown as a difference (the columns of local_fields() do not even travel).
LOCAL_META = ("id", "mci", "created_by", "modified_by", "owned_by_user", "owned_by_group")
# The columns that grant rights on a record in Eden (its owner account and owner role; the realm is
# recomputed, see entities.py): a file's values are taken only where an administrator chose so
# (setting accept_owners); otherwise the receiver decides them (merge: what a new record gets).
OWNER_FIELDS = ("owned_by_user", "owned_by_group")
POLICIES = ("newer", "this", "other", "master")


def is_never_synced(db, tablename):
    """Tables that no setting can make sync: secrets, sessions, local links, our bookkeeping, and the host's
    super tables (their records are made by the receiver: entities.py; a reference to one travels as the
    super record's uuid, its instance record's)."""
    return (tablename.startswith(NEVER_PREFIXES) or tablename in NEVER_TABLES
            or entities.is_super_table(db, tablename))


def is_secret_field(field):
    return field.type == "password" or bool(SECRET_COLUMN.search(field.name.lower()))


def local_fields(db, table):
    """The columns of a synced table that never travel: secrets and the host's local ids (see above)."""
    skip = entities.local_fields(db, table)
    return [f.name for f in table if f.name != "id" and (f.name in skip or is_secret_field(f))]


def travelling_fields(db, table):
    """The columns that sync, in table order."""
    local = set(local_fields(db, table))
    return [f for f in table.fields if f not in local]


def is_syncable(table):
    """A table can sync when its records carry an identity and a version time."""
    return "uuid" in table.fields and "modified_on" in table.fields


def accepts_owners(settings):
    """Whether a file's owners (OWNER_FIELDS) are taken: only if an administrator set accept_owners."""
    return bool(settings.get("accept_owners"))


def lookup_tables(settings):
    """Lookup lists identical on every site (None: the default)."""
    value = settings.get("lookup_tables")
    return DEFAULT_LOOKUP_TABLES if value is None else value


def site_tables(settings):
    value = settings.get("site_tables")
    return DEFAULT_SITE_TABLES if value is None else value


def excluded_tables(settings):
    """Tables excluded by settings: lookups, site-specific, and explicit exclusions."""
    return set(lookup_tables(settings)) | set(site_tables(settings)) | set(settings.get("exclude") or ())


def define_tables(settings, names):
    """Have the host define these synced tables, where it defines them on demand (settings.define_tables, set by
    the Eden adapter for a request that starts with none defined); `names` back."""
    define = settings.get("define_tables") if settings is not None else None
    if define is not None and names:
        define(list(names))
    return names


def synced_tables(db, settings, only=None):
    """The tables that sync, parents before children (references first).

    `only` restricts to a subset; asking for a table the policy never syncs
    raises TableNotSynced rather than silently dropping or exporting it.
    """
    if settings.get("synced_order") is not None and not only:  # the host's answer for a request that defines no table
        return list(settings.synced_order)
    excluded = excluded_tables(settings)
    if settings.get("tables") is not None:
        names = [t for t in settings.tables if t in db.tables]
    else:
        names = [t for t in db.tables if is_syncable(db[t])]
    names = [t for t in names if not is_never_synced(db, t) and t not in excluded and is_syncable(db[t])]
    if only:
        for t in only:
            if t not in names:
                reason = ("is never synced (secrets or local bookkeeping)" if is_never_synced(db, t)
                          else "is not a table here" if t not in db.tables else "is never synced by the table policy")
                raise TableNotSynced("table %r %s" % (t, reason), table=t)
        names = [t for t in names if t in only]
    return dependency_order(db, names)


def references(table):
    """(field, referenced table, is_list) for every reference of a table, by field order."""
    refs = []
    local = set(local_fields(table._db, table))
    for field in table:
        if field.name in local:  # never travels: no reference to resolve
            continue
        ftype = field.type
        if ftype.startswith("reference "):
            refs.append((field.name, ftype[10:].split(".")[0].strip(), False))
        elif ftype.startswith("list:reference "):
            refs.append((field.name, ftype[15:].split(".")[0].strip(), True))
    refs += [(f, target, False) for f, target in entities.ownership_refs(table._db, table) if f not in local]
    return refs


def annotations(db, table):
    """The extra `@uuid` columns of a table: one per reference, plus deleted_rb / deleted_fk.

    Returns [(column name, field name, referenced table, kind)], kind in
    'ref' (joined), 'list' (list:reference) and 'fk' (deleted_fk JSON).
    """
    out = [(f + _suffix(db, ref), f, ref, "list" if is_list else "ref") for f, ref, is_list in references(table)]
    if "deleted_rb" in table.fields:
        out.append(("deleted_rb" + UUID, "deleted_rb", table._tablename, "ref"))
    if "deleted_fk" in table.fields:
        out.append(("deleted_fk" + UUID, "deleted_fk", None, "fk"))
    return [a for a in out if a[2] is None or a[2] in db.tables]


def _suffix(db, tablename):
    """@uuid, or @email for a table whose records are named by email (users, in Eden)."""
    return EMAIL if tablename in db.tables and entities.key_of(db, tablename) == "email" else UUID


def dependency_order(db, names):
    """Order tables so that referenced tables come first where possible (cycles allowed); a reference to a super
    table (a staff record's site) waits for its instance tables (offices, facilities...: their records make the
    super records, and their affiliations are made set-based only before the staff's).  Each table's
    references are read once (a deployment's hundreds of tables: not once per table placed)."""
    instances = {}
    for t, supers in entities.model(db).supers.items():
        for sup in supers:
            instances.setdefault(sup.table, set()).add(t)
    deps = {t: {d for _, r, _ in references(db[t]) for d in (instances.get(r, set()) | {r}) if d != t} for t in names}
    remaining, left = list(names), set(names)
    ordered = []
    while remaining:
        for t in remaining:
            if not deps[t] & left:
                break
        else:
            t = remaining[0]  # a cycle: any order works, the merge resolves it
        ordered.append(t)
        remaining.remove(t)
        left.discard(t)
    return ordered


def derived_reason(tablename):
    """Why a derived table stays home (DERIVED), or None."""
    return dict(DERIVED).get(tablename)


NEVER_REASONS = (  # (prefix or name, reason): the first match explains
    ("auth_", "accounts, groups and password hashes are local to this instance"),
    ("web2py_session", "sessions"),
    ("scheduler_", "the scheduler's jobs"),
    ("sync_instance", "sync bookkeeping (the sender's identity travels in each file)"),
    ("plugin_sync_", "sync bookkeeping (the sender's identity travels in each file)"),
    ("sync_", "Eden's own sync: peer passwords, client secrets, tokens"),
    ("msg_", "messaging channels (passwords, tokens) and messages"),
    ("setup_", "deployment set-up: cloud keys, server private keys"),
    ("s3_", "Eden's system tables: permissions, audit, import jobs"),
    ("gis_layer_", "GIS layers: passwords and API keys"),
    ("gis_config", "this site's map configuration and API keys"),
    ("pr_person_user", "links to local user accounts"),
    ("org_organisation_user", "links to local user accounts"),
)


def never_reason(tablename):
    """Why a table of the never-list never syncs (NEVER_REASONS), or None."""
    for name, why in NEVER_REASONS:
        if tablename.startswith(name):
            return why
    return None


def exclusion(db, settings, tablename):
    """(kind, reason) why a table does not sync, or None if it does: for pages, CLI and reports."""
    s = settings
    why = never_reason(tablename)
    if why:
        return "never", why
    if entities.is_super_table(db, tablename):
        return "never", "a super-entity of the host's data model: the receiver makes its records (issue 12)"
    if tablename in lookup_tables(s):
        return "lookup list", "identical on every site: references to it are matched by uuid"
    if tablename in site_tables(s):
        return "site-specific", "this site's configuration and API keys"
    if tablename in (s.exclude or ()):
        return "excluded", "excluded by settings (plugins.sync.exclude)"
    if tablename in (s.get("left_out") or {}):  # the host's default left it out (Eden: derived, map set-up...)
        return tuple(s.left_out[tablename])
    if tablename in db.tables and not is_syncable(db[tablename]):
        return "no identity", "no uuid or modified_on field"
    if tablename not in db.tables:
        return "not here", "not defined in this instance (an Eden module switched off?)"
    if s.get("tables") is not None and tablename not in s.tables:
        return "not listed", "not in plugins.sync.tables"
    return None


def conflict_policy(settings, tablename):
    """The conflict rule of a table: newer (default), this, other or master."""
    policy = (settings.policy or {}).get(tablename, settings.default_policy or "newer")
    if policy not in POLICIES:
        raise ValueError("unknown conflict policy %r for table %s (use one of %s)" % (policy, tablename, POLICIES))
    return policy
