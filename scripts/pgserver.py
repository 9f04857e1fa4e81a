"""A private PostgreSQL 15 cluster: throwaway for the tests and the benchmarks, kept for `make run-production`.

initdb into a folder (as the `postgres` user when run as root), start it on its
own port of 127.0.0.1, hand out databases, stop it.  A throwaway cluster (the
tests') lives in a temp dir with durability off and is removed when stopped; a
kept one (`folder=`: the production stack's, under .runtime/) is durable and
stays for the next start.
"""
import os
import shutil
import socket
import subprocess
import tempfile

PG_BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")


def remove_later(path):
    """Remove a folder in a process of its own, not waited for: a test session's databases and Eden copies
    are gigabytes of small files, and removing them is no part of the session's result (seconds at its end)."""
    subprocess.Popen(["rm", "-rf", "--", path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """A throwaway PostgreSQL 15 cluster on 127.0.0.1:<port>, trust auth."""

    def __init__(self, folder=None):
        self.kept = folder is not None
        self.dir = os.path.abspath(folder) if self.kept else tempfile.mkdtemp(prefix="eden-pg-")
        os.makedirs(self.dir, exist_ok=True)
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        self.counter = 0
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")

    def _run(self, *cmd):
        cmd = [os.path.join(PG_BIN, cmd[0])] + list(cmd[1:])
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=self.dir)

    def start(self):
        if not os.path.exists(os.path.join(PG_BIN, "initdb")):
            raise RuntimeError("PostgreSQL 15 not found in %s (set PG_BIN)" % PG_BIN)
        if not os.path.exists(os.path.join(self.data, "PG_VERSION")):
            self._run("initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
                      *([] if self.kept else ["--no-sync"]))
        opts = "-p %d -k %s -c listen_addresses=127.0.0.1 -c max_connections=300" % (self.port, self.dir)
        if not self.kept:  # a test server: nothing of it must survive a crash
            opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", self.data, "-o", opts, "-l", os.path.join(self.dir, "log"), "-w", "start")
        return self

    def stop(self):
        self._run("pg_ctl", "-D", self.data, "-m", "fast" if self.kept else "immediate", "-w", "stop")
        if not self.kept:
            remove_later(self.dir)

    def database(self, name):
        """The URI of database `name`, made if it is not there yet (a kept cluster's, across starts)."""
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres")
        conn.autocommit = True
        cursor = conn.cursor()
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if cursor.fetchone() is None:
            cursor.execute('CREATE DATABASE "%s"' % name)
        conn.close()
        return "postgres://postgres@127.0.0.1:%d/%s" % (self.port, name)

    def new_database(self, prefix="eden_test", template=None):
        """A new database (a copy of `template` if given: no connection to it may be open)."""
        import psycopg2

        self.counter += 1
        name = "%s_%d" % (prefix, self.counter)
        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres")
        conn.autocommit = True
        copy = ' TEMPLATE "%s"' % template if template else ""
        conn.cursor().execute('CREATE DATABASE "%s"%s' % (name, copy))
        conn.close()
        return "postgres://postgres@127.0.0.1:%d/%s" % (self.port, name)
