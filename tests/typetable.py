"""A synced table with every pydal field type, defined on an instance's db (tests only)."""
import datetime
import decimal

from pydal import Field

from applications.eden.modules.plugin_sync.changes import install_triggers
from applications.eden.modules.plugin_sync.schema import ensure_uuid_indexes

TABLE = "test_alltypes"
KINDS = ("string", "text", "blob", "boolean", "integer", "bigint", "double", "decimal(12,4)", "date", "time",
         "datetime", "password", "json", "list:string", "list:integer", "list:reference", "reference")


def field_name(kind):
    return "f_" + kind.replace(":", "_").replace("(", "_").replace(",", "_").replace(")", "")


def define(env):
    """The table (meta fields like Sahana's, so it syncs) on `env`'s db, with capture installed."""
    db = env["db"]
    if TABLE in db.tables:
        return db[TABLE]
    fields = []
    for kind in KINDS:
        if kind == "reference":
            fields.append(Field(field_name(kind), "reference org_organisation"))
        elif kind == "list:reference":
            fields.append(Field(field_name(kind), "list:reference org_organisation"))
        else:
            fields.append(Field(field_name(kind), kind))
    meta = [db.org_organisation[f].clone() for f in ("uuid", "mci", "deleted", "deleted_fk", "deleted_rb",
                                                      "created_on", "modified_on", "created_by", "modified_by")]
    db.define_table(TABLE, *(fields + meta))
    db.commit()
    ensure_uuid_indexes(db, [TABLE])
    install_triggers(db, [TABLE])
    db.commit()
    return db[TABLE]


HOSTILE_TEXT = ['plain', 'quote " and \'', "new\nline\r\nCRLF", "pipe | and ||", "emoji \U0001F600 ok",
                "=SUM(A1:A2)", "+1", "-1", "@cmd", ",comma,", " lead and trail ", "<NULL>x", "", "END",
                "TABLE x", "back\\slash\ttab"]


def hostile_rows():
    """Rows of hostile values for every type (references filled in by the caller)."""
    rows = []
    dates = [datetime.date(1, 1, 1), datetime.date(9999, 12, 31), datetime.date(1899, 12, 31),
             datetime.date(1752, 9, 14), datetime.date(2024, 2, 29)]
    for k, text in enumerate(HOSTILE_TEXT):
        d = dates[k % len(dates)]
        rows.append(dict(
            f_string=text, f_text=text * 2, f_blob=b"\xff\x00" + text.encode("utf-8"),  # not UTF-8: pydal's export fails on a blob that is
            f_boolean=(None, True, False)[k % 3], f_integer=(-2**31 + 1, 2**31 - 1, 0, None)[k % 4],
            f_bigint=(2**62, -2**62, 7, None)[k % 4], f_double=(1e300, -1e-300, 0.1, 2.5, None)[k % 5],
            f_decimal_12_4=(decimal.Decimal("12345678.1234"), decimal.Decimal("-0.0001"), None)[k % 3],
            f_date=d, f_time=(datetime.time(0, 0, 0), datetime.time(23, 59, 59), datetime.time(12, 30, 1))[k % 3],
            f_datetime=datetime.datetime.combine(d, datetime.time(23, 59, 59) if k % 2 else datetime.time(0, 0, 0)),
            f_password=text, f_json=[{"a": text, "n": k}, text, k, None, {"nested": [1, 2.5, True]}][k % 5],
            f_list_string=[[text, "two"], [], ["a|b"], ["x"]][k % 4],
            f_list_integer=[[1, 2, 3], [], [2**40], [-5]][k % 4],
        ))
    return rows


def stored(kind, value, orgs):
    """A generated value as it is stored: a reference (or list of them) names the i-th of `orgs`."""
    if kind == "reference" and value is not None:
        return orgs[value]
    if kind == "list:reference" and value is not None:
        return [orgs[i] for i in value]
    return value
