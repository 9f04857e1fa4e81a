"""A record's name for people: what a conflict or a preview shows instead of a bare uuid.

The table's own `format` (a "%(name)s" string or a function, as Eden's s3_fullname)
applied to the record, else a name-like field; never an error (a page must render).
"""
NAME_FIELDS = ("name", "title", "code", "value", "email", "subject")
MAX = 80


def _from_fields(values):
    """A name from name-like fields of a dict of values (first + last name, name, title...)."""
    person = " ".join(str(values[k]) for k in ("first_name", "middle_name", "last_name")
                      if values.get(k) not in (None, "", "<NULL>"))
    if person:
        return person
    for key in NAME_FIELDS:
        if values.get(key) not in (None, "", "<NULL>"):
            return str(values[key])
    return None


def record_name(db, tablename, values=None, record=None):
    """The name of a record: `record` (a Row of tablename) through the table's format, else `values` (a dict)."""
    name = None
    if record is not None and tablename in db.tables:
        fmt = getattr(db[tablename], "_format", None)
        try:
            if callable(fmt):
                name = fmt(record)
            elif isinstance(fmt, str) and "%(" in fmt:
                name = fmt % record
        except Exception:  # a format needing fields we did not read, or lazy Eden lookups
            name = None
        if name is not None and not isinstance(name, str):
            name = str(name)
        if not name or not name.strip() or name.strip() == "None":
            name = _from_fields(record.as_dict() if hasattr(record, "as_dict") else dict(record))
    if not name and values:
        name = _from_fields(values)
    name = (name or "").strip()
    return name[:MAX - 1] + "\u2026" if len(name) > MAX else name or None


def names_by_uuid(db, tablename, uuids):
    """{uuid: name} of the records of `tablename` with these uuids (one query)."""
    if tablename not in db.tables or "uuid" not in db[tablename].fields or not uuids:
        return {}
    table = db[tablename]
    rows = db(table.uuid.belongs(list(uuids))).select()
    return {r.uuid: record_name(db, tablename, record=r) for r in rows}
