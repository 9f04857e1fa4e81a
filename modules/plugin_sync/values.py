"""Field values between the three forms they take: CSV cell, database value, wire.

The engine reads and writes rows with raw SQL (batches, executemany), so it
needs for each field type: a parser from the CSV cell to the value the
database driver returns (so a stored row and an incoming row compare with a
plain `==`), and a formatter from that value to the cell pydal writes.
The formats are pydal's own: `<NULL>`, `True`/`False`, `YYYY-MM-DD HH:MM:SS`,
`|1|2|` for list types.
"""
import datetime

from .csvstream import NULL

_fromisoformat = datetime.datetime.fromisoformat
_TRUE = ("T", "True", "true", "1", "t", "TRUE", "on", "yes")


def dialect(db):
    """What the adapter stores: placeholder style and how booleans are kept."""
    char_bool = db._adapter.dialect.types["boolean"].upper().startswith("CHAR")
    placeholder = "?" if db._dbname.startswith("sqlite") else "%s"
    return placeholder, char_bool


def parser(ftype, char_bool):
    """A function: CSV cell -> database value for a field of type `ftype` (raises ValueError)."""
    if ftype in ("id", "integer", "bigint") or ftype.startswith("reference"):
        return _int
    if ftype in ("double", "float") or ftype.startswith("decimal"):
        return _float
    if ftype == "boolean":
        return _bool_char if char_bool else _bool
    if ftype == "datetime":
        return _datetime
    if ftype == "date":
        return _date
    if ftype == "time":
        return _time
    if ftype.startswith("list:reference") or ftype.startswith("list:integer"):
        return _int_list
    return _text


def _text(cell):
    return None if cell == NULL else cell


def _int(cell):
    if cell == NULL or not cell.strip():
        return None
    return int(cell)


def _float(cell):
    if cell == NULL or not cell.strip():
        return None
    return float(cell)


def _bool_char(cell):
    if cell == NULL or cell == "":
        return None
    return "T" if cell in _TRUE else "F"


def _bool(cell):
    if cell == NULL or cell == "":
        return None
    return cell in _TRUE


def _datetime(cell):
    if len(cell) == 19 and cell[10] in " T":  # the canonical form pydal writes: parse it as it is
        try:
            return _fromisoformat(cell)
        except ValueError:
            pass
    if cell == NULL or not cell.strip():
        return None
    return datetime.datetime.fromisoformat(cell.strip().replace("T", " ")[:19])


def _date(cell):
    if cell == NULL or not cell.strip():
        return None
    return datetime.date.fromisoformat(cell.strip()[:10])


def _time(cell):
    if cell == NULL or not cell.strip():
        return None
    return datetime.time.fromisoformat(cell.strip()[:8])


def _int_list(cell):
    if cell == NULL or not cell.strip("| "):
        return [] if cell != NULL else None
    return [int(x) for x in cell.strip("|").split("|") if x.strip()]


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
        return None  # pydal stores an empty list as '||'; the merge writes NULL: the same value
    if ftype == "boolean":
        truthy = value in (True, "T", "t", 1, "1")
        return ("T" if truthy else "F") if char_bool else truthy
    if ftype == "datetime" and isinstance(value, str):
        return _datetime(value)
    if ftype == "datetime" and value.microsecond:
        return value.replace(microsecond=0)
    if ftype == "date" and isinstance(value, str):
        return _date(value)
    if ftype in ("double", "float") and not isinstance(value, float):
        return float(value)
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
    if ftype in ("double", "float"):
        return lambda v: v if type(v) is float else general(v)
    if ftype.startswith("list:"):
        return general  # an empty list stored as '||' is NULL (the merge writes NULL): not a change
    return None


def _iso_column(width, fromisoformat, parse):
    """A column of canonical ISO cells (all `width` long) through the C conversion; any other, cell by cell."""
    def column(col):
        if set(map(len, col)) == {width}:
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
                return list(map(int, col))
            except ValueError:  # <NULL>, blanks, or a bad value: the cell-by-cell rules
                if nulls(col):
                    return [None] * len(col)
                return list(map(parse, col))
        return ints
    if parse is _float:
        def floats(col):
            try:
                return list(map(float, col))
            except ValueError:
                if nulls(col):
                    return [None] * len(col)
                return list(map(parse, col))
        return floats
    if parse is _datetime:
        return _iso_column(19, _fromisoformat, parse)
    if parse is _date:
        return _iso_column(10, _date_fromisoformat, parse)
    if parse in (_bool, _bool_char):
        usual = {cell: parse(cell) for cell in _TRUE + ("F", "False", "false", "0", "f", "FALSE", NULL, "")}

        def booleans(col):
            if all(map(usual.__contains__, col)):
                return list(map(usual.__getitem__, col))
            return list(map(parse, col))
        return booleans
    return lambda col: list(map(parse, col))


_date_fromisoformat = datetime.date.fromisoformat


def is_text(parse):
    """True for the parser that only maps <NULL> to None (the merge does that for a whole row at once)."""
    return parse is _text


def formatter(ftype):
    """A function: database value -> CSV cell, as pydal's export_to_csv_file writes it."""
    if ftype == "boolean":
        return _fmt_bool
    if ftype in ("datetime", "date", "time"):
        return _fmt_time
    return _fmt_plain


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


def is_plain_formatter(fmt):
    """True for the formatter that only maps None to <NULL>."""
    return fmt is _fmt_plain


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


def column_cells(col, fmt=None):
    """A column of database values -> its CSV cells as csv.writer writes them (quoted where needed).

    `fmt` is the column's formatter (None: the plain one, None -> <NULL>).
    Whole-column checks pick C-level paths: canonical stored date texts
    are the cells themselves, booleans map through a dict, numbers through
    str(); only a column holding a comma, quote or line break is quoted
    cell by cell (QUOTE_MINIMAL: only the cells that hold one).
    """
    if fmt is None or fmt is _fmt_plain:
        col = [NULL if v is None else v for v in col] if None in col else col
    elif fmt is _fmt_datetime_text or fmt is _fmt_date_text:
        width = 19 if fmt is _fmt_datetime_text else 10
        marks = ((10, " "),) if width == 19 else ((4, "-"), (7, "-"))  # what the formatter checks
        if None in col or not is_canonical(col, width, marks):
            col = list(map(fmt, col))
    elif fmt is _fmt_bool:
        try:
            col = list(map(_BOOL_CELLS.__getitem__, col))
        except (KeyError, TypeError):
            col = list(map(fmt, col))
    else:
        col = list(map(fmt, col))
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


def copy_escape(text):
    """A value as a cell of PostgreSQL's COPY text format (backslash, tab and line breaks escaped)."""
    return str(text).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
