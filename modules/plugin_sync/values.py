"""Field values between the three forms they take: CSV cell, database value, wire.

The engine reads and writes rows with raw SQL (batches, executemany), so it
needs for each field type: a parser from the CSV cell to the value the
database driver returns (so a stored row and an incoming row compare with a
plain `==`), and a formatter from that value to the cell pydal writes.
The formats are pydal's own: `<NULL>`, `True`/`False`, `YYYY-MM-DD HH:MM:SS`,
`|1|2|` for list types.
"""
import ast
import base64
import datetime
import json
import math

from .fileformat import NULL

_fromisoformat = datetime.datetime.fromisoformat
_TRUE = ("T", "True", "true", "1", "t", "TRUE", "on", "yes")
_FALSE = ("F", "False", "false", "0", "f", "FALSE", "off", "no")
# what a boolean cell may hold (any case): pydal writes True/False; T/F, 1/0, yes/no, on/off are
# unambiguous too.  Anything else ('maybe') is refused: pydal would store it as True.
_TRUE_LOWER = frozenset(c.lower() for c in _TRUE)
_FALSE_LOWER = frozenset(c.lower() for c in _FALSE)
_UTC = datetime.timezone.utc


def parser(ftype, char_bool):
    """A function: CSV cell -> database value for a field of type `ftype` (raises ValueError)."""
    if ftype in ("id", "integer", "bigint", "big-id") or ftype.startswith("reference") \
            or ftype.startswith("big-reference"):
        return _int
    if ftype in ("double", "float") or ftype.startswith("decimal"):
        return _float
    if ftype == "json":
        return _json
    if ftype == "blob":
        return _blob
    if ftype == "boolean":
        return _bool_char if char_bool else _bool
    if ftype == "datetime":
        return _datetime
    if ftype == "date":
        return _date
    if ftype == "time":
        return _time
    if ftype.startswith("list:reference"):
        return _int_list
    if ftype.startswith("list:integer"):
        return _int_bars
    return _text


def _text(cell):
    return None if cell == NULL else cell


def _int(cell):
    if cell == NULL or not cell.strip():
        return None
    if "_" in cell:  # int() reads 1_000 as 1000: not what a file means
        raise ValueError(cell)
    return int(cell)


def _float(cell):
    if cell == NULL or not cell.strip():
        return None
    value = float(cell)
    if "_" in cell or not math.isfinite(value):  # 1_000, nan, inf: no database keeps them alike
        raise ValueError(cell)
    return value


def _bool_char(cell):
    value = _bool(cell)
    return None if value is None else "T" if value else "F"


def _bool(cell):
    if cell == NULL:  # an empty cell is refused: pydal writes a missing value as <NULL>, never as nothing
        return None
    if cell in _TRUE:
        return True
    if cell in _FALSE:
        return False
    lower = cell.strip().lower()
    if lower in _TRUE_LOWER:
        return True
    if lower in _FALSE_LOWER:
        return False
    raise ValueError(cell)


def flag_parser(char_bool):
    """The parser of `deleted`: never NULL, since Eden asks `deleted == False`, which NULL does not satisfy
    (such a record would be hidden from everyone, its administrator too): <NULL> or an empty cell is False."""
    return _flag_char if char_bool else _flag


def _flag(cell):
    return False if cell == NULL or cell == "" else _bool(cell)


def _flag_char(cell):
    return "T" if _flag(cell) else "F"


def _datetime(cell):
    if len(cell) == 19 and cell[10] in " T":  # the canonical form pydal writes: parse it as it is
        try:
            return _fromisoformat(cell)
        except ValueError:
            pass
    if cell == NULL or not cell.strip():
        return None
    value = _fromisoformat(cell.strip())  # ISO 8601 and nothing after it
    if value.tzinfo is not None:  # an offset: the same instant in UTC (what modified_on holds)
        try:
            value = value.astimezone(_UTC).replace(tzinfo=None)
        except OverflowError:
            raise ValueError(cell)
    return value.replace(microsecond=0)  # pydal keeps seconds


def _date(cell):
    if cell == NULL or not cell.strip():
        return None
    return datetime.date.fromisoformat(cell.strip())


def _time(cell):
    """A time of day as its text HH:MM:SS (what pydal stores on SQLite; PostgreSQL casts it)."""
    if cell == NULL or not cell.strip():
        return None
    value = datetime.time.fromisoformat(cell.strip())
    if value.tzinfo is not None:
        raise ValueError(cell)
    return value.strftime("%H:%M:%S")


def _blob(cell):
    """A blob travels as the base64 text pydal stores (checked: pydal fails to read anything else)."""
    if cell == NULL:
        return None
    try:
        base64.b64decode(cell, validate=True)
    except (ValueError, TypeError):
        raise ValueError(cell)
    return cell


def _blob_pydal(cell):
    """_blob for a plain pydal file: pydal's export writes a blob as the repr of its base64 bytes."""
    if len(cell) >= 3 and cell[:2] == "b'" and cell[-1] == "'":
        cell = cell[2:-1]
    return _blob(cell)


def _json_pydal(cell):
    """_json for a plain pydal file: pydal writes a JSON string value as its bare text."""
    try:
        return _json(cell)
    except ValueError:
        return json.dumps(cell)


def for_plain_pydal(parse):
    """The parser to use instead of `parse` in a plain pydal export (pydal's own ways of writing)."""
    return {_json: _json_pydal, _blob: _blob_pydal}.get(parse, parse)


def _int_list(cell):
    if cell == NULL or not cell.strip("| "):
        return [] if cell != NULL else None
    return [_int(x) for x in cell.strip("|").split("|") if x.strip()]


def _int_bars(cell):
    """list:integer: the stored text |1|2| (checked), || for an empty list."""
    values = _int_list(cell)
    return None if values is None else bar_encode(values)


def _json(cell):
    """JSON text as it is stored (canonical: keys sorted); pydal's own export writes Python's repr
    of the value (single quotes, True/None), which is read too."""
    if cell == NULL or not cell.strip():
        return None
    try:
        value = json.loads(cell)
    except ValueError:
        try:
            value = ast.literal_eval(cell.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise ValueError(cell)
    try:
        return json.dumps(value, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        raise ValueError(cell)


def bar_encode(values):
    """pydal's storage of list types: |1|2|."""
    return "|%s|" % "|".join(str(v) for v in values) if values else "||"


def bar_decode(text):
    if not text:
        return []
    return [int(x) for x in str(text).strip("|").split("|") if x.strip()]


def normalise(value, ftype, char_bool):
    """A value as the driver returned it -> the form `parser` produces (for comparing)."""
    if value is None:
        return None
    if ftype.startswith("list:") and not str(value).strip("| "):
        return "||"  # an empty list, as pydal stores it (NULL stays NULL)
    if ftype == "boolean":
        truthy = value in (True, "T", "t", 1, "1")
        return ("T" if truthy else "F") if char_bool else truthy
    if ftype == "datetime" and isinstance(value, str):
        return _datetime(value)
    if ftype == "datetime" and value.microsecond:
        return value.replace(microsecond=0)
    if ftype == "date" and isinstance(value, str):
        return _date(value)
    if (ftype in ("double", "float") or ftype.startswith("decimal")) and not isinstance(value, float):
        return float(value)
    if ftype == "time":
        return value if isinstance(value, str) and len(value) == 8 else _time(str(value))
    if ftype == "blob":
        return _fmt_blob(value)
    if ftype == "json":
        if isinstance(value, str):
            try:
                return json.dumps(json.loads(value), sort_keys=True)
            except ValueError:
                return value
        return json.dumps(value, sort_keys=True)
    if ftype.startswith("list:integer"):
        return bar_encode(bar_decode(value)) if isinstance(value, str) else bar_encode(value)
    return value


def normaliser(ftype, char_bool):
    """`normalise` for one field type, or None where the driver's value is already the parser's form.

    The merge normalises every stored value it compares: the types that need
    nothing (text, integers, references) are skipped, and a value already in
    the parser's form (the usual case) returns without the general call.
    """
    def general(value):
        return normalise(value, ftype, char_bool)

    if ftype == "boolean":
        if char_bool:
            return lambda v: v if v == "T" or v == "F" else general(v)
        return lambda v: v if v is True or v is False else general(v)
    if ftype == "datetime":
        return lambda v: v if type(v) is datetime.datetime and not v.microsecond else general(v)
    if ftype == "date":
        return lambda v: general(v) if isinstance(v, str) else v
    if ftype in ("double", "float") or ftype.startswith("decimal"):
        return lambda v: v if type(v) is float else general(v)
    if ftype in ("time", "json", "blob"):
        return general
    if ftype.startswith("list:"):
        return general  # an empty list stored as '||' is NULL (the merge writes NULL): not a change
    return None


def _iso_column(width, fromisoformat, parse, marks):
    """A column of canonical ISO cells (all `width` long, the separators where pydal writes them)
    through the C conversion; any other, cell by cell."""
    def column(col):
        if is_canonical(col, width, marks):
            try:
                return list(map(fromisoformat, col))
            except ValueError:
                pass
        return list(map(parse, col))
    return column


def column_parser(ftype, parse):
    """A function: a column of cells -> the list of `parse`d values, with C-level fast paths.

    Integers, floats, canonical dates and date-times convert in one map() over
    the builtin (same results as `parse` for such cells), booleans through a
    dict of the usual cells, a column of <NULL> at once; otherwise, or when a
    cell is not ordinary, map() over `parse` itself.  Raises ValueError/TypeError like `parse`.
    """
    def nulls(col):  # a column of <NULL> only (an unused reference, deleted_rb...)
        return col[0] == NULL and col.count(NULL) == len(col)

    if parse is _int:
        def ints(col):
            try:
                values = list(map(int, col))
            except ValueError:  # <NULL>, blanks, or a bad value: the cell-by-cell rules
                if nulls(col):
                    return [None] * len(col)
                return list(map(parse, col))
            if "_" in "".join(col):  # int() reads 1_000: the cell-by-cell rules refuse it
                return list(map(parse, col))
            return values
        return ints
    if parse is _float:
        def floats(col):
            try:
                values = list(map(float, col))
            except ValueError:
                if nulls(col):
                    return [None] * len(col)
                return list(map(parse, col))
            if not all(map(_isfinite, values)) or "_" in "".join(col):  # nan, inf, 1_000: refused
                return list(map(parse, col))
            return values
        return floats
    if parse is _datetime:
        return _iso_column(19, _fromisoformat, parse, ((4, "-"), (7, "-"), (10, " "), (13, ":"), (16, ":")))
    if parse is _date:
        return _iso_column(10, _date_fromisoformat, parse, ((4, "-"), (7, "-")))
    if parse in (_bool, _bool_char, _flag, _flag_char):
        usual = {cell: parse(cell) for cell in _TRUE + _FALSE + (NULL,) + (("",) if parse in (_flag, _flag_char) else ())}

        def booleans(col):
            if all(map(usual.__contains__, col)):
                return list(map(usual.__getitem__, col))
            return list(map(parse, col))
        return booleans
    return lambda col: list(map(parse, col))


_date_fromisoformat = datetime.date.fromisoformat
_isfinite = math.isfinite


def is_text(parse):
    """True for the parser that only maps <NULL> to None (the merge does that for a whole row at once)."""
    return parse is _text


def formatter(ftype):
    """A function: database value -> CSV cell, as pydal's export_to_csv_file writes it."""
    if ftype == "boolean":
        return _fmt_bool
    if ftype in ("datetime", "date", "time"):
        return _fmt_time
    if ftype == "json":
        return _fmt_json
    if ftype == "blob":
        return _fmt_blob
    return _fmt_plain


def _fmt_blob(value):
    """pydal keeps a blob as its base64 text; PostgreSQL's bytea hands it back as bytes."""
    if value is None:
        return NULL
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("ascii")
    return value


def _fmt_json(value):
    """JSON as JSON text (PostgreSQL's driver returns the decoded value; pydal's export writes its repr)."""
    if value is None:
        return NULL
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


def stored_text_formatter(ftype):
    """For SQLite, where a date/datetime column can be read as its stored text (no converter):
    a function text -> the cell `formatter` writes for the converted value, or None for other types.

    pydal stores 'YYYY-MM-DD HH:MM:SS' and 'YYYY-MM-DD': such text is the cell
    itself; any other text goes through the conversion pydal's reader applies
    (datetime/date.fromisoformat) and the usual formatter, so the cell is the same.
    """
    if ftype == "datetime":
        return _fmt_datetime_text
    if ftype == "date":
        return _fmt_date_text
    return None


def _fmt_datetime_text(text):
    if text is None:
        return NULL
    if len(text) == 19 and text[10] == " ":
        return text
    return _fmt_time(datetime.datetime.fromisoformat(text))


def _fmt_date_text(text):
    if text is None:
        return NULL
    if len(text) == 10 and text[4] == "-" and text[7] == "-":
        return text
    return _fmt_time(datetime.date.fromisoformat(text))


def _fmt_plain(value):
    return NULL if value is None else value


def _fmt_bool(value):
    if value is None:
        return NULL
    return "True" if value in (True, "T", "t", 1, "1") else "False"


def _fmt_time(value):
    if value is None:
        return NULL
    if isinstance(value, str):
        return value[:19]
    return value.isoformat()[:19].replace("T", " ")


_BOOL_CELLS = {None: NULL, True: "True", False: "False", "T": "True", "t": "True", "1": "True",
               "F": "False", "f": "False", "0": "False"}


def column_values(col, fmt=None):
    """A column of database values -> its cells (unquoted; a plain value as it is, None as <NULL>).

    `fmt` is the column's formatter (None: the plain one, None -> <NULL>).
    Whole-column checks pick C-level paths: canonical stored date texts
    are the cells themselves, booleans map through a dict.
    """
    if fmt is None or fmt is _fmt_plain:
        return [NULL if v is None else v for v in col] if None in col else list(col)
    if fmt is _fmt_datetime_text or fmt is _fmt_date_text:
        width = 19 if fmt is _fmt_datetime_text else 10
        marks = ((10, " "),) if width == 19 else ((4, "-"), (7, "-"))  # what the formatter checks
        if None in col or not is_canonical(col, width, marks):
            return list(map(fmt, col))
        return list(col)
    if fmt is _fmt_bool:
        try:
            return list(map(_BOOL_CELLS.__getitem__, col))
        except (KeyError, TypeError):
            pass
    return list(map(fmt, col))


def quoted_cells(col):
    """Cells -> their text as csv.writer writes them: numbers through str(); only a column holding
    a comma, quote or line break is quoted cell by cell (QUOTE_MINIMAL: only the cells that hold one)."""
    if set(map(type, col)) != {str}:
        col = list(map(str, col))
    text = "".join(col)
    if "," in text or '"' in text or "\r" in text or "\n" in text:
        col = [_csv_quote(c) if ("," in c or '"' in c or "\r" in c or "\n" in c) else c for c in col]
    return col


def _csv_quote(cell):
    return '"%s"' % cell.replace('"', '""')


def is_canonical(cells, width, marks):
    """Whether every text of `cells` (a non-empty column) is `width` long with the character c at
    each (position k, c) of `marks`: one C-level pass per mark over the joined column."""
    if set(map(len, cells)) != {width}:
        return False
    text = "".join(cells)
    return all(text[k::width].count(c) == len(cells) for k, c in marks)
