"""cap-console on a real PostgreSQL (CAP_CONSOLE_DB): migrations, binary revisions, the
same answers as on SQLite, persistence across restarts of the console and of the database,
two consoles on one database, and a clear error without the password when it cannot
connect."""

import io
import os
import zipfile

from agent_harness import hello_config, make_zip
from console_harness import Console, ConsoleTestCase
from postgres_harness import SharedPostgres
from test_console import bad_config


class OnPostgres(SharedPostgres, ConsoleTestCase):
    def setUp(self):
        self.pg.psql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
        self.console_env = {"CAP_CONSOLE_DB": self.pg.url}
        super().setUp()

    def test_everything_lives_in_postgres(self):
        c, pg = self.console, self.pg
        self.assertEqual(c.ok("GET", "/api/v1/health", token=False)["database"], "postgresql")
        versions = pg.psql("select version from schema_migrations order by version").split()
        self.assertEqual(versions, [str(v) for v in range(1, c.ok("GET", "/api/v1/health")
                                                          ["schema_version"] + 1)])
        self.assertGreaterEqual(len(versions), 2)
        self.assertNotIn("cap-test-password", c.output())
        # A revision with binary data goes in and comes out byte for byte.
        files = hello_config()
        files["data/blob.bin"] = bytes(range(256)) * 4
        c.ok("POST", "/api/v1/repositories", {"name": "r"})
        self.assertEqual(c.save("r", "hello", files, "binary").status, 201)
        z = c.request("GET", "/api/v1/repositories/r/configurations/hello/revisions/1/zip").body
        self.assertEqual(zipfile.ZipFile(io.BytesIO(z)).read("data/blob.bin"), files["data/blob.bin"])
        self.assertEqual(c.ok("GET", "/api/v1/repositories/r/configurations/hello")["files"]
                         ["data/blob.bin"]["base64"][:8], "AAECAwQF")
        # Errors as on SQLite, nothing written.
        r = c.save("r", "hello", bad_config())
        self.assertEqual(r.status, 422)
        self.assertEqual(pg.psql("select count(*) from revisions"), "1")
        self.assertEqual(c.request("POST", "/api/v1/repositories", {"name": "r"}).status, 409)
        self.assertEqual(pg.psql("select count(*) from repositories"), "1")
        # A deploy, the vault sealed in the database.
        a = self.new_agent()
        c.add_agent(a, "a1")
        c.ok("PUT", "/api/v1/vault/secret", {"value": "hunter2-in-the-vault"})
        self.assertTrue(c.ok("POST", "/api/v1/deployments", {"configuration": "r/hello", "agents": ["a1"]})["ok"])
        self.assertEqual(a.web("GET", "/hello?name=P").text(), "Hello, P!")
        dump = pg.psql("select sealed from vault") + pg.psql("select key_sealed from agents")
        self.assertNotIn("hunter2", dump)
        self.assertNotIn(a.key, dump)
        self.assertEqual(pg.psql("select count(*) from deployments where ok = 1"), "1")

        # The console restarts on the same database: everything is there.
        c.stop()
        c.start()
        self.assertEqual(c.ok("GET", "/api/v1/agents/a1")["deployed"]["revision"], 1)
        self.assertEqual(len(c.ok("GET", "/api/v1/deployments")["deployments"]), 1)

        # The database restarts under a running console: it reconnects.
        pg.stop()
        r = c.request("GET", "/api/v1/repositories")
        self.assertEqual(r.status, 503)
        self.assertEqual(r.json()["error"], "the console's database failed")
        pg.start()
        self.assertEqual([x["name"] for x in c.ok("GET", "/api/v1/repositories")["repositories"]], ["r"])

        # A second console on the same database sees the same data.
        other = self.new_console(env={"CAP_CONSOLE_DB": pg.url})
        self.assertEqual([x["id"] for x in other.ok("GET", "/api/v1/agents")["agents"]], ["a1"])

    def test_unreachable_database_is_a_clear_error_without_the_password(self):
        bad = Console(env={"CAP_CONSOLE_DB": "postgresql://cap:topsecret@127.0.0.1:1/cap"})
        self.addCleanup(bad.cleanup)
        bad.start(wait=False)
        code = bad.proc.wait(30)
        bad._reader.join(5)
        self.assertEqual(code, 1)
        self.assertIn("cannot connect to PostgreSQL at postgresql://cap:***@127.0.0.1:1/cap",
                      bad.output())
        self.assertNotIn("topsecret", bad.output())
