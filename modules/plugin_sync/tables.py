"""The table policy: which tables sync, in which order, under which conflict rule.

Default: every table that has a `uuid` and a `modified_on` field, minus lookup
lists that are identical on every site, site-specific tables (settings, GIS
keys), and never auth, sessions, the scheduler's or the plugin's own tables.
The host app overrides it through settings (see models/plugin_sync.py).
"""
from .errors import TableNotSynced

DEFAULT_LOOKUP_TABLES = ("org_organisation_type",)
DEFAULT_SITE_TABLES = ("s3_setting", "gis_config")
NEVER_PREFIXES = ("auth_", "web2py_session", "scheduler_", "plugin_sync_")
NEVER_TABLES = ("sync_instance",)
POLICIES = ("newer", "this", "other", "master")


def is_never_synced(tablename):
    """Tables that no setting can make sync: password hashes, sessions, our bookkeeping."""
    return tablename.startswith(NEVER_PREFIXES) or tablename in NEVER_TABLES


def is_syncable(table):
    """A table can sync when its records carry an identity and a version time."""
    return "uuid" in table.fields and "modified_on" in table.fields


def excluded_tables(settings):
    """Tables excluded by settings: lookups, site-specific, and explicit exclusions."""
    return set(settings.lookup_tables or ()) | set(settings.site_tables or ()) | set(settings.exclude or ())


def synced_tables(db, settings, only=None):
    """The tables that sync, parents before children (references first).

    `only` restricts to a subset; asking for a table the policy never syncs
    raises TableNotSynced rather than silently dropping or exporting it.
    """
    excluded = excluded_tables(settings)
    if settings.tables is not None:
        names = [t for t in settings.tables if t in db.tables]
    else:
        names = [t for t in db.tables if is_syncable(db[t])]
    names = [t for t in names if not is_never_synced(t) and t not in excluded and is_syncable(db[t])]
    if only:
        for t in only:
            if t not in names:
                reason = "is not a table here" if t not in db.tables else "is never synced by the table policy"
                raise TableNotSynced("table %r %s" % (t, reason), table=t)
        names = [t for t in names if t in only]
    return dependency_order(db, names)


def references(table):
    """(field, referenced table, is_list) for every reference of a table, by field order."""
    refs = []
    for field in table:
        ftype = field.type
        if ftype.startswith("reference "):
            refs.append((field.name, ftype[10:].split(".")[0].strip(), False))
        elif ftype.startswith("list:reference "):
            refs.append((field.name, ftype[15:].split(".")[0].strip(), True))
    return refs


def dependency_order(db, names):
    """Order tables so that referenced tables come first where possible (cycles allowed)."""
    remaining = list(names)
    ordered = []
    while remaining:
        for t in remaining:
            deps = {r for _, r, _ in references(db[t]) if r in remaining and r != t}
            if not deps:
                break
        else:
            t = remaining[0]  # a cycle: any order works, the merge resolves it
        ordered.append(t)
        remaining.remove(t)
    return ordered


def exclusion(db, settings, tablename):
    """(kind, reason) why a table does not sync, or None if it does: for pages, CLI and reports."""
    s = settings
    if tablename.startswith("auth_"):
        return "never", "accounts, groups and password hashes are local to this instance"
    if tablename.startswith("web2py_session"):
        return "never", "sessions"
    if tablename.startswith("scheduler_"):
        return "never", "the scheduler's jobs"
    if is_never_synced(tablename):
        return "never", "sync bookkeeping (the sender's identity travels in each file)"
    if tablename in (s.lookup_tables or ()):
        return "lookup list", "identical on every site: references to it are matched by uuid"
    if tablename in (s.site_tables or ()):
        return "site-specific", "this site's configuration and API keys"
    if tablename in (s.exclude or ()):
        return "excluded", "excluded by settings (plugins.sync.exclude)"
    if tablename in db.tables and not is_syncable(db[tablename]):
        return "no identity", "no uuid or modified_on field"
    if s.tables is not None and tablename not in s.tables:
        return "not listed", "not in plugins.sync.tables"
    return None


def conflict_policy(settings, tablename):
    """The conflict rule of a table: newer (default), this, other or master."""
    policy = (settings.policy or {}).get(tablename, settings.default_policy or "newer")
    if policy not in POLICIES:
        raise ValueError("unknown conflict policy %r for table %s (use one of %s)" % (policy, tablename, POLICIES))
    return policy
