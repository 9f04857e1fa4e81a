"""Demo data for the host app (placeholder: admin account only)."""


def ensure_admin(db, auth, email, password):
    """Create the admin account and group on first start; return the user id."""
    user = db(db.auth_user.email == email).select().first()
    if user is None:
        user_id = db.auth_user.insert(
            first_name="Admin", last_name="Eden", email=email,
            password=db.auth_user.password.validate(password)[0],
        )
    else:
        user_id = user.id
    group_id = auth.id_group("admin") or auth.add_group("admin", "Sahana administrators")
    if not auth.has_membership(group_id, user_id):
        auth.add_membership(group_id, user_id)
    return user_id


def load_demo(db, folder):
    return {}
