"""Who may call the peer endpoints: accounts in the sync group (or the admin group).

A peer logs in with HTTP Basic as an ordinary web2py account of *this*
instance.  Members of `settings.peer_group` ("sync" by default) may use the
peer endpoints (identity, changes, receive, call/xmlrpc) and nothing else;
members of `settings.admin_group` may use them too, besides the admin pages.
Give each peer its own account, so that one can be locked out alone.
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


def peer_account(db, settings, email, password, first_name="Sync", last_name="peer"):
    """Create (or reset the password of) an account that peers log in with, in the sync group; its id.

    The engine's way to make one, for the CLI and scripts; an admin may as
    well create the account on the usual pages and add it to the group.
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
    db.commit()
    return user_id
