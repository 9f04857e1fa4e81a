"""A bad link on 127.0.0.1: a TCP proxy that drops the connection in flight every N bytes.

The link counts the bytes it carries, both ways and over all connections, as
a radio link would; whenever the count crosses the next multiple of `every`,
the connection carrying that byte is cut there (both sides see it drop).
It tells the bytes of connections that were cut (`wasted`) from those of
connections that ended by themselves (`delivered`).  Used by the cut-link
test (tests/test_batched_sync.py) and the benchmark (tests/bench/bench_resume.py).
"""
import socket
import threading

from test_network import Proxy


class DroppingLink(Proxy):
    """test_network's Proxy (its listening socket, url, close()), with a link's drops instead of its rules."""

    def __init__(self, target_port, every=None):
        self.every = every
        self.lock = threading.Lock()
        self.total = self.delivered = self.wasted = self.cuts = self.connections = 0
        self.on_cut = None  # called (in the proxy's thread) after each cut
        super().__init__(target_port)

    def reset(self, every=None):
        with self.lock:
            self.every = every
            self.total = self.delivered = self.wasted = self.cuts = self.connections = 0

    def handle(self, client):
        upstream = socket.create_connection(("127.0.0.1", self.target))
        conn = dict(bytes=0, cut=False)
        with self.lock:
            self.connections += 1
        done = threading.Event()
        threading.Thread(target=self.pump, args=(client, upstream, conn, done), daemon=True).start()
        self.pump(upstream, client, conn, done)
        done.wait(5)
        with self.lock:
            if conn["cut"]:
                self.wasted += conn["bytes"]
            else:
                self.delivered += conn["bytes"]
        for s in (client, upstream):
            try:
                s.close()
            except OSError:
                pass
        if conn["cut"] and self.on_cut is not None:
            self.on_cut()

    def take(self, conn, n):
        """How many of the next n bytes pass before the link drops (n: all of them)."""
        with self.lock:
            if conn["cut"]:
                return 0
            allowed = n
            if self.every:
                boundary = (self.total // self.every + 1) * self.every
                allowed = min(n, boundary - self.total)
            self.total += allowed
            conn["bytes"] += allowed
            if allowed < n:
                conn["cut"] = True
                self.cuts += 1
            return allowed

    def pump(self, src, dst, conn, done):
        try:
            while not done.is_set():
                data = src.recv(65536)
                if not data:
                    break
                n = self.take(conn, len(data))
                if n:
                    dst.sendall(data[:n])
                if n < len(data):
                    break
        except OSError:
            pass
        finally:
            self.hang_up(src, dst, done)
