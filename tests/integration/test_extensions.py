"""Extensions on a running agent (DESIGN §3 and §5): install, upgrade and remove through
/v1/extensions with no restart and no failed request, versions required by configurations,
bad packages refused with nothing changed, the sandbox and its limits, persistence in
CAP_HOME/extensions, and the pii-mask example through the proxy and through capctl."""

import hashlib
import http.client
import http.server
import json
import os
import socketserver
import subprocess
import tempfile
import threading
import unittest

from agent_harness import (Agent, AgentTestCase, Origin, capctl_binary, closed_port,
                           configuration, make_zip, ruleset)

SOURCE = os.environ.get("CAP_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
PII_MASK = os.path.join(SOURCE, "examples", "extensions", "pii-mask")


def ext_zip(manifest, files, hashes=True):
    """An extension zip whose extension.json lists the sha256 of every other member."""
    manifest = dict(manifest)
    if hashes:
        manifest["sha256"] = {p: hashlib.sha256(d.encode() if isinstance(d, str) else d).hexdigest()
                              for p, d in files.items()}
    members = {"extension.json": json.dumps(manifest).encode()}
    for p, d in files.items():
        members[p] = d.encode() if isinstance(d, str) else d
    return make_zip(members)


def tag_ext(version, tag=None, name="tagger", rule="Tag", script=None, **extra):
    """An extension whose rule answers with `tag` (the version by default)."""
    tag = tag or version
    script = script or f"""
return function(ctx, p)
  ctx:set(p.output, "{tag}")
end"""
    manifest = {"name": name, "version": version, "cap": ">=0.1",
                "rules": [{"name": rule, "group": "Test", "doc": "Sets a tag.",
                           "params": [{"name": "output", "type": "variable", "default": "TAG"}],
                           "script": "rules/tag.lua"}]}
    manifest.update(extra)
    return ext_zip(manifest, {"rules/tag.lua": script})


def tag_config(requirement="^1.0.0", name="tagger", rule="Tag"):
    return configuration("uses-tag", [ruleset("main", "tag", {
        "tag": {"rule": rule, "then": {"next": ["respond"]}},
        "respond": {"rule": "HttpRespond", "with": {"body": "${TAG}", "content_type": "text/plain"}},
    })], extensions={name: requirement})


def plain_config():
    return configuration("plain", [ruleset("main", "respond", {
        "respond": {"rule": "HttpRespond", "with": {"body": "plain", "content_type": "text/plain"}},
    })])


def http_ext(waits=True):
    """An extension whose rule calls the URL in its parameter with ctx:http and sets TAG to
    what came back."""
    script = """
return function(ctx, p)
  local r = ctx:http{url = p.url, method = "POST", body = "from lua",
                     headers = {["X-From"] = "extension"}, timeout_ms = 5000}
  if r.status == 0 then
    ctx:set(p.output, "failed: " .. tostring(r.error))
    return "error"
  end
  ctx:set(p.output, r.status .. " " .. r.body)
  return "ok"
end"""
    rule = {"name": "Fetch", "group": "Test", "doc": "Calls a URL.",
            "params": [{"name": "url", "type": "string", "required": True},
                       {"name": "output", "type": "variable", "default": "TAG"}],
            "chain_points": ["ok", "error"], "script": "rules/fetch.lua"}
    if waits:
        rule["waits"] = True
    return ext_zip({"name": "fetcher", "version": "1.0.0", "cap": ">=0.1", "rules": [rule]},
                   {"rules/fetch.lua": script})


def fetch_config(url):
    respond = {"rule": "HttpRespond", "with": {"body": "${TAG}", "content_type": "text/plain"}}
    return configuration("fetches", [ruleset("main", "fetch", {
        "fetch": {"rule": "Fetch", "with": {"url": url},
                  "then": {"ok": ["respondOk"], "error": ["respondError"]}},
        "respondOk": respond,
        "respondError": dict(respond, **{"with": dict(respond["with"], status=502)}),
    })], extensions={"fetcher": "1.0.0"})


class ExtensionHttpTest(AgentTestCase):

    def test_ctx_http_calls_a_url_and_reports_failures(self):
        origin = Origin()
        self.addCleanup(origin.close)
        r = self.agent.mgmt("PUT", "/v1/extensions/fetcher", http_ext(),
                            {"Content-Type": "application/zip"})
        self.assertEqual(r.status, 200, r)
        self.agent.deploy_ok(fetch_config(origin.url + "/echo/from-lua"))
        r = self.agent.web("GET", "/")
        self.assertEqual(r.status, 200, r)
        status, _, body = r.text().partition(" ")
        self.assertEqual(status, "200")
        echo = json.loads(body)
        self.assertEqual((echo["method"], echo["path"]), ("POST", "/echo/from-lua"))
        self.assertEqual(echo["headers"]["x-from"], "extension")
        self.assertEqual(echo["body_sha256"], hashlib.sha256(b"from lua").hexdigest())
        # A URL nothing answers: status 0 with the error, and the rule's error chain point.
        self.agent.deploy_ok(fetch_config(f"http://127.0.0.1:{closed_port()}/x"))
        r = self.agent.web("GET", "/")
        self.assertEqual(r.status, 502, r)
        self.assertTrue(r.text().startswith("failed: "), r.text())

    def test_ctx_http_needs_waits_in_the_manifest(self):
        r = self.agent.mgmt("PUT", "/v1/extensions/fetcher", http_ext(waits=False),
                            {"Content-Type": "application/zip"})
        self.assertEqual(r.status, 200, r)
        self.agent.deploy_ok(fetch_config("http://127.0.0.1:1/x"))
        r = self.agent.web("GET", "/")
        self.assertEqual(r.status, 500, r)  # a script error outside a FailSafePoint
        self.assertTrue(self.agent.wait_for_log(r'rules/fetch.lua:3: ctx:http waits, so the rule must declare '
                                r'\\"waits\\": true in extension.json'), self.agent.log_text()[-2000:])


class ExtensionLifecycleTest(AgentTestCase):

    def put(self, name, zip_bytes):
        return self.agent.mgmt("PUT", f"/v1/extensions/{name}", zip_bytes,
                               {"Content-Type": "application/zip"})

    def installed(self):
        r = self.agent.mgmt("GET", "/v1/extensions")
        self.assertEqual(r.status, 200, r)
        return {e["name"]: e["version"] for e in r.json()}

    def test_install_use_upgrade_remove(self):
        self.assertEqual(self.installed(), {})
        r = self.put("tagger", tag_ext("1.0.0"))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["version"], "1.0.0")
        self.assertEqual(r.json()["rules"], ["Tag"])
        self.assertIsNone(r.json()["previous_version"])
        self.assertEqual(self.installed(), {"tagger": "1.0.0"})
        status = self.agent.mgmt("GET", "/v1/status").json()
        self.assertEqual(status["extensions"], [{"name": "tagger", "version": "1.0.0"}])
        self.assertTrue(os.path.isfile(os.path.join(self.agent.home, "extensions", "tagger.zip")))
        shown = subprocess.run(
            [capctl_binary(), "status", "--agent", f"127.0.0.1:{self.agent.mgmt_port}"],
            capture_output=True, text=True, timeout=60,
            env=dict(os.environ, CAP_MGMT_KEY=self.agent.key))
        self.assertEqual(shown.returncode, 0, shown.stderr)
        self.assertIn("extensions     tagger 1.0.0\n", shown.stdout)

        self.agent.deploy_ok(tag_config("^1.0.0"))
        self.assertEqual(self.agent.web("GET", "/").body, b"1.0.0")

        # An upgrade the configuration accepts takes effect at once, without a deploy.
        r = self.put("tagger", tag_ext("1.1.0"))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["previous_version"], "1.0.0")
        self.assertEqual(self.agent.web("GET", "/").body, b"1.1.0")

        # One it does not accept is refused, and nothing changes.
        r = self.put("tagger", tag_ext("2.0.0"))
        self.assertEqual(r.status, 409, r)
        self.assertIn("requires extension 'tagger' ^1.0.0, which 2.0.0 does not satisfy",
                      r.json()["error"])
        self.assertEqual(self.installed(), {"tagger": "1.1.0"})
        self.assertEqual(self.agent.web("GET", "/").body, b"1.1.0")

        # So is one that drops a rule the configuration uses.
        r = self.put("tagger", tag_ext("1.2.0", rule="Other"))
        self.assertEqual(r.status, 409, r)
        self.assertIn("does not load with tagger 1.2.0; nothing was changed", r.json()["error"])
        self.assertTrue(any("unknown rule 'Tag'" in d for d in r.json()["details"]), r)
        self.assertEqual(self.installed(), {"tagger": "1.1.0"})
        self.assertEqual(self.agent.web("GET", "/").body, b"1.1.0")

        # Removing an extension the active configuration uses is refused.
        r = self.agent.mgmt("DELETE", "/v1/extensions/tagger")
        self.assertEqual(r.status, 409, r)
        self.assertIn("uses extension 'tagger'", r.json()["error"])
        self.assertEqual(self.agent.web("GET", "/").body, b"1.1.0")

        self.agent.deploy_ok(plain_config())
        r = self.agent.mgmt("DELETE", "/v1/extensions/tagger")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["version"], "1.1.0")
        self.assertEqual(self.installed(), {})
        self.assertFalse(os.path.exists(os.path.join(self.agent.home, "extensions", "tagger.zip")))
        r = self.agent.mgmt("DELETE", "/v1/extensions/tagger")
        self.assertEqual(r.status, 404, r)
        self.assertIn("is not installed", r.json()["error"])

    def test_configurations_name_the_versions_they_need(self):
        r = self.agent.deploy(tag_config("1.0.0"))
        self.assertEqual(r.status, 422, r)
        self.assertIn("cap.json: extensions.tagger: extension 'tagger' 1.0.0 is not installed",
                      r.json()["details"])
        self.assertEqual(self.put("tagger", tag_ext("1.3.0")).status, 200)
        r = self.agent.deploy(tag_config("~1.2.0"))
        self.assertEqual(r.status, 422, r)
        self.assertIn("cap.json: extensions.tagger: extension 'tagger' ~1.2.0 is required, but "
                      "version 1.3.0 is installed", r.json()["details"])
        self.assertFalse(self.agent.mgmt("GET", "/v1/status").json()["ready"])
        self.agent.deploy_ok(tag_config(">=1.2"))
        self.assertEqual(self.agent.web("GET", "/").body, b"1.3.0")

    def test_bad_packages_are_refused_and_nothing_changes(self):
        self.assertEqual(self.put("tagger", tag_ext("1.0.0")).status, 200)
        self.agent.deploy_ok(tag_config())
        before = open(os.path.join(self.agent.home, "extensions", "tagger.zip"), "rb").read()

        good_script = "return function(ctx) ctx:set('TAG', 'x') end"
        cases = {
            "malformed manifest": (
                make_zip({"extension.json": b"{\"name\": \"tagger\", \"version\": 2}",
                          "rules/tag.lua": good_script.encode()}),
                "extension.json: version: must be a string"),
            "wrong hash": (
                make_zip({"extension.json": json.dumps({
                    "name": "tagger", "version": "1.0.1",
                    "rules": [{"name": "Tag", "doc": "d", "script": "rules/tag.lua"}],
                    "sha256": {"rules/tag.lua": "0" * 64}}).encode(),
                    "rules/tag.lua": good_script.encode()}),
                "rules/tag.lua: sha256 does not match extension.json"),
            "zip-slip": (
                make_zip({"extension.json": b"{}", "../../outside.lua": b"x"}),
                "zip entry '../../outside.lua' has an absolute path or '..': refused"),
            "not a zip": (b"hello", "not a valid zip"),
            "script does not compile": (
                tag_ext("1.0.2", script="return function(ctx\n  ctx:set("),
                "rules/tag.lua:2:"),
            "bytecode": (tag_ext("1.0.3", script="\x1bLua\x54\x00junk"), "bytecode"),
        }
        for label, (body, expected) in cases.items():
            with self.subTest(label):
                r = self.put("tagger", body)
                self.assertEqual(r.status, 422, r)
                self.assertEqual(r.json()["error"], "extension is not valid")
                self.assertTrue(any(expected in d for d in r.json()["details"]),
                                f"{expected!r} not in {r.json()['details']}")
        r = self.put("other-name", tag_ext("1.0.0"))
        self.assertEqual(r.status, 422, r)
        self.assertEqual(r.json()["error"], "the package is extension 'tagger', not 'other-name'")
        r = self.put("Bad..Name", tag_ext("1.0.0"))
        self.assertEqual(r.status, 422, r)

        self.assertEqual(self.installed(), {"tagger": "1.0.0"})
        self.assertEqual(sorted(os.listdir(os.path.join(self.agent.home, "extensions"))),
                         ["tagger.zip"])
        self.assertEqual(open(os.path.join(self.agent.home, "extensions", "tagger.zip"), "rb").read(),
                         before)
        self.assertEqual(self.agent.web("GET", "/").body, b"1.0.0")

    def test_extensions_survive_a_restart(self):
        self.assertEqual(self.put("tagger", tag_ext("1.4.0")).status, 200)
        self.agent.deploy_ok(tag_config())
        self.assertEqual(self.agent.stop(), 0)
        again = Agent(home=self.agent.home).start()
        self.addCleanup(again.kill)
        self.assertEqual(again.web("GET", "/").body, b"1.4.0")
        status = again.mgmt("GET", "/v1/status").json()
        self.assertEqual(status["extensions"], [{"name": "tagger", "version": "1.4.0"}])
        self.assertTrue(status["ready"])

    def test_upgrades_and_removals_under_load_fail_no_request(self):
        self.assertEqual(self.put("tagger", tag_ext("1.0.0")).status, 200)
        self.agent.deploy_ok(tag_config())
        versions = ["1.0.0", "1.1.0"]
        zips = {v: tag_ext(v) for v in versions}
        side = tag_ext("1.0.0", name="side", rule="SideTag")

        stop = threading.Event()
        problems, seen = [], set()
        lock = threading.Lock()

        def client():
            conn = http.client.HTTPConnection("127.0.0.1", self.agent.web_port, timeout=30)
            try:
                while not stop.is_set():
                    conn.request("GET", "/")
                    r = conn.getresponse()
                    body = r.read().decode()
                    with lock:
                        if r.status != 200 or body not in versions:
                            problems.append((r.status, body[:200]))
                        else:
                            seen.add(body)
            except Exception as e:  # a broken connection is a failure too
                with lock:
                    problems.append(("exception", repr(e)))
            finally:
                conn.close()

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            for i in range(30):
                r = self.put("tagger", zips[versions[(i + 1) % 2]])
                self.assertEqual(r.status, 200, r)
                if i % 3 == 0:
                    self.assertEqual(self.put("side", side).status, 200)
                elif i % 3 == 1:
                    self.assertEqual(self.agent.mgmt("DELETE", "/v1/extensions/side").status, 200)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        self.assertEqual(problems, [])
        self.assertEqual(seen, set(versions))


class SandboxTest(AgentTestCase):

    def install_and_deploy(self, script, limits=None):
        extra = {"limits": limits} if limits else {}
        r = self.agent.mgmt("PUT", "/v1/extensions/probe",
                            tag_ext("1.0.0", name="probe", rule="Probe", script=script, **extra))
        self.assertEqual(r.status, 200, r)
        self.agent.deploy_ok(configuration("probe", [ruleset("main", "safe", {
            "safe": {"rule": "FailSafePoint", "then": {"ok": ["probe"], "failed": ["failed"]}},
            "probe": {"rule": "Probe", "then": {"next": ["respond"]}},
            "respond": {"rule": "HttpRespond", "with": {"body": "ok ${TAG}"}},
            "failed": {"rule": "HttpRespond",
                       "with": {"status": 503, "body": "failed: ${FAILSAFE_ERROR}"}},
        })], extensions={"probe": "1.0.0"}))

    def test_runaway_loops_and_memory_bombs_take_the_error_path(self):
        self.install_and_deploy("""
return function(ctx, p)
  local q = ctx:get("q")
  if q == "loop" then while true do end end
  if q == "pcall" then while true do pcall(function() while true do end end) end end
  if q == "bomb" then local s = "x" while true do s = s .. s end end
  if q == "rep" then local s = string.rep("x", 1 << 26) end
  ctx:set(p.output, "fine")
end""", limits={"instructions": 200000, "memory_mb": 8})
        cpu = ("extension probe 1.0.0, rule Probe: rules/tag.lua:{}: CPU budget exceeded (more "
               "than 200000 instructions in one execution)")
        memory = "extension probe 1.0.0, rule Probe: memory limit of 8 MiB exceeded"
        for q, expected in (("loop", cpu.format(4)), ("pcall", cpu.format(5)), ("bomb", memory),
                            ("rep", memory)):
            with self.subTest(q):
                r = self.agent.web("GET", f"/?q={q}")
                self.assertEqual(r.status, 503, r)
                self.assertEqual(r.text(), "failed: " + expected)
                r = self.agent.web("GET", "/")
                self.assertEqual((r.status, r.body), (200, b"ok fine"))  # still serving

    def test_escape_attempts_are_refused(self):
        marker = os.path.join(tempfile.gettempdir(), f"cap-escape-{os.getpid()}")
        self.install_and_deploy(f"""
return function(ctx, p)
  local q = ctx:get("q")
  if q == "os" then os.execute("touch {marker}") end
  if q == "io" then io.open("{marker}", "w") end
  if q == "load" then assert(load("\\27Lua\\84\\0junk")) end
  if q == "require" then require("os") end
  ctx:set(p.output, "fine")
end""")
        for q, message in (("os", "the 'os' library is not available in extensions"),
                           ("io", "the 'io' library is not available in extensions"),
                           ("load", "loading bytecode is not allowed in extensions"),
                           ("require", "attempt to call a nil value (global 'require')")):
            with self.subTest(q):
                r = self.agent.web("GET", f"/?q={q}")
                self.assertEqual(r.status, 503, r)
                self.assertIn(message, r.text())
        self.assertFalse(os.path.exists(marker))

    def test_an_error_outside_a_fail_safe_point_is_a_500_and_the_agent_stays_up(self):
        r = self.agent.mgmt("PUT", "/v1/extensions/probe", tag_ext(
            "1.0.0", name="probe", rule="Probe", script="return function() error('boom') end"))
        self.assertEqual(r.status, 200, r)
        self.agent.deploy_ok(tag_config(name="probe", rule="Probe", requirement="1.0.0"))
        self.assertEqual(self.agent.web("GET", "/").status, 500)
        self.assertTrue(self.agent.wait_for_log(
            r"extension probe 1\.0\.0, rule Probe: rules/tag\.lua:1: boom"))
        self.assertEqual(self.agent.mgmt("GET", "/v1/health").status, 200)


class PiiOrigin:
    """An origin answering every request with a JSON body full of personal data."""
    BODY = json.dumps({"customer": "ann.smith@example.com", "card": "4111 1111 1111 1111",
                       "iban": "GB82WEST12345698765432", "order": 12345}).encode()

    def __init__(self):
        body = self.BODY

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def read_folder(root):
    files = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            full = os.path.join(dirpath, n)
            files[os.path.relpath(full, root)] = open(full, "rb").read()
    return files


class PiiMaskExampleTest(AgentTestCase):

    def capctl(self, *args):
        return subprocess.run([capctl_binary(), *args], capture_output=True, text=True, timeout=60)

    def test_the_example_passes_its_own_tests(self):
        r = self.capctl("ext", "test", PII_MASK)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r"\n12 passed, 0 failed\n$")

    def test_masks_what_the_origin_answers_through_the_proxy(self):
        with tempfile.TemporaryDirectory() as tmp:
            zip_path = os.path.join(tmp, "pii-mask.zip")
            r = self.capctl("ext", "pack", PII_MASK, "-o", zip_path)
            self.assertEqual(r.returncode, 0, r.stderr)
            r = self.capctl("validate", os.path.join(PII_MASK, "demo"), "--extension", zip_path)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            r = self.agent.mgmt("PUT", "/v1/extensions/pii-mask", open(zip_path, "rb").read())
            self.assertEqual(r.status, 200, r)

        origin = PiiOrigin()
        self.addCleanup(origin.close)
        demo = read_folder(os.path.join(PII_MASK, "demo"))
        cap = json.loads(demo["cap.json"])
        cap["origin"] = origin.url
        demo["cap.json"] = json.dumps(cap).encode()
        self.agent.deploy_ok(demo)
        r = self.agent.web("GET", "/customers/1")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers.get("x-pii-masked"), "3")
        self.assertEqual(json.loads(r.body), {"customer": "a***@example.com",
                                              "card": "**** **** **** 1111",
                                              "iban": "GB****************5432", "order": 12345})


if __name__ == "__main__":
    unittest.main()
