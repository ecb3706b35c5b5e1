"""The SQL rules (SqlQuery, SqlExecute, FlightRecorder) in a real agent against a real
PostgreSQL 15 and SQLite: the three CAP_DB_URL forms, credentials, sslmode, bound
parameters with hostile strings, types and row limits, errors on the error chain point,
validation errors, and a PostgreSQL restart in the middle of a load."""

import json
import os
import shutil
import tempfile
import threading
import time
import unittest
import urllib.parse

from agent_harness import Agent, configuration, ruleset
from postgres_harness import PASSWORD, USER, PostgresServer, SharedPostgres

SOURCE = os.environ.get("CAP_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))

HOSTILE = [
    "Robert'); DROP TABLE notes;--",
    "it's \"quoted\" \\ back\\slash",
    "$1 $2 ? ?? :name @p",
    "/* not a comment */ -- nor this",
    "$$dollar$$ $tag$ E'\\x41'",
    "ünïcödé ✓ 日本語 🎉",
    "line\nbreak\ttab\r",
    "%s %d {0} ${URI} ${env:HOME}",
]


def read_example(name):
    root = os.path.join(SOURCE, "examples", name)
    files = {}
    for base, _, names in os.walk(root):
        for n in names:
            full = os.path.join(base, n)
            rel = os.path.relpath(full, root)
            with open(full, "rb") as f:
                files[rel] = f.read()
    return files


def form(**fields):
    return urllib.parse.urlencode(fields).encode()


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def probe_config(extra_rules=None, **manifest):
    """Routes /NAME to node NAME; every SQL node answers its output as JSON, or 502 with
    SQL_ERROR on its error chain point."""
    rules = {
        "route": {"rule": "Switch", "with": {"value": "${URI}"},
                  "then": {"/" + k: [k] for k in (extra_rules or {}) if not k.startswith("_")}},
        "_rows": {"rule": "HttpRespond", "with": {"body": "${json(SQL_ROWS)}",
                                                   "content_type": "application/json"}},
        "_empty": {"rule": "HttpRespond", "with": {"status": 204}},
        "_affected": {"rule": "HttpRespond", "with": {"body": "${SQL_AFFECTED}"}},
        "_error": {"rule": "HttpRespond", "with": {"status": 502, "body": "${SQL_ERROR}"}},
    }
    rules.update(extra_rules or {})
    manifest.setdefault("databases", {"app": {"url": "${env:CAP_DB_URL}"}})
    return configuration("probe", [ruleset("main", "route", rules)], **manifest)


def query(sql, args=None, **extra):
    w = {"database": "app", "sql": sql}
    if args is not None:
        w["args"] = args
    w.update(extra)
    return {"rule": "SqlQuery", "with": w,
            "then": {"ok": ["_rows"], "empty": ["_empty"], "error": ["_error"]}}


def execute(sql, args=None):
    w = {"database": "app", "sql": sql}
    if args is not None:
        w["args"] = args
    return {"rule": "SqlExecute", "with": w, "then": {"ok": ["_affected"], "error": ["_error"]}}


class PostgresTestCase(SharedPostgres, unittest.TestCase):
    def agent(self, url=None, **env):
        e = {"CAP_DB_URL": url or self.pg.url}
        e.update(env)
        a = Agent(env=e).start()
        self.addCleanup(a.cleanup)
        return a


class UrlForms(PostgresTestCase):
    def guestbook_round_trip(self, agent, name):
        agent.deploy_ok(read_example("guestbook"))
        r = agent.web("POST", "/entries", form(name=name, message="hello from " + name), FORM)
        self.assertEqual(r.status, 303, r)
        r = agent.web("GET", "/entries")
        self.assertEqual(r.status, 200, r)
        names = [e["name"] for e in r.json()]
        self.assertIn(name, names)
        self.assertIn(name, self.pg.psql("SELECT name FROM guestbook_entries"))

    def test_postgresql_url_with_credentials(self):
        self.guestbook_round_trip(self.agent(self.pg.url), "url-form")

    def test_postgresql_url_with_credentials_from_the_environment(self):
        a = self.agent(self.pg.url_without_credentials, CAP_DB_USER=USER, CAP_DB_PASSWORD=PASSWORD)
        self.guestbook_round_trip(a, "env-credentials")

    def test_jdbc_url_as_the_stack_prints_it(self):
        a = self.agent(self.pg.jdbc_url, CAP_DB_USER=USER, CAP_DB_PASSWORD=PASSWORD)
        self.guestbook_round_trip(a, "jdbc-form")

    def test_sqlite_url(self):
        folder = tempfile.mkdtemp(prefix="cap-sqlite-")
        self.addCleanup(shutil.rmtree, folder, True)
        path = os.path.join(folder, "guestbook.db")
        a = self.agent("sqlite://" + path)
        a.deploy_ok(read_example("guestbook"))
        r = a.web("POST", "/entries", form(name="lite", message="on SQLite"), FORM)
        self.assertEqual(r.status, 303, r)
        self.assertEqual([e["name"] for e in a.web("GET", "/entries").json()], ["lite"])
        self.assertTrue(os.path.getsize(path) > 0)

    def test_sslmode_is_honoured(self):
        # The test server has no TLS: sslmode=require must refuse to talk to it in clear.
        a = self.agent(self.pg.url + "?sslmode=require")
        a.deploy_ok(probe_config({"one": query("SELECT 1 AS one")}))
        r = a.web("GET", "/one")
        self.assertEqual(r.status, 502, r)
        self.assertIn("SSL", r.text())
        a2 = self.agent(self.pg.jdbc_url + "?sslmode=disable", CAP_DB_USER=USER,
                        CAP_DB_PASSWORD=PASSWORD)
        a2.deploy_ok(probe_config({"one": query("SELECT 1 AS one")}))
        self.assertEqual(a2.web("GET", "/one").json(), [{"one": 1}])

    def test_wrong_password_is_an_error_that_never_shows_the_password(self):
        secret = "not-the-password-5f3a"
        a = self.agent(self.pg.url_without_credentials, CAP_DB_USER=USER, CAP_DB_PASSWORD=secret)
        a.deploy_ok(probe_config({"one": query("SELECT 1 AS one")}))
        r = a.web("GET", "/one")
        self.assertEqual(r.status, 502, r)
        self.assertIn("password authentication failed", r.text())
        self.assertNotIn(secret, r.text())
        self.assertNotIn(secret, a.log_text())
        self.assertNotIn(secret, a.mgmt("GET", "/metrics").text())

    def test_unsupported_jdbc_parameter_is_named(self):
        a = self.agent(self.pg.jdbc_url + "?loginTimeout=3")
        a.deploy_ok(probe_config({"one": query("SELECT 1 AS one")}))
        r = a.web("GET", "/one")
        self.assertEqual(r.status, 502)
        self.assertIn("JDBC parameter 'loginTimeout' is not supported", r.text())

    def test_unknown_address_form(self):
        a = self.agent("mysql://db.example/app")
        a.deploy_ok(probe_config({"one": query("SELECT 1 AS one")}))
        r = a.web("GET", "/one")
        self.assertEqual(r.status, 502)
        self.assertIn("must start with postgresql://, jdbc:postgresql:// or sqlite:", r.text())


class Statements(PostgresTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pg.psql("CREATE TABLE notes (id SERIAL PRIMARY KEY, body TEXT, n INT, data BYTEA)")

    def setUp(self):
        self.a = self.agent()

    def test_hostile_strings_are_bound_never_spliced(self):
        self.a.deploy_ok(probe_config({
            "add": execute("INSERT INTO notes (body) VALUES (?)", ["${text}"]),
            "find": query("SELECT body FROM notes WHERE body = ?", ["${text}"]),
        }))
        for s in HOSTILE:
            r = self.a.web("POST", "/add", form(text=s), FORM)
            self.assertEqual((r.status, r.text()), (200, "1"), s)
            r = self.a.web("POST", "/find", form(text=s), FORM)
            self.assertEqual(r.status, 200, s)
            self.assertEqual(r.json(), [{"body": s}], s)
        self.assertEqual(self.pg.psql("SELECT count(*) FROM notes WHERE body LIKE 'Robert%'"), "1")
        self.assertIn("notes", self.pg.psql("SELECT tablename FROM pg_tables WHERE tablename = 'notes'"))

    def test_question_marks_in_quotes_and_comments_are_not_placeholders(self):
        self.a.deploy_ok(probe_config({
            "q": query("SELECT '?' AS a, \"x?\".b, ? AS c FROM (SELECT 1 AS b) AS \"x?\" "
                       "-- what?\n /* why? */", ["${v}"]),
        }))
        r = self.a.web("GET", "/q?v=bound")
        self.assertEqual(r.json(), [{"a": "?", "b": 1, "c": "bound"}])

    def test_column_types_become_values(self):
        self.a.deploy_ok(probe_config({
            "types": query("SELECT 42::int AS i, 9007199254740::bigint AS big, 2.5::float8 AS f, "
                           "12.25::numeric AS num, true AS yes, NULL::text AS nothing, "
                           "'{\"a\": [1, 2]}'::jsonb AS doc, 'text' AS t"),
        }))
        self.assertEqual(self.a.web("GET", "/types").json(), [{
            "i": 42, "big": 9007199254740, "f": 2.5, "num": 12.25, "yes": True, "nothing": None,
            "doc": {"a": [1, 2]}, "t": "text"}])

    def test_typed_arguments(self):
        self.a.deploy_ok(probe_config({
            "typed": query("SELECT ?::int + 1 AS n, ?::boolean AS b, ?::text IS NULL AS isnull",
                           ["${number(v)}", "${v == '41'}", "${missing}"]),
        }))
        self.assertEqual(self.a.web("GET", "/typed?v=41").json(), [{"n": 42, "b": True, "isnull": True}])

    def test_row_limit_and_empty(self):
        self.a.deploy_ok(probe_config({
            "many": query("SELECT g FROM generate_series(1, 500) AS g ORDER BY g", max_rows=3),
            "none": query("SELECT 1 AS x WHERE false"),
        }))
        self.assertEqual(self.a.web("GET", "/many").json(), [{"g": 1}, {"g": 2}, {"g": 3}])
        self.assertEqual(self.a.web("GET", "/none").status, 204)

    def test_affected_count(self):
        self.pg.psql("CREATE TABLE counted (k INT)")
        self.pg.psql("INSERT INTO counted SELECT g FROM generate_series(1, 10) AS g")
        self.a.deploy_ok(probe_config({
            "bump": execute("UPDATE counted SET k = k + 100 WHERE k <= ?", ["${n}"]),
        }))
        self.assertEqual(self.a.web("GET", "/bump?n=4").text(), "4")
        self.assertEqual(self.pg.psql("SELECT count(*) FROM counted WHERE k > 100"), "4")

    def test_database_errors_take_the_error_chain_point(self):
        self.a.deploy_ok(probe_config({
            "syntax": query("SELEC 1"),
            "missing": query("SELECT * FROM no_such_table"),
            "count": query("SELECT ? AS a", []),
            "twice": execute("INSERT INTO notes (body) VALUES ('a'); DROP TABLE notes"),
        }))
        r = self.a.web("GET", "/syntax")
        self.assertEqual(r.status, 502)
        self.assertIn('syntax error at or near "SELEC"', r.text())
        self.assertIn("database 'app'", r.text())
        self.assertIn('relation "no_such_table" does not exist', self.a.web("GET", "/missing").text())
        self.assertIn("1 ? placeholder but 0 arguments", self.a.web("GET", "/count").text())
        self.assertIn("multiple commands", self.a.web("GET", "/twice").text())
        self.assertIn("notes", self.pg.psql("SELECT tablename FROM pg_tables WHERE tablename = 'notes'"))

    def test_unwired_error_fails_the_request_or_a_fail_safe_point_catches_it(self):
        rules = {
            "bare": {"rule": "SqlQuery", "with": {"database": "app", "sql": "SELEC 1"}},
            "guarded": {"rule": "FailSafePoint", "then": {"ok": ["inner"], "failed": ["caught"]}},
            "inner": {"rule": "SqlQuery", "with": {"database": "app", "sql": "SELEC 1"}},
            "caught": {"rule": "HttpRespond", "with": {"status": 503, "body": "caught: ${SQL_ERROR}"}},
        }
        self.a.deploy_ok(probe_config(rules))
        self.assertEqual(self.a.web("GET", "/bare").status, 500)
        r = self.a.web("GET", "/guarded")
        self.assertEqual(r.status, 503)
        self.assertIn("caught: ", r.text())
        self.assertIn("syntax error", r.text())

    def test_flight_recorder_appends_the_chosen_variables(self):
        files = probe_config({"hello": {"rule": "HttpRespond", "with": {"body": "hi ${name}"}}},
                             completion_ruleset="record")
        files["rulesets/record.json"] = json.dumps(ruleset("record", "rec", {
            "rec": {"rule": "FlightRecorder", "with": {
                "database": "app", "table": "transactions", "variables": ["name", "URI", "unset"]}},
        })).encode()
        self.a.deploy_ok(files)
        for who in ["ann", "bob'; DROP TABLE transactions;--"]:
            self.assertEqual(self.a.web("POST", "/hello", form(name=who), FORM).status, 200)
        rows = self.pg.psql("SELECT method, uri, variables FROM transactions ORDER BY recorded_at")
        lines = rows.splitlines()
        self.assertEqual(len(lines), 2, rows)
        method, uri, variables = lines[1].split("|", 2)
        self.assertEqual((method, uri), ("POST", "/hello"))
        self.assertEqual(json.loads(variables),
                         {"name": "bob'; DROP TABLE transactions;--", "URI": "/hello", "unset": None})


class Validation(PostgresTestCase):
    def test_bad_sql_nodes_are_refused_with_every_error_and_nothing_changes(self):
        a = self.agent()
        first = a.deploy_ok(probe_config({"one": query("SELECT 1 AS one")}))
        r = a.deploy(probe_config({
            "spliced": query("SELECT * FROM t WHERE name = '${name}'"),
            "unknown": {"rule": "SqlExecute", "with": {"database": "other", "sql": "SELECT 1"}},
            "limit": query("SELECT 1", max_rows=0),
            "rec": {"rule": "FlightRecorder", "with": {"database": "app", "table": "x; DROP",
                                                      "variables": ["A"]}},
        }))
        self.assertEqual(r.status, 422, r)
        details = "\n".join(r.json()["details"])
        self.assertIn("node spliced: sql: must be fixed text", details)
        self.assertIn("node unknown: database: no database 'other'", details)
        self.assertIn("node limit: max_rows: must be a number from 1 to 1000000", details)
        self.assertIn("node rec: table: must be fixed text of letters", details)
        status = a.mgmt("GET", "/v1/status").json()
        self.assertEqual(status["configuration"]["id"], first)
        self.assertEqual(a.web("GET", "/one").json(), [{"one": 1}])


class Restart(unittest.TestCase):
    def test_postgresql_restart_in_the_middle_of_a_load(self):
        pg = PostgresServer()
        self.addCleanup(pg.close)
        a = Agent(env={"CAP_DB_URL": pg.url, "CAP_DB_POOL_SIZE": "4"}).start()
        self.addCleanup(a.cleanup)
        a.deploy_ok(read_example("guestbook"))
        self.assertEqual(a.web("POST", "/entries", form(name="before", message="x"), FORM).status, 303)

        statuses = {}
        lock = threading.Lock()
        stop = threading.Event()

        def load():
            while not stop.is_set():
                try:
                    s = a.web("GET", "/entries", timeout=15).status
                except OSError:
                    s = "connection error"
                with lock:
                    statuses[s] = statuses.get(s, 0) + 1

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            time.sleep(1)
            pg.stop()
            time.sleep(2)
            with lock:
                during = dict(statuses)
            pg.start()
            # Recovery: the pool reconnects with backoff (at most 2 s between attempts).
            deadline = time.time() + 30
            recovered = False
            while time.time() < deadline and not recovered:
                recovered = a.web("GET", "/entries").status == 200
                time.sleep(0.2)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        self.assertTrue(recovered, statuses)
        self.assertIn(503, during, during)           # errors went to the error chain point
        self.assertNotIn(500, statuses, statuses)    # never an unhandled failure
        self.assertNotIn("connection error", statuses, statuses)
        self.assertIsNone(a.proc.poll())             # the agent stayed up
        self.assertEqual(a.web("POST", "/entries", form(name="after", message="y"), FORM).status, 303)
        self.assertIn("after", pg.psql("SELECT name FROM guestbook_entries"))

        metrics = a.mgmt("GET", "/metrics").text()
        self.assertIn('cap_db_pool_max{database="app",kind="postgresql"} 4', metrics)
        self.assertRegex(metrics, r'cap_db_connect_failures_total\{database="app",kind="postgresql"\} [1-9]')
        self.assertRegex(metrics, r'cap_db_errors_total\{database="app",kind="postgresql"\} [1-9]')
        self.assertIn('cap_db_up{database="app",kind="postgresql"} 1', metrics)
        stats = a.mgmt("GET", "/v1/stats").json()
        db = stats["databases"][0]
        self.assertEqual((db["name"], db["kind"], db["pool_max"], db["up"]), ("app", "postgresql", 4, True))
        self.assertGreater(db["errors"], 0)
        self.assertNotIn(PASSWORD, json.dumps(stats))
        self.assertNotIn(PASSWORD, metrics)


if __name__ == "__main__":
    unittest.main()
