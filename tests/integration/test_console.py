"""cap-console on SQLite: first admin, tokens and sessions (CSRF, expiry, throttling), users,
roles and denied actions, repositories (revisions, validation errors, diff, restore, export
and import), the vault (never returned), the extension store, the UI's static files, and
what bad input gets."""

import io
import hashlib
import json
import os
import re
import sqlite3
import stat
import time
import unittest
import zipfile

from agent_harness import configuration, hello_config, make_zip, respond_config, ruleset
from console_harness import ADMIN_PASSWORD, Console, ConsoleTestCase


def bad_config():
    """Two errors at once: an unknown rule and a dangling node id."""
    return {
        "cap.json": json.dumps({"format": 1, "name": "bad", "ruleset": "main"}).encode(),
        "rulesets/main.json": json.dumps({"name": "main", "start": "a", "rules": {
            "a": {"rule": "NoSuchRule", "then": {"next": ["b"]}},
            "b": {"rule": "SetVariable", "with": {"name": "X", "value": "1"},
                  "then": {"next": ["ghost"]}},
        }}).encode(),
    }


class FirstStart(unittest.TestCase):
    def test_generated_admin_password_is_printed_once_and_works(self):
        c = Console(admin_password=None).start()
        self.addCleanup(c.cleanup)
        m = c.wait_for(lambda: re.search(r'user "admin" has the password (\S+)', c.output()),
                       what="the generated password")
        password = m.group(1)
        self.assertGreaterEqual(len(password), 16)
        c.admin_password = password
        self.assertTrue(c.admin_token())
        # admin/admin does not exist.
        r = c.request("POST", "/api/v1/auth/token", {"username": "admin", "password": "admin"},
                      token=False)
        self.assertEqual(r.status, 401)
        # The key is private and the password never reaches the database in clear.
        mode = stat.S_IMODE(os.stat(os.path.join(c.home, "installation.key")).st_mode)
        self.assertEqual(mode, 0o600)
        c.stop()
        with open(os.path.join(c.home, "console.db"), "rb") as f:
            self.assertNotIn(password.encode(), f.read())
        hashed = sqlite3.connect(os.path.join(c.home, "console.db")).execute(
            "select password_hash from users where username='admin'").fetchone()[0]
        self.assertTrue(hashed.startswith("$argon2id$"), hashed)
        # A second start keeps the user and prints no new password.
        c.start()
        self.assertTrue(c.admin_token())
        self.assertNotIn("has the password", c.output())


class Migrations(unittest.TestCase):
    def test_an_older_database_is_migrated_and_keeps_its_data(self):
        c = Console().start()
        self.addCleanup(c.cleanup)
        a = c.ok("POST", "/api/v1/agents", {"id": "old", "host": "127.0.0.1", "port": 1,
                                            "key": "k" * 20})
        self.assertIs(a["tls"], False)
        latest = c.ok("GET", "/api/v1/health")["schema_version"]
        c.stop()
        # Make it a version-1 database, as an older console left it.
        db = sqlite3.connect(os.path.join(c.home, "console.db"))
        db.execute("alter table agents drop column tls")
        db.execute("delete from schema_migrations where version > 1")
        db.commit()
        db.close()
        c.start()
        self.assertEqual(c.ok("GET", "/api/v1/health")["schema_version"], latest)
        got = c.ok("GET", "/api/v1/agents/old")
        self.assertEqual((got["host"], got["tls"]), ("127.0.0.1", False))
        rows = sqlite3.connect(os.path.join(c.home, "console.db")).execute(
            "select version, description from schema_migrations order by version").fetchall()
        self.assertEqual([r[0] for r in rows], list(range(1, latest + 1)))


class Auth(ConsoleTestCase):
    console_env = {"CAP_CONSOLE_LOGIN_ATTEMPTS": "3", "CAP_CONSOLE_LOGIN_LOCKOUT": "60",
                   "CAP_CONSOLE_SESSION_TTL": "2"}

    def test_api_needs_a_token(self):
        r = self.console.request("GET", "/api/v1/agents", token=False)
        self.assertEqual(r.status, 401)
        self.assertEqual(r.json()["error"], "authentication required")
        r = self.console.request("GET", "/api/v1/agents", token="not-a-token")
        self.assertEqual(r.status, 401)
        self.assertEqual(self.console.request("GET", "/api/v1/health", token=False).status, 200)

    def test_wrong_passwords_are_throttled(self):
        c = self.console
        c.ok("POST", "/api/v1/users", {"username": "admin2", "password": "another-password",
                                       "type": "admin"})
        for _ in range(3):
            r = c.request("POST", "/api/v1/auth/token",
                          {"username": "admin", "password": "wrong-password"}, token=False)
            self.assertEqual(r.status, 401)
            self.assertEqual(r.json()["error"], "wrong user name or password")
        # Locked now, even with the right password.
        r = c.request("POST", "/api/v1/auth/token",
                      {"username": "admin", "password": ADMIN_PASSWORD}, token=False)
        self.assertEqual(r.status, 429)
        self.assertIn("retry-after", r.headers)
        # The lockout is per user name and address: another admin still logs in.
        admin2 = c.login("admin2", "another-password")
        audit = c.ok("GET", "/api/v1/audit", token=admin2)["entries"]
        self.assertEqual(sum(1 for e in audit if e["action"] == "auth.login_failed"), 3)

    def test_session_cookie_csrf_and_expiry(self):
        r = self.console.request("POST", "/api/v1/auth/login",
                                 {"username": "admin", "password": ADMIN_PASSWORD}, token=False)
        self.assertEqual(r.status, 200)
        cookie = r.headers["set-cookie"]
        self.assertIn("HttpOnly", cookie)
        self.assertIn("SameSite=Strict", cookie)
        self.assertNotIn("Secure", cookie)  # plain HTTP here; behind TLS it is set
        csrf = r.json()["csrf_token"]
        session = cookie.split(";")[0]
        h = {"Cookie": session}
        self.assertEqual(self.console.request("GET", "/api/v1/auth/me", headers=h, token=False).json()
                         ["csrf_token"], csrf)
        # A change without the CSRF header is refused and changes nothing.
        r = self.console.request("POST", "/api/v1/repositories", {"name": "nocsrf"}, headers=h,
                                 token=False)
        self.assertEqual(r.status, 403)
        self.assertIn("X-CSRF-Token", r.json()["error"])
        r = self.console.request("POST", "/api/v1/repositories", {"name": "nocsrf"},
                                 headers=dict(h, **{"X-CSRF-Token": "forged"}), token=False)
        self.assertEqual(r.status, 403)
        self.assertEqual(self.console.ok("GET", "/api/v1/repositories")["repositories"], [])
        r = self.console.request("POST", "/api/v1/repositories", {"name": "withcsrf"},
                                 headers=dict(h, **{"X-CSRF-Token": csrf}), token=False)
        self.assertEqual(r.status, 201)
        # Behind a TLS-terminating proxy the cookie is Secure.
        r = self.console.request("POST", "/api/v1/auth/login",
                                 {"username": "admin", "password": ADMIN_PASSWORD},
                                 headers={"X-Forwarded-Proto": "https"}, token=False)
        self.assertIn("Secure", r.headers["set-cookie"])
        # The session expires (CAP_CONSOLE_SESSION_TTL=2).
        time.sleep(2.5)
        r = self.console.request("GET", "/api/v1/auth/me", headers=h, token=False)
        self.assertEqual(r.status, 401)
        self.assertEqual(r.json()["error"], "the session has expired")

    def test_logout_ends_the_token(self):
        token = self.console.login("admin", ADMIN_PASSWORD)
        self.assertEqual(self.console.request("POST", "/api/v1/auth/logout", token=token).status, 204)
        self.assertEqual(self.console.request("GET", "/api/v1/auth/me", token=token).status, 401)


class UsersAndRoles(ConsoleTestCase):
    def test_roles_grant_rights_per_agent_and_repository(self):
        c = self.console
        a1, a2 = self.new_agent(), self.new_agent()
        c.add_agent(a1, "a1", group="blue")
        c.add_agent(a2, "a2", group="green")
        for repo in ("shop", "secret"):
            c.ok("POST", "/api/v1/repositories", {"name": repo})
            self.assertEqual(c.save(repo, "hello", hello_config()).status, 201)
        c.ok("POST", "/api/v1/roles", {"name": "shop-deployer", "rights": [
            {"resource": "repository", "match": "shop", "actions": ["read"]},
            {"resource": "agent", "match": "group:blue", "actions": ["read", "deploy"]}]})
        c.ok("POST", "/api/v1/users", {"username": "ann", "password": "ann-password-1",
                                       "type": "user", "roles": ["shop-deployer"]})
        ann = c.login("ann", "ann-password-1")
        # What she may see.
        agents = c.ok("GET", "/api/v1/agents", token=ann)["agents"]
        self.assertEqual([a["id"] for a in agents], ["a1"])
        repos = c.ok("GET", "/api/v1/repositories", token=ann)["repositories"]
        self.assertEqual([r["name"] for r in repos], ["shop"])
        # What she may not do, and that nothing changed.
        r = c.save("shop", "hello", hello_config("Hi"), token=ann)
        self.assertEqual(r.status, 403)
        self.assertEqual(len(c.ok("GET", "/api/v1/repositories/shop/configurations/hello/revisions")
                             ["revisions"]), 1)
        self.assertEqual(c.request("GET", "/api/v1/repositories/secret", token=ann).status, 403)
        self.assertEqual(c.request("GET", "/api/v1/agents/a2", token=ann).status, 403)
        r = c.request("POST", "/api/v1/deployments", {"configuration": "shop/hello", "agents": ["a2"]},
                      token=ann)
        self.assertEqual(r.status, 403)
        self.assertEqual(r.json()["details"], ["a2"])
        self.assertEqual(c.request("POST", "/api/v1/users", {"username": "x", "password": "x" * 12},
                                   token=ann).status, 403)
        self.assertEqual(c.request("PUT", "/api/v1/vault/db", {"value": "s3cret"}, token=ann).status, 403)
        self.assertEqual(c.ok("GET", "/api/v1/deployments")["deployments"], [])
        # What she may do.
        d = c.ok("POST", "/api/v1/deployments", {"configuration": "shop/hello", "agents": ["a1"]},
                 token=ann)
        self.assertTrue(d["ok"], d)
        self.assertEqual(a1.web("GET", "/hello?name=Ann").text(), "Hello, Ann!")
        # The audit log names her.
        audit = c.ok("GET", "/api/v1/audit")["entries"]
        self.assertTrue(any(e["action"] == "deployment.start" and e["user"] == "ann" for e in audit))
        self.assertEqual(c.request("GET", "/api/v1/audit", token=ann).status, 403)

    def test_security_users_manage_users_but_do_not_deploy_or_edit(self):
        c = self.console
        c.ok("POST", "/api/v1/users", {"username": "sec", "password": "security-pass", "type": "security"})
        sec = c.login("sec", "security-pass")
        c.ok("POST", "/api/v1/users", {"username": "bob", "password": "bob-password", "type": "user"},
             token=sec)
        self.assertEqual(c.request("POST", "/api/v1/users", {"username": "boss", "password": "boss-password",
                                                             "type": "admin"}, token=sec).status, 403)
        self.assertEqual(c.request("POST", "/api/v1/repositories", {"name": "r"}, token=sec).status, 403)
        self.assertEqual(c.ok("GET", "/api/v1/audit", token=sec)["entries"][0]["action"], "user.create")

    def test_user_and_role_errors(self):
        c = self.console
        r = c.request("POST", "/api/v1/roles", {"name": "r1", "rights": [
            {"resource": "agent", "match": "*", "actions": ["write"]},
            {"resource": "planet", "match": "*", "actions": ["read"]}]})
        self.assertEqual(r.status, 400)
        self.assertEqual(len(r.json()["details"]), 2, r)
        r = c.request("POST", "/api/v1/users", {"username": "u", "password": "short"})
        self.assertEqual(r.status, 400)
        r = c.request("POST", "/api/v1/users", {"username": "u", "password": "long-enough-pw",
                                                "roles": ["missing"]})
        self.assertEqual(r.status, 400)
        self.assertEqual(r.json()["details"], ['no role "missing"'])
        c.ok("POST", "/api/v1/users", {"username": "u", "password": "long-enough-pw"})
        r = c.request("POST", "/api/v1/users", {"username": "u", "password": "other-password"})
        self.assertEqual(r.status, 409)
        self.assertEqual(c.login("u", "long-enough-pw") is not None, True)
        self.assertEqual(c.request("DELETE", "/api/v1/users/admin").status, 409)
        # Disabling a user ends their tokens.
        tok = c.login("u", "long-enough-pw")
        c.ok("PUT", "/api/v1/users/u", {"disabled": True})
        self.assertEqual(c.request("GET", "/api/v1/auth/me", token=tok).status, 401)


class BadInput(ConsoleTestCase):
    console_env = {"CAP_CONSOLE_MAX_UPLOAD_BYTES": "200000"}

    def test_malformed_and_unknown_fields(self):
        c = self.console
        r = c.request("POST", "/api/v1/repositories", b"{not json", {"Content-Type": "application/json"})
        self.assertEqual(r.status, 400)
        self.assertEqual(r.json()["error"], "the body is not valid JSON")
        r = c.request("POST", "/api/v1/repositories", [1, 2])
        self.assertEqual(r.status, 400)
        r = c.request("POST", "/api/v1/agents", {"id": "a", "host": "h", "port": 1, "key": "k",
                                                 "colour": "red"})
        self.assertEqual(r.status, 400)
        self.assertIn('unknown field "colour"', r.json()["details"])
        r = c.request("POST", "/api/v1/agents", {"id": "a", "host": "h", "port": 70000, "key": "k"})
        self.assertEqual(r.status, 400)
        r = c.request("POST", "/api/v1/agents", {"id": "../a", "host": "h", "port": 1, "key": "k"})
        self.assertEqual(r.status, 400)
        r = c.request("POST", "/api/v1/agents", {"id": "announce", "host": "h", "port": 1, "key": "k"})
        self.assertEqual(r.status, 400)
        self.assertEqual(c.ok("GET", "/api/v1/agents")["agents"], [])
        r = c.request("GET", "/api/v1/nothing-here")
        self.assertEqual(r.status, 404)
        self.assertIn("error", r.json())
        r = c.request("PATCH", "/api/v1/agents")
        self.assertEqual(r.status, 405)

    def test_duplicates_are_refused_and_keep_the_first(self):
        c = self.console
        a = self.new_agent()
        c.add_agent(a, "a1")
        r = c.request("POST", "/api/v1/agents", {"id": "a1", "host": "10.0.0.9", "port": 20001,
                                                 "key": "other-key-123456"})
        self.assertEqual(r.status, 409)
        self.assertEqual(c.ok("GET", "/api/v1/agents/a1")["host"], "127.0.0.1")
        c.ok("POST", "/api/v1/repositories", {"name": "r"})
        r = c.request("POST", "/api/v1/repositories", {"name": "r", "description": "again"})
        self.assertEqual(r.status, 409)
        self.assertEqual(c.ok("GET", "/api/v1/repositories/r")["description"], "")

    def test_oversized_upload(self):
        c = self.console
        c.ok("POST", "/api/v1/repositories", {"name": "r"})
        big = respond_config("big", "x")
        big["data/blob.bin"] = os.urandom(300000)
        r = c.save("r", "big", big)
        self.assertEqual(r.status, 413)
        self.assertIn("error", r.json())
        self.assertEqual(c.request("GET", "/api/v1/repositories/r/configurations/big/revisions").status, 404)

    def test_invalid_revision_gets_every_error_and_is_not_saved(self):
        c = self.console
        c.ok("POST", "/api/v1/repositories", {"name": "r"})
        self.assertEqual(c.save("r", "cfg", hello_config()).status, 201)
        r = c.save("r", "cfg", bad_config())
        self.assertEqual(r.status, 422)
        body = r.json()
        self.assertEqual(body["error"], "configuration is not valid")
        details = "\n".join(body["details"])
        self.assertIn("NoSuchRule", details)
        self.assertIn("ghost", details)
        self.assertEqual([x["revision"] for x in
                          c.ok("GET", "/api/v1/repositories/r/configurations/cfg/revisions")["revisions"]],
                         [1])
        # The same errors as an agent gives for the same zip.
        a = self.new_agent()
        agent_reply = a.deploy(bad_config()).json()
        self.assertEqual(sorted(agent_reply["details"]), sorted(body["details"]))
        # Not a zip at all.
        r = c.request("PUT", "/api/v1/repositories/r/configurations/cfg", b"not a zip",
                      {"Content-Type": "application/zip"})
        self.assertEqual(r.status, 422)
        # Validation without saving.
        v = c.ok("POST", "/api/v1/validate", make_zip(bad_config()), headers={"Content-Type": "application/zip"})
        self.assertFalse(v["valid"])
        self.assertEqual(len(v["errors"]), len(body["details"]))

    def test_deploys_to_unknown_or_offline_agents_change_nothing(self):
        c = self.console
        c.ok("POST", "/api/v1/repositories", {"name": "r"})
        c.save("r", "hello", hello_config())
        a = self.new_agent()
        c.add_agent(a, "up")
        r = c.request("POST", "/api/v1/deployments", {"configuration": "r/hello", "agents": ["up", "ghost"]})
        self.assertEqual(r.status, 404)
        self.assertEqual(r.json()["details"], ["no agent with the id ghost"])
        down = self.new_agent()
        c.add_agent(down, "down")
        down.stop()
        r = c.request("POST", "/api/v1/deployments", {"configuration": "r/hello", "agents": ["up", "down"]})
        self.assertEqual(r.status, 409)
        self.assertTrue(r.json()["details"][0].startswith("down: "), r)
        r = c.request("POST", "/api/v1/deployments", {"configuration": "r/hello", "revision": 9,
                                                      "agents": ["up"]})
        self.assertEqual(r.status, 404)
        r = c.request("POST", "/api/v1/deployments", {"configuration": "r/hello"})
        self.assertEqual(r.status, 400)
        r = c.request("POST", "/api/v1/deployments", {"configuration": "r/hello", "agents": ["up"],
                                                      "strategy": "yolo"})
        self.assertEqual(r.status, 400)
        self.assertEqual(c.ok("GET", "/api/v1/deployments")["deployments"], [])
        self.assertEqual(a.web("GET", "/hello").status, 503)  # still blank


class Repositories(ConsoleTestCase):
    def test_revisions_diff_restore_export_import(self):
        c = self.console
        c.ok("POST", "/api/v1/repositories", {"name": "r", "description": "demo"})
        self.assertEqual(c.save("r", "hello", hello_config("Hello"), "first version").json()["revision"], 1)
        self.assertEqual(c.save("r", "hello", hello_config("Howdy"), "friendlier").json()["revision"], 2)
        same = c.save("r", "hello", hello_config("Howdy"))
        self.assertEqual(same.status, 200)
        self.assertTrue(same.json()["unchanged"])
        # The editor's form: JSON files.
        files = {k: v.decode() for k, v in hello_config("Hey").items()}
        r = c.request("PUT", "/api/v1/repositories/r/configurations/hello",
                      {"files": files, "message": "from the editor"})
        self.assertEqual(r.json()["revision"], 3, r)
        revs = c.ok("GET", "/api/v1/repositories/r/configurations/hello/revisions")["revisions"]
        self.assertEqual([(x["revision"], x["author"], x["message"]) for x in revs],
                         [(3, "admin", "from the editor"), (2, "admin", "friendlier"),
                          (1, "admin", "first version")])
        cur = c.ok("GET", "/api/v1/repositories/r/configurations/hello")
        self.assertIn("Hey", cur["files"]["cap.json"])
        diff = c.ok("GET", "/api/v1/repositories/r/configurations/hello/diff?from=1&to=2")
        self.assertEqual([f["path"] for f in diff["files"]], ["cap.json"])
        self.assertIn('-{"format": 1', diff["files"][0]["diff"])
        self.assertIn("Howdy", diff["files"][0]["diff"])
        restored = c.ok("POST", "/api/v1/repositories/r/configurations/hello/revisions/1/restore")
        self.assertEqual(restored["revision"], 4)
        z = c.request("GET", "/api/v1/repositories/r/configurations/hello/revisions/4/zip")
        self.assertIn(b"Hello", zipfile.ZipFile(io.BytesIO(z.body)).read("cap.json"))
        # Export, then import under another name: the same history.
        export = c.request("GET", "/api/v1/repositories/r/export")
        self.assertEqual(export.headers["content-type"], "application/zip")
        r = c.request("POST", "/api/v1/repositories/import?name=copy", export.body,
                      {"Content-Type": "application/zip"})
        self.assertEqual(r.status, 201, r)
        copy = c.ok("GET", "/api/v1/repositories/copy/configurations/hello/revisions")["revisions"]
        self.assertEqual([(x["revision"], x["message"], x["sha256"]) for x in copy],
                         [(x["revision"], x["message"], x["sha256"]) for x in
                          c.ok("GET", "/api/v1/repositories/r/configurations/hello/revisions")["revisions"]])
        # Into another console (moving between consoles).
        other = self.new_console()
        self.assertEqual(other.request("POST", "/api/v1/repositories/import", export.body,
                                       {"Content-Type": "application/zip"}).status, 201)
        self.assertEqual(len(other.ok("GET", "/api/v1/repositories/r/configurations/hello/revisions")
                             ["revisions"]), 4)
        # Importing over an existing name, or a damaged export, writes nothing.
        self.assertEqual(c.request("POST", "/api/v1/repositories/import", export.body).status, 409)
        zin = zipfile.ZipFile(io.BytesIO(export.body))
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zout:
            for n in zin.namelist():
                data = zin.read(n)
                if n.endswith("/2.zip"):
                    data = make_zip(hello_config("tampered"))
                zout.writestr(n, data)
        r = c.request("POST", "/api/v1/repositories/import?name=tampered", buf.getvalue())
        self.assertEqual(r.status, 400)
        self.assertIn("does not match its sha256", r.json()["details"][0])
        self.assertEqual(c.request("GET", "/api/v1/repositories/tampered").status, 404)


class VaultAndExtensions(ConsoleTestCase):
    def test_vault_values_are_write_only_and_sealed(self):
        c = self.console
        secret = "p4ss-" + os.urandom(8).hex()
        r = c.request("PUT", "/api/v1/vault/db", {"fields": {"user": "app", "password": secret}})
        self.assertEqual(r.status, 201)
        self.assertNotIn(secret, r.text())
        for path in ("/api/v1/vault", "/api/v1/vault/db", "/api/v1/audit"):
            body = c.request("GET", path).text()
            self.assertNotIn(secret, body)
        self.assertEqual(c.ok("GET", "/api/v1/vault/db")["fields"], ["password", "user"])
        r = c.request("PUT", "/api/v1/vault/db", {"value": "x", "fields": {"a": "b"}})
        self.assertEqual(r.status, 400)
        c.stop()
        with open(os.path.join(c.home, "console.db"), "rb") as f:
            self.assertNotIn(secret.encode(), f.read())
        self.assertNotIn(secret, c.output())

    def test_vault_travels_with_a_deploy_that_needs_it(self):
        c = self.console
        a = self.new_agent()
        c.add_agent(a, "a1")
        c.ok("PUT", "/api/v1/vault/api", {"value": "token-abc-123"})
        c.ok("POST", "/api/v1/repositories", {"name": "r"})
        c.save("r", "uses-vault", respond_config("v", "key=${vault:api}"))
        c.save("r", "needs-missing", respond_config("m", "${vault:nothere.x}"))
        d = c.ok("POST", "/api/v1/deployments", {"configuration": "r/uses-vault", "agents": ["a1"]})
        self.assertTrue(d["ok"], d)
        self.assertEqual(d["results"][0]["vault"], "sent")
        self.assertEqual(a.web("GET", "/").text(), "key=token-abc-123")
        self.assertNotIn("token-abc-123", json.dumps(d))
        r = c.request("POST", "/api/v1/deployments", {"configuration": "r/needs-missing", "agents": ["a1"]})
        self.assertEqual(r.status, 422)
        self.assertIn("nothere", r.json()["details"][0])

    def test_extension_store(self):
        c = self.console
        manifest = {"name": "demo", "version": "1.0.0", "cap": ">=0.1", "rules": [
            {"name": "Threshold", "group": "Demo", "doc": "d",
             "params": [{"name": "value", "type": "number", "required": True}],
             "chain_points": ["above", "below"], "script": "rules/threshold.lua"}]}
        script = b"return function(ctx, p) return 'above' end\n"
        manifest["sha256"] = {"rules/threshold.lua": hashlib.sha256(script).hexdigest()}
        ext = make_zip({"extension.json": json.dumps(manifest).encode(),
                        "rules/threshold.lua": script})
        r = c.request("POST", "/api/v1/extensions", ext, {"Content-Type": "application/zip"})
        self.assertEqual(r.status, 201, r)
        self.assertEqual(c.request("POST", "/api/v1/extensions", ext).status, 409)
        broken = make_zip({"extension.json": json.dumps(manifest).encode()})
        r = c.request("POST", "/api/v1/extensions", broken)
        self.assertEqual(r.status, 400)
        self.assertIn("rules/threshold.lua", r.json()["details"][0])
        lst = c.ok("GET", "/api/v1/extensions")["extensions"]
        self.assertEqual([(e["name"], [v["version"] for v in e["versions"]], e["versions"][0]["rules"])
                          for e in lst], [("demo", ["1.0.0"], ["Threshold"])])
        self.assertEqual(c.request("GET", "/api/v1/extensions/demo/1.0.0").body, ext)
        # A configuration that needs an extension the store lacks is not deployed.
        a = self.new_agent()
        c.add_agent(a, "a1")
        c.ok("POST", "/api/v1/repositories", {"name": "r"})
        self.assertEqual(c.save("r", "x", respond_config("x", "hi", extensions={"geo": "2.0.0"})).status, 201)
        r = c.request("POST", "/api/v1/deployments", {"configuration": "r/x", "agents": ["a1"]})
        self.assertEqual(r.status, 422)
        self.assertIn("geo 2.0.0", r.json()["details"][0])
        # A configuration using the extension's rule is validated against its extension.json.
        def uses_threshold(params):
            return configuration("t", [ruleset("main", "t", {
                "t": {"rule": "Threshold", "with": params,
                      "then": {"above": ["hi"], "below": ["lo"]}},
                "hi": {"rule": "HttpRespond", "with": {"status": 200, "body": "above"}},
                "lo": {"rule": "HttpRespond", "with": {"status": 200, "body": "below"}},
            })], extensions={"demo": "1.0.0"})
        self.assertEqual(c.save("r", "t", uses_threshold({"value": 5})).status, 201)
        r = c.save("r", "t", uses_threshold({"valu": 5}))
        self.assertEqual(r.status, 422)
        self.assertTrue(any("value" in d and "missing" in d for d in r.json()["details"]), r)
        # Without the extension in the store the rule is unknown, as on an agent without it.
        r = c.save("r", "t2", uses_threshold({"value": 5}) | {"cap.json": json.dumps(
            {"format": 1, "name": "t", "ruleset": "main", "extensions": {"demo": "9.9.9"}}).encode()})
        self.assertEqual(r.status, 422)
        # The deploy ships the extension with the configuration (PUT /v1/extensions/demo).
        d = c.ok("POST", "/api/v1/deployments", {"configuration": "r/t", "agents": ["a1"]})
        self.assertTrue(d["ok"], d)
        self.assertEqual(d["results"][0]["extensions_installed"], ["demo 1.0.0"])
        # The agent runs the extension's rule.
        r = a.web("GET", "/")
        self.assertEqual((r.status, r.body), (200, b"above"))
        self.assertIn("demo", json.dumps(a.mgmt("GET", "/v1/extensions").json()))


class WebUi(unittest.TestCase):
    def test_static_files_with_types_and_spa_fallback(self):
        import tempfile
        ui = tempfile.mkdtemp(prefix="cap-ui-")
        os.makedirs(os.path.join(ui, "assets"))
        with open(os.path.join(ui, "index.html"), "w") as f:
            f.write("<!doctype html><title>ui</title>")
        with open(os.path.join(ui, "assets", "app-1.js"), "w") as f:
            f.write("console.log(1)")
        c = Console(env={"CAP_CONSOLE_UI_DIR": ui}).start()
        self.addCleanup(c.cleanup)
        r = c.request("GET", "/", token=False)
        self.assertEqual((r.status, r.headers["content-type"]), (200, "text/html; charset=utf-8"))
        r = c.request("GET", "/assets/app-1.js", token=False)
        self.assertEqual(r.headers["content-type"], "text/javascript; charset=utf-8")
        self.assertIn("immutable", r.headers["cache-control"])
        r = c.request("GET", "/agents/a1", token=False)  # a route of the app
        self.assertEqual(r.text(), "<!doctype html><title>ui</title>")
        self.assertEqual(c.request("GET", "/assets/missing.js", token=False).status, 404)
        self.assertEqual(c.request("GET", "/../../etc/passwd", token=False).status in (400, 404), True)

    def test_a_clear_page_without_a_built_ui(self):
        c = Console(env={"CAP_CONSOLE_UI_DIR": "/nonexistent"}).start()
        self.addCleanup(c.cleanup)
        r = c.request("GET", "/", token=False)
        self.assertEqual(r.status, 200)
        self.assertIn("web UI is not built", r.text())


class Tls(unittest.TestCase):
    def make_cert(self):
        import shutil
        import subprocess
        import tempfile
        if not shutil.which("openssl"):
            self.skipTest("the openssl command is not installed")
        tmp = tempfile.mkdtemp(prefix="cap-tls-")
        self.addCleanup(shutil.rmtree, tmp, True)
        cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", key, "-out", cert], check=True, capture_output=True)
        return cert, key

    def test_https_console_sets_secure_cookies_and_reaches_tls_agents(self):
        import http.client
        import ssl
        from agent_harness import Agent
        cert, key = self.make_cert()
        c = Console(env={"CAP_CONSOLE_TLS_CERT": cert, "CAP_CONSOLE_TLS_KEY": key,
                         "CAP_CONSOLE_AGENT_CA_FILE": cert}).start()
        self.addCleanup(c.cleanup)
        self.assertIn("listening on https://", c.output())
        ctx = ssl.create_default_context(cafile=cert)
        conn = http.client.HTTPSConnection("127.0.0.1", c.port, context=ctx, timeout=30)
        self.addCleanup(conn.close)
        conn.request("POST", "/api/v1/auth/login", body=json.dumps(
            {"username": "admin", "password": ADMIN_PASSWORD}),
            headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        body = json.loads(r.read())
        self.assertEqual(r.status, 200)
        cookie = r.getheader("Set-Cookie")
        self.assertIn("Secure", cookie)
        self.assertIn("HttpOnly", cookie)
        # An agent whose management port is HTTPS, trusted through CAP_CONSOLE_AGENT_CA_FILE.
        agent = Agent(env={"CAP_MGMT_TLS_CERT": cert, "CAP_MGMT_TLS_KEY": key}).start()
        self.addCleanup(agent.cleanup)
        headers = {"Cookie": cookie.split(";")[0], "X-CSRF-Token": body["csrf_token"],
                   "Content-Type": "application/json"}
        conn.request("POST", "/api/v1/agents", body=json.dumps(
            {"id": "secure", "host": "127.0.0.1", "port": agent.mgmt_port, "key": agent.key,
             "tls": True}), headers=headers)
        r = conn.getresponse()
        got = json.loads(r.read())
        self.assertEqual(r.status, 201, got)
        self.assertTrue(got["tls"])
        self.assertTrue(got["status"]["online"], got)
        # Over plain HTTP the same agent is not reachable.
        conn.request("PUT", "/api/v1/agents/secure", body=json.dumps({"tls": False}), headers=headers)
        r = conn.getresponse()
        self.assertFalse(json.loads(r.read())["status"]["online"])


if __name__ == "__main__":
    unittest.main()
