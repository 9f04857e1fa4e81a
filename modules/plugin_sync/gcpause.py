"""The cyclic garbage collector paused for the length of a bulk pass (export, merge).

A pass over 100,000 rows allocates millions of short-lived containers (the
CSV reader's rows, the batches' tuples), all freed by reference counting: the
collector's passes over the heap find nothing to free, yet cost about a tenth
of an import (see tests/bench).  Cycles made meanwhile, by this thread or
another, are collected at the first pass after it.
"""
import functools
import gc


def paused(fn):
    """`fn` with the collector paused (restored after it; nested and concurrent calls are safe:
    only the call that paused it turns it back on)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        was_on = gc.isenabled()
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            if was_on:
                gc.enable()
    return wrapper
