"""Who may use the plugin: administrators (pages and peer endpoints) and peer accounts (peer endpoints only).

Roles are `auth_group` rows.  A setting names a role by its uid or by its name:

- In Sahana Eden a role carries a NOT NULL `uuid` (its uid): the administrator is
  `uuid='ADMIN'` (role "Administrator", Eden's S3_SYSTEM_ROLES), and the peer role
  is made once with uid `SYNC_PEER` (eden.py creates it through
  `auth.s3_create_role`, the way Eden makes roles).
- A plain web2py host has no uid: its roles are matched by name, case-insensitively
  (the group `admin` is the administrators' role `ADMIN`).

A peer logs in with HTTP Basic as an ordinary account of *this* instance that is
a member of `settings.peer_group` (default "SYNC_PEER"): it may use the peer
endpoints (identity, changes, receive, call/xmlrpc) and nothing else; members of
`settings.admin_group` (default "ADMIN") may use them too, besides the admin pages.
Give each peer its own account, so that one can be locked out alone.

An account of the sync group speaks for one instance: its `sync_instance`
row names the account (column `account`).  Only that instance's files are
accepted from it, and only that instance's checkpoint is told to it; an
account bound to no instance may read (identity, changes) but not push.
Accounts of the admin group are administrators: their files are taken like
files an administrator imports on the Import page.
"""
import base64

from . import throttle
from .errors import Denied

ADMIN_GROUP = "ADMIN"
PEER_GROUP = "SYNC_PEER"
PEER_ROLE_NAME = "Sync Peer"  # the role's name where roles carry a uid (Eden)
PEER_ROLE_DESCRIPTION = "Peer instances that sync with this one (plugin_sync): the peer endpoints only"


def admin_group(settings):
    return settings.get("admin_group") or ADMIN_GROUP


def peer_group(settings):
    return settings.get("peer_group") or PEER_GROUP


def peer_groups(settings):
    """The roles whose members may call the peer endpoints."""
    return [g for g in (peer_group(settings), admin_group(settings)) if g]


def role_query(db, names):
    """auth_group rows named (uid, or role name case-insensitively) by any of `names`."""
    group = db.auth_group
    query = group.role.lower().belongs([n.lower() for n in names])
    if "uuid" in group.fields:
        query |= group.uuid.belongs(list(names))
    if "deleted" in group.fields:
        query &= group.deleted != True  # noqa: E712 (pydal)
    return query


def is_member(db, user_id, names):
    """Is this account a member of one of these roles?"""
    if not user_id:
        return False
    group, member = db.auth_group, db.auth_membership
    query = role_query(db, names) & (member.user_id == user_id) & (member.group_id == group.id)
    if "deleted" in member.fields:
        query &= member.deleted != True  # noqa: E712
    return not db(query).isempty()


def is_admin(db, user_id, settings):
    """May this account use the admin pages?"""
    return is_member(db, user_id, [admin_group(settings)])


def may_sync(db, user_id, settings):
    """Is this account a member of a role that may call the peer endpoints?"""
    return is_member(db, user_id, peer_groups(settings))


def find_role(db, name):
    row = db(role_query(db, [name])).select(db.auth_group.id, orderby=db.auth_group.id, limitby=(0, 1)).first()
    return row.id if row else None


def ensure_peer_role(db, settings):
    """The peer role's id, made if missing (with its uid where roles carry one; Eden's adapter makes it first)."""
    name = peer_group(settings)
    found = find_role(db, name)
    if found:
        return found
    group = db.auth_group
    if "uuid" in group.fields:  # Eden: NOT NULL uid, a readable name
        return group.insert(uuid=name, role=PEER_ROLE_NAME if name == PEER_GROUP else name,
                            description=PEER_ROLE_DESCRIPTION)
    return group.insert(role=name, description=PEER_ROLE_DESCRIPTION)


def peer_account(db, settings, email, password, first_name="Sync", last_name="peer", peer=None):
    """Create (or reset the password of) an account that peers log in with, in the peer role; its id.

    The engine's way to make one, for the CLI and scripts; an admin may as
    well create the account on the usual pages and give it the role.
    `peer`: the base_uuid of the instance that logs in with it (see bind).
    """
    user, member = db.auth_user, db.auth_membership
    hashed, error = user.password.validate(password)
    if error:
        raise ValueError("password refused for %s: %s" % (email, error))
    row = db(user.email == email).select(user.id, limitby=(0, 1)).first()
    if row is None:
        user_id = user.insert(email=email, password=hashed, first_name=first_name, last_name=last_name)
    else:
        user_id = row.id
        db(user.id == user_id).update(password=hashed, registration_key="")
    group_id = ensure_peer_role(db, settings)
    if db((member.user_id == user_id) & (member.group_id == group_id)).isempty():
        member.insert(user_id=user_id, group_id=group_id)
    if peer:
        bind(db, peer, user_id)
    db.commit()
    return user_id


def bind(db, base_uuid, user_id):
    """Bind the account `user_id` to the instance `base_uuid` (its row is made if new); one instance per account."""
    from .peers import find_peer, this_instance

    if base_uuid == this_instance(db).base_uuid:
        raise ValueError("%s is this instance's own base_uuid: an account speaks for a peer" % base_uuid)
    table = db.sync_instance
    db((table.account == user_id) & (table.base_uuid != base_uuid)).update(account=None)
    row = find_peer(db, base_uuid)
    if row is None:
        table.insert(base_uuid=base_uuid, uuid="urn:uuid:%s" % base_uuid, account=user_id, sync_count=0)
    else:
        row.update_record(account=user_id)


def account_id(db, email):
    """The id of the local account `email`, or ValueError."""
    row = db(db.auth_user.email == email).select(db.auth_user.id, limitby=(0, 1)).first()
    if row is None:
        raise ValueError("no account %s here: create it first (eden.py sync account %s --password ...)" % (email, email))
    return row.id


def speaks_for(db, user_id):
    """The base_uuid of the instance this account is bound to, or None."""
    table = db.sync_instance
    row = db(table.account == user_id).select(table.base_uuid, limitby=(0, 1)).first()
    return row.base_uuid if row else None


# ------------------------------------------------------------------ who is calling (HTTP Basic)


def basic_email(authorization):
    """The e-mail of an HTTP Basic `Authorization` header, or None (absent, malformed, bad base64)."""
    if (authorization or "")[:6].lower() != "basic ":
        return None
    try:
        return base64.b64decode(authorization[6:].strip()).decode("utf-8").split(":", 1)[0] or None
    except Exception:
        return None


def basic_login(db, settings, authorization, address, check):
    """The account of a request's HTTP Basic credentials, or None; guesses throttled (throttle.py).

    check(): the host's own password check of the request (web2py: auth.basic), the user row or None.
    A blocked account-and-address or address is Denied (429) before its password is checked.
    """
    email = basic_email(authorization)
    who = throttle.keys(email, address)
    delay = throttle.wait(db, who)
    if delay:
        raise Denied(429, "Too many wrong logins for this account or address: try again in %d s." % delay,
                     "TooManyRequests", {"Retry-After": str(delay)})
    try:
        user = check() if email else None
    except Exception:
        user = None
    if user:
        throttle.succeeded(db, who)
    else:
        throttle.failed(db, settings, who)
    return user


def peer_login(db, settings, authorization, address, check):
    """The account a peer endpoint serves: HTTP Basic credentials of a member of a peer group, else Denied."""
    groups = " or ".join("'%s'" % g for g in peer_groups(settings))
    if (authorization or "")[:6].lower() != "basic ":
        raise Denied(401, "Send HTTP Basic credentials of an account in the %s group." % groups, "Unauthorized")
    user = basic_login(db, settings, authorization, address, check)
    if not user:
        raise Denied(401, "Wrong e-mail or password (HTTP Basic).", "Unauthorized")
    if not may_sync(db, user.id, settings):
        raise Denied(403, "%s is not a member of the %s group: it may not sync with this instance."
                     % (user.email, groups), "Forbidden")
    return user


def checkpoint_owner(db, settings, user_id, asked=None):
    """The instance whose checkpoint this caller may see: the one its account is bound to (an admin: any)."""
    bound = speaks_for(db, user_id)
    if bound or not is_admin(db, user_id, settings):
        return bound
    return asked or None


def sender_of(db, settings, user):
    """The instance a push must come from: the account's (an administrator's account: None, an administrator's
    file); an account bound to no instance may not push (Denied 403)."""
    bound = speaks_for(db, user.id)
    if bound or is_admin(db, user.id, settings):
        return bound
    raise Denied(403, "%s is bound to no peer instance here, so it may not push: an administrator binds it "
                 "(eden.py sync account %s --password ... --peer <its base_uuid>, or the Peers page's "
                 "'Its account here')." % (user.email, user.email), "Forbidden")
