"""The reader thread of the merge (PostgreSQL): the next batches read and parsed while the server works."""


class ReadAhead:
    """The chunks of a section, read and parsed (`parse`) in a thread one or two batches ahead.

    For PostgreSQL, where the merge mostly waits for the server (libpq calls
    release the GIL): reading and parsing the next batch overlaps the
    server's work on this one.  next() gives (chunk, parse(chunk)) in file
    order, then None; an exception of the reader (a format error after some
    rows, with its `partial`) is raised by next() in its place in the file,
    so errors come in the same order as without the thread.  Memory stays
    bounded (a queue of 2 batches).  close() stops the thread and waits for it.
    """

    def __init__(self, chunks, parse, depth=2):
        import queue
        import threading

        self.queue, self.empty = queue.Queue(depth), queue.Empty
        self.stop, self.done = threading.Event(), False
        self.thread = threading.Thread(target=self.run, args=(chunks, parse, queue.Full), daemon=True,
                                       name="plugin_sync read-ahead")
        self.thread.start()

    def run(self, chunks, parse, full):
        def put(item):
            while not self.stop.is_set():
                try:
                    self.queue.put(item, timeout=0.1)
                    return True
                except full:
                    continue
            return False

        try:
            for raw in chunks:
                if not put(("chunk", (raw, parse(raw)))):
                    return
            put(("end", None))
        except BaseException as e:  # handed to the merging thread, raised there in its place
            put(("error", e))

    def __iter__(self):
        return self

    def __next__(self):
        if self.done:
            raise StopIteration
        kind, value = self.queue.get()
        if kind == "chunk":
            return value
        self.done = True
        if kind == "error":
            raise value
        raise StopIteration

    def close(self):
        self.stop.set()
        while self.thread.is_alive():
            try:
                self.queue.get(timeout=0.1)
            except self.empty:
                pass
        self.thread.join()
