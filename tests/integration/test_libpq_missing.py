"""An agent and capctl on a machine without a loadable libpq (Debian package libpq5): the
first use of a PostgreSQL address fails with a message naming the package, and nothing else
breaks (serving, SQLite, the shared folder, health, a later deployment).

The agent really runs without libpq: in a private mount namespace (`unshare --mount`, as
root) where the file the dynamic loader finds for libpq.so.5 is covered by an empty file. The
same configuration against the same PostgreSQL works in an agent started normally (the
control). Skipped, with the reason, only when unshare or bind mounts are not allowed here."""

import os
import re
import shutil
import subprocess
import tempfile
import unittest

from agent_harness import Agent, capctl_binary, configuration, ruleset, write_folder
from postgres_harness import PASSWORD, SharedPostgres

MESSAGE = "PostgreSQL needs libpq (Debian package libpq5): "


def libpq_path():
    """The file dlopen("libpq.so.5") maps, from the loader's cache (links resolved), or None
    when libpq is not installed at all."""
    r = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True)
    for line in r.stdout.splitlines():
        m = re.match(r"\s*libpq\.so\.5 \([^)]*\) => (\S+)", line)
        if m:
            return os.path.realpath(m.group(1))
    return None


EMPTY = None


def without_libpq():
    """Words that run a command with libpq.so.5 covered by an empty file (or none when
    libpq is not installed, so nothing needs covering)."""
    target = libpq_path()
    if target is None:
        return []
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount --bind "$1" "$2" && shift 2 && exec "$@"', "sh", EMPTY, target]


def namespace_unavailable():
    """Why the test cannot cover libpq here, or None."""
    global EMPTY
    if libpq_path() is None:
        return None
    if os.geteuid() != 0:
        return "covering libpq.so.5 needs root (unshare --mount and mount --bind)"
    if not shutil.which("unshare") or not shutil.which("mount"):
        return "unshare or mount is not installed"
    if EMPTY is None:
        fd, EMPTY = tempfile.mkstemp(prefix="cap-no-libpq-")
        os.close(fd)
    r = subprocess.run(without_libpq() + ["true"], capture_output=True, text=True)
    if r.returncode != 0:
        return "a private mount namespace with a bind mount is not allowed here: " + r.stderr.strip()
    return None


REASON = namespace_unavailable()


def probe_config():
    """/pg queries PostgreSQL, /lite SQLite, /write and /read the shared folder, /hello
    answers; a database error answers 502 with SQL_ERROR, /pg-bare leaves error unwired."""
    rules = {
        "route": {"rule": "Switch", "with": {"value": "${URI}"},
                  "then": {"/pg": ["pg"], "/pg-bare": ["pgBare"], "/lite": ["lite"],
                           "/write": ["write"], "/read": ["read"], "/hello": ["hello"]}},
        "pg": {"rule": "SqlQuery", "with": {"database": "pg", "sql": "SELECT 41 + 1 AS answer"},
               "then": {"ok": ["rows"], "error": ["sqlError"]}},
        "pgBare": {"rule": "SqlQuery", "with": {"database": "pg", "sql": "SELECT 1 AS one"},
                   "then": {"ok": ["rows"]}},
        "lite": {"rule": "SqlQuery", "with": {"database": "lite", "sql": "SELECT 7 AS seven"},
                 "then": {"ok": ["rows"], "error": ["sqlError"]}},
        "write": {"rule": "FileWrite", "with": {"path": "note.txt", "content": "kept"},
                  "then": {"ok": ["read"], "error": ["fileError"]}},
        "read": {"rule": "FileRead", "with": {"path": "note.txt"},
                 "then": {"ok": ["file"], "missing": ["fileError"], "error": ["fileError"]}},
        "hello": {"rule": "HttpRespond", "with": {"body": "hello"}},
        "rows": {"rule": "HttpRespond", "with": {"body": "${json(SQL_ROWS)}",
                                                  "content_type": "application/json"}},
        "file": {"rule": "HttpRespond", "with": {"body": "${FILE_CONTENT}"}},
        "sqlError": {"rule": "HttpRespond", "with": {"status": 502, "body": "${SQL_ERROR}"}},
        "fileError": {"rule": "HttpRespond", "with": {"status": 500, "body": "${FILE_ERROR}"}},
    }
    return configuration("no-libpq", [ruleset("main", "route", rules)], databases={
        "pg": {"url": "${env:CAP_PG_URL}"}, "lite": {"url": "${env:CAP_LITE_URL}"}})


@unittest.skipIf(REASON, REASON)
class WithoutLibpq(SharedPostgres, unittest.TestCase):
    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        if EMPTY:
            os.unlink(EMPTY)

    def setUp(self):
        self.folder = tempfile.mkdtemp(prefix="cap-no-libpq-")
        self.addCleanup(shutil.rmtree, self.folder, True)
        self.env = {"CAP_PG_URL": self.pg.url,
                    "CAP_LITE_URL": "sqlite://" + os.path.join(self.folder, "lite.db"),
                    "CAP_SHARED_DIR": os.path.join(self.folder, "shared")}

    def agent(self, prefix):
        a = Agent(env=self.env, prefix=prefix).start()
        self.addCleanup(a.cleanup)
        return a

    def test_the_same_configuration_works_where_libpq_loads(self):
        a = self.agent([])
        a.deploy_ok(probe_config())
        r = a.web("GET", "/pg")
        self.assertEqual((r.status, r.json()), (200, [{"answer": 42}]), r)

    def test_postgresql_fails_with_the_package_name_and_everything_else_serves(self):
        a = self.agent(without_libpq())
        self.assertEqual(a.web("GET", "/.cap/health").status, 200)
        # The deployment is accepted: the database is opened on first use, not before.
        a.deploy_ok(probe_config())
        self.assertEqual(a.web("GET", "/hello").text(), "hello")

        r = a.web("GET", "/pg")
        self.assertEqual(r.status, 502, r)
        self.assertIn("database 'pg': " + MESSAGE, r.text())
        self.assertIn("file too short", r.text())  # the loader's own reason follows
        self.assertNotIn(self.pg.url, r.text())
        # Every later use fails the same way (nothing half-loaded), and unwired it fails the
        # request with the cause in the log.
        self.assertIn(MESSAGE, a.web("GET", "/pg").text())
        self.assertEqual(a.web("GET", "/pg-bare").status, 500)
        cause = r"rule error on GET /pg-bare: .*node pgBare: database 'pg': " + re.escape(MESSAGE)
        self.assertRegex(a.wait_log(cause), cause)
        self.assertNotIn(PASSWORD, a.log_text())

        # Serving, SQLite, the shared folder and health go on.
        r = a.web("GET", "/lite")
        self.assertEqual((r.status, r.json()), (200, [{"seven": 7}]), r)
        r = a.web("GET", "/write")
        self.assertEqual((r.status, r.text()), (200, "kept"), r)
        self.assertEqual(a.web("GET", "/hello").text(), "hello")
        self.assertEqual(a.web("GET", "/.cap/health").status, 200)
        stats = a.mgmt("GET", "/v1/stats")
        self.assertEqual(stats.status, 200, stats)
        # A later deployment still activates, and the agent is still running.
        a.deploy_ok(configuration("after", [ruleset("main", "r", {
            "r": {"rule": "HttpRespond", "with": {"body": "after"}}})]))
        self.assertEqual(a.web("GET", "/anything").text(), "after")
        self.assertIsNone(a.proc.poll())

    def test_capctl_run_names_the_package(self):
        config = write_folder(probe_config(), os.path.join(self.folder, "config"))
        env = dict(os.environ, CAP_HOME=os.path.join(self.folder, "home"), **self.env)
        run = without_libpq() + [capctl_binary(), "run", config]
        r = subprocess.run(run + ["--request", "GET /pg"], env=env, capture_output=True,
                           text=True, timeout=60)
        self.assertIn("HTTP/1.1 502", r.stdout)
        self.assertIn("database 'pg': " + MESSAGE, r.stdout)
        r = subprocess.run(run + ["--request", "GET /lite"], env=env, capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn('"seven":7', r.stdout.replace(" ", ""))


if __name__ == "__main__":
    unittest.main()
