"""Who may call the peer endpoints: accounts in the sync group (or the admin group).

A peer logs in with HTTP Basic as an ordinary web2py account of *this*
instance.  Members of `settings.peer_group` ("sync" by default) may use the
peer endpoints (identity, changes, receive, call/xmlrpc) and nothing else;
members of `settings.admin_group` may use them too, besides the admin pages.
Give each peer its own account, so that one can be locked out alone.

An account of the sync group speaks for one instance: its `sync_instance`
row names the account (column `account`).  Only that instance's files are
accepted from it, and only that instance's checkpoint is told to it; an
account bound to no instance may read (identity, changes) but not push.
Accounts of the admin group are administrators: their files are taken like
files an administrator imports on the Import page.
"""

PEER_GROUP = "sync"


def peer_groups(settings):
    """The groups whose members may call the peer endpoints."""
    return [g for g in (settings.get("peer_group") or PEER_GROUP, settings.get("admin_group") or "admin") if g]


def may_sync(db, user_id, settings):
    """Is this account a member of a group that may call the peer endpoints?"""
    group, member = db.auth_group, db.auth_membership
    query = (member.user_id == user_id) & (member.group_id == group.id) & group.role.belongs(peer_groups(settings))
    return not db(query).isempty()


def peer_account(db, settings, email, password, first_name="Sync", last_name="peer", peer=None):
    """Create (or reset the password of) an account that peers log in with, in the sync group; its id.

    The engine's way to make one, for the CLI and scripts; an admin may as
    well create the account on the usual pages and add it to the group.
    `peer`: the base_uuid of the instance that logs in with it (see bind).
    """
    user, group, member = db.auth_user, db.auth_group, db.auth_membership
    hashed, error = user.password.validate(password)
    if error:
        raise ValueError("password refused for %s: %s" % (email, error))
    row = db(user.email == email).select(user.id, limitby=(0, 1)).first()
    if row is None:
        user_id = user.insert(email=email, password=hashed, first_name=first_name, last_name=last_name)
    else:
        user_id = row.id
        db(user.id == user_id).update(password=hashed, registration_key="")
    role = settings.get("peer_group") or PEER_GROUP
    found = db(group.role == role).select(group.id, limitby=(0, 1)).first()
    group_id = found.id if found else group.insert(role=role, description="Peer instances (plugin_sync)")
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


def is_admin(db, user_id, settings):
    group, member = db.auth_group, db.auth_membership
    query = (member.user_id == user_id) & (member.group_id == group.id) & (
        group.role == (settings.get("admin_group") or "admin"))
    return not db(query).isempty()
