"""The records here of a batch's uuids, read by one query builder (`Locals.select`), and the "unchanged"
rule, each in the form of the row-wise path (`Locals.rows`, `same`: for classify, which then tells a
later stamp and other owners from "unchanged") and of the column-wise one (`Locals.stored`,
`Locals.all_same`: for fast_batch, a whole batch at once).
"""
from collections import namedtuple
from operator import itemgetter

Local = namedtuple("Local", "id values")  # a record here: its id, its values normalised, in plan.fields order


class Locals:
    """Reads the records here of a batch's uuids, for one import."""

    def __init__(self, ctx, ids):
        self.ctx, self.ids, self.sqlite = ctx, ids, ctx.sqlite

    def select(self, plan, uuids, columns):
        """The rows (`columns`, SQL expressions) of the records of these uuids here."""
        table, rows = plan.table, []
        for where, params in self.ctx.in_list(table.uuid._rname, uuids):
            rows.extend(self.ctx.execute("SELECT %s FROM %s WHERE %s" % (", ".join(columns), table._rname, where),
                                         params))
        return rows

    def rows(self, plan, uuids):
        """{uuid: Local} of the records here, normalised as the file's values are parsed (values.normaliser)."""
        table, out = plan.table, {}
        for raw in self.select(plan, uuids, [table._id._rname] + [table[f]._rname for f in plan.fields]):
            vals = list(raw[1:])
            for i, fn in plan.normalisers:
                if vals[i] is not None:
                    vals[i] = fn(vals[i])
            out[vals[plan.uuid_pos]] = Local(raw[0], vals)
        return out

    def stored(self, plan, uuids):
        """The records here as rows of what all_same() compares: the uuid, then the fields of
        plan.same_positions as stored (on SQLite dates as their stored text: no converter).

        Of a table that others refer to, the same query reads the ids too, for the uuid -> id cache:
        the tables merged after it then resolve their references without a query of their own.
        """
        table = plan.table
        dates = {pos for pos, _, _, _ in plan.text_dates} if self.sqlite else ()
        cols = [table.uuid._rname] + [("CAST(%s AS TEXT)" if pos in dates else "%s") % table[plan.fields[pos]]._rname
                                      for pos in plan.same_positions]
        with_ids = self.ids.is_referenced(table)
        rows = self.select(plan, uuids, cols + [table._id._rname] if with_ids else cols)
        if with_ids:
            self.ids.cache_ids(plan.tablename, {r[0]: r[-1] for r in rows})
            rows = [r[:-1] for r in rows]
        return rows

    def all_same(self, plan, cols, texts, uuids, stored, nulls):
        """Whether every incoming row equals its record here, content, modified_on and owners (stricter than
        `same`: a batch it passes is unchanged row by row too).  `stored`: stored(); `nulls`: [(row, Nulled)].

        Both sides as tuples sorted by uuid, in one list equality (in C); stored values as the driver returns
        them: equal raw values are equal normalised ones, and a value stored in another form (a boolean kept
        as 't', a date with a time) only sends the batch to the row-wise merge, which normalises.  On SQLite a
        date/datetime column compares as text when the incoming one is canonical (as pydal stores it).
        """
        positions = plan.same_positions
        if any(null.pos in positions for _, null in nulls):  # keep_local_unsynced would take the local value
            return False
        if self.sqlite:
            for pos, _, _, _ in plan.text_dates:
                if pos in positions and pos not in texts:
                    return False
            incoming = [texts.get(pos) or cols[pos] for pos in positions]
        else:
            incoming = [cols[pos] for pos in positions]
        stored.sort(key=_first)  # by uuid alone: unique on both sides, and cheaper than whole tuples
        return stored == sorted(zip(uuids, *incoming), key=_first)


def same(plan, values, local_values):
    """The content rule (row form): the compared fields equal (modified_on and NOT_COMPARED aside)."""
    return plan.same(values) == plan.same(local_values)


_first = itemgetter(0)
