"""The host's field validators on arrival: a value its own import would refuse is refused here too.

Where the host's model says so (entities.Model.validates: Eden), each batch
the merge writes is checked against the fields' `requires` before it is
written, the way Eden's S3XML import checks a record (S3XML.record, then
S3ImportItem.validate): every value the record carries through the field's
validators, in their order; a value of None is not checked (Eden's exchange
leaves such a field out), except that a record the merge creates must have a
value in a mandatory field (Eden's `_mandatory_fields`: no default, validators
not starting with IS_EMPTY_OR, and they refuse ""); a deleted record is not
checked.  The first refusal is a BadValue naming table, line and column; the
import is rolled back as for any bad value.  Only refused, never rewritten:
what a validator would make of a value (IS_LOWER, a float from "1,5") is not
stored, so that both instances keep the same value.

Which validators apply (`applies`): those that judge the value alone.  Left
to the merge: every validator of a reference (IS_ONE_OF, IS_IN_DB,
IS_LOCATION...: they look the referenced record up, which the merge resolves
itself, by uuid, also when it comes later in the file), and any validator
that queries the database (IS_NOT_IN_DB, IS_NOT_ONE_OF: uniqueness here is
the merge's identity, by uuid and aliases; the database's UNIQUE constraints
still refuse with the line).  Left as Eden's import leaves them: dates and
times (Eden parses them instead of validating; the file's cells are read
strictly already), uploads (the bundle's checks), passwords and blobs.

Column-wise, so that a batch costs a few calls, not one per cell: a
validator whose accepted values are an interval (IS_INT_IN_RANGE,
IS_FLOAT_IN_RANGE, IS_LAT, IS_LON...) is asked of the column's smallest and
largest values only; IS_LENGTH (no minimum) of its longest value only; any
other once per distinct value in the import (the verdicts are kept).  Only a
column where one of those fails is looked at row by row, to name the line.
"""
from .entities import model
from .errors import BadValue

# types whose validators Eden's import does not run (dates: parsed; uploads: the file; blobs: skipped)
UNCHECKED_TYPES = ("id", "date", "datetime", "time", "upload", "password", "blob")
# validators that look records up in the database (by class, also a subclass; or by their dbset)
DATABASE = ("IS_IN_DB", "IS_NOT_IN_DB", "IS_ONE_OF_EMPTY", "IS_NOT_ONE_OF", "IS_LOCATION", "IS_LAT_LON",
            "IS_SITE_SELECTOR", "IS_PERSON_DETAILS", "IS_ADD_PERSON_WIDGET2")
# validators whose accepted numbers are an interval: its ends decide for everything between
INTERVALS = ("IS_INT_IN_RANGE", "IS_FLOAT_IN_RANGE", "IS_DECIMAL_IN_RANGE", "IS_LAT")
MISSING = object()


def _names(validator):
    return {c.__name__ for c in type(validator).__mro__}


def _nested(validator):
    """The validators IS_EMPTY_OR wraps (its `other`), else []."""
    other = getattr(validator, "other", None) if "IS_EMPTY_OR" in _names(validator) else None
    return [] if other is None else list(other) if isinstance(other, (list, tuple)) else [other]


def queries_database(validator):
    return bool(_names(validator) & set(DATABASE)) or hasattr(validator, "dbset") or any(
        queries_database(v) for v in _nested(validator))


def applies(field):
    """The validators of `field` the merge runs (see the module's docstring): [] if none."""
    ftype = str(field.type)
    if ftype in UNCHECKED_TYPES or ftype.startswith(("reference", "big-reference", "list:reference")):
        return []
    requires = field.requires or []
    requires = list(requires) if isinstance(requires, (list, tuple)) else [requires]
    return [v for v in requires if callable(v) and not queries_database(v)]


def _shape(validators):
    """'interval', 'length' or None: what a column's extreme values tell of all its values."""
    inner = []
    for v in validators:
        inner += _nested(v) if "IS_EMPTY_OR" in _names(v) else [v]
    if inner and all(_names(v) & set(INTERVALS) for v in inner):
        return "interval"
    if inner and all("IS_LENGTH" in _names(v) and not getattr(v, "minsize", 0) for v in inner):
        return "length"
    return None


class FieldCheck:
    """One field's validators, with the verdicts given so far in this import ({value: error or None})."""

    def __init__(self, field, validators, char_bool):
        self.name, self.validators = field.name, validators
        ftype = str(field.type)
        self.shape = _shape(validators) if ftype in ("integer", "bigint", "double", "float") or \
            ftype.startswith("decimal") or ftype in ("string", "text") else None
        self.form = _eden_form(ftype, char_bool)
        self.verdicts = {}
        self.mandatory = field.default is None and not (validators and "IS_EMPTY_OR" in _names(validators[0])) \
            and self.error("") is not None

    def error(self, value):
        """The validators' error for this value as the field holds it (None: accepted), as Eden asks them."""
        try:
            verdict = self.verdicts.get(value, MISSING)
        except TypeError:  # (not hashable)
            return self.judge(value)
        if verdict is MISSING:
            verdict = self.verdicts[value] = self.judge(value)
        return verdict

    def judge(self, value):
        value = self.form(value)
        try:
            for validator in self.validators:
                value, error = validator(value)
                if error:
                    return str(error)
        except Exception:  # a validator that fails on its own: accepted, as Eden's s3_validate does
            return None
        return None

    def first_refused(self, col, rows):
        """(row index, error) of the first value of `col` at these rows that the validators refuse, or None."""
        values = [col[i] for i in rows if col[i] is not None]
        if not values:
            return None
        if self.shape == "interval" and all(type(v) in (int, float) for v in values):
            if self.error(min(values)) is None and self.error(max(values)) is None:
                return None
        elif self.shape == "length" and all(type(v) is str for v in values):
            if self.error(max(values, key=len)) is None:
                return None
        else:
            try:
                if all(self.error(v) is None for v in set(values)):
                    return None
            except TypeError:  # (values not hashable: row by row below)
                pass
        for i in rows:
            if col[i] is not None:
                error = self.error(col[i])
                if error is not None:
                    return i, error
        return None


def _eden_form(ftype, char_bool):
    """The value as Eden's S3XML import hands it to the validators: numbers as their text, booleans as
    booleans, list types as lists, text as it is."""
    if ftype in ("integer", "bigint", "double", "float") or ftype.startswith("decimal"):
        return str
    if ftype == "boolean":
        return (lambda v: v in ("T", True)) if char_bool else bool
    if ftype.startswith("list:"):
        from pydal.helpers.methods import bar_decode_integer, bar_decode_string

        decode = bar_decode_integer if ftype.startswith("list:integer") else bar_decode_string
        return lambda v: decode(v) if isinstance(v, str) else v
    return lambda v: v


class Checks:
    """The validators of an import's tables (per table, made at its first batch); `check` per batch."""

    def __init__(self, db, char_bool=False):
        self.db, self.char_bool = db, char_bool
        self.on = model(db).validates
        self.plans = {}  # {(table, fields): [(position, FieldCheck)]}

    def of(self, plan):
        key = (plan.tablename, tuple(plan.fields))
        if key not in self.plans:
            table, out = plan.table, []
            for pos, name in enumerate(plan.fields):
                validators = applies(table[name])
                if validators:
                    out.append((pos, FieldCheck(table[name], validators, self.char_bool)))
            self.plans[key] = out
        return self.plans[key]

    def check(self, plan, columns, lines, created):
        """Refuse (BadValue: table, line, column) the first value of the batch that the fields' validators refuse.

        `columns`: the batch's values column by column in plan.fields order
        (more may follow); `lines`: each row's line; `created`: new records
        (a mandatory field must have a value) or updates."""
        if not self.on or not lines:
            return
        checks = self.of(plan)
        if not checks:
            return
        rows = self.alive(plan, columns, len(lines))
        for pos, check in checks:
            col = columns[pos]
            if created and check.mandatory and None in col:
                i = next((i for i in rows if col[i] is None), None)
                if i is not None:
                    raise BadValue("a value is required (the field's validator: %s)" % check.error(""),
                                   table=plan.tablename, line=lines[i], column=check.name)
            refused = check.first_refused(col, rows)
            if refused is not None:
                i, error = refused
                raise BadValue("%s is refused by the field's validator: %s" % (_shown(col[i]), error),
                               table=plan.tablename, line=lines[i], column=check.name)

    def alive(self, plan, columns, n):
        """The batch's rows that are not deleted (Eden's import does not validate a deleted record)."""
        pos = plan.pos.get("deleted")
        if pos is None:
            return range(n)
        col = columns[pos]
        dead = (True, "T")
        if not any(v in dead for v in col):
            return range(n)
        return [i for i in range(n) if col[i] not in dead]


def _shown(value):
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
