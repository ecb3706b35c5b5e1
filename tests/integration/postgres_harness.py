"""A real PostgreSQL 15 server for integration tests, in a temporary folder on a free
loopback port. initdb refuses to run as root, so as root the server runs as the `postgres`
system user (runuser); as any other user it runs as that user.

    with PostgresServer() as pg:
        pg.url            # postgresql://cap:cap-test-password@127.0.0.1:PORT/cap
        pg.psql("select 1")
        pg.stop(); pg.start()   # restart on the same port and data

Python 3 standard library only.
"""

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time

USER = "cap"
PASSWORD = "cap-test-password"
DATABASE = "cap"


def postgres_bin_dir():
    """The folder of initdb and pg_ctl: PG_BIN_DIR, else the newest Debian install."""
    if os.environ.get("PG_BIN_DIR"):
        return os.environ["PG_BIN_DIR"]
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found: run scripts/install-deps "
                           "(package postgresql-15) or set PG_BIN_DIR")
    return os.path.dirname(found[-1])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self):
        self.bin = postgres_bin_dir()
        self.root = tempfile.mkdtemp(prefix="cap-pg-")
        self.data = os.path.join(self.root, "data")
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
            os.chmod(self.root, 0o700)
        self._init()
        self.start()
        self._create_role()

    # -- running commands as the server's user

    def _run(self, args, check=True, input=None):
        cmd = (["runuser", "-u", "postgres", "--"] if self.as_root else []) + args
        return subprocess.run(cmd, check=check, capture_output=True, text=True, input=input)

    def _init(self):
        pwfile = os.path.join(self.root, "pw")
        with open(pwfile, "w") as f:
            f.write("postgres-superuser\n")
        if self.as_root:
            shutil.chown(pwfile, "postgres", "postgres")
        self._run([os.path.join(self.bin, "initdb"), "-D", self.data, "-U", "postgres",
                   "--auth=scram-sha-256", "--pwfile", pwfile, "-E", "UTF8",
                   "--locale=C.UTF-8"])
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                    f"unix_socket_directories = '{self.root}'\nfsync = off\n"
                    "max_connections = 200\n")

    def _create_role(self):
        self.psql_admin(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'")
        self.psql_admin(f"CREATE DATABASE {DATABASE} OWNER {USER}")

    # -- life cycle

    def start(self):
        self._run([os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-w", "-t", "30",
                   "-l", os.path.join(self.root, "server.log"), "start"])

    def stop(self, mode="fast"):
        self._run([os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-w", "-m", mode,
                   "stop"], check=False)

    def close(self):
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- talking to it

    @property
    def url(self):
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def url_without_credentials(self):
        return f"postgresql://127.0.0.1:{self.port}/{DATABASE}"

    @property
    def jdbc_url(self):
        return f"jdbc:postgresql://127.0.0.1:{self.port}/{DATABASE}"

    def psql(self, sql):
        """Runs SQL as the test role; returns psql's unaligned output (rows, '|'-separated)."""
        env = dict(os.environ, PGPASSWORD=PASSWORD)
        out = subprocess.run(["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h",
                              "127.0.0.1", "-p", str(self.port), "-U", USER, "-d", DATABASE,
                              "-c", sql], check=True, capture_output=True, text=True, env=env)
        return out.stdout.strip()

    def psql_admin(self, sql):
        env = dict(os.environ, PGPASSWORD="postgres-superuser")
        return subprocess.run(["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h",
                               "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d",
                               "postgres", "-c", sql], check=True, capture_output=True,
                              text=True, env=env).stdout.strip()

    def log_text(self):
        try:
            with open(os.path.join(self.root, "server.log")) as f:
                return f.read()
        except OSError:
            return ""


class SharedPostgres:
    """A test case mixin: one PostgresServer (cls.pg) for all the tests of the class."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pg = PostgresServer()

    @classmethod
    def tearDownClass(cls):
        cls.pg.close()
        super().tearDownClass()


if __name__ == "__main__":
    t = time.time()
    with PostgresServer() as pg:
        print(pg.url, pg.psql("select version()"), f"{time.time() - t:.2f}s")
