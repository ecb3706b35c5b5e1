"""Logs, metrics, trace, stats, vault, extensions and the request log."""

import json
import os
import re
import stat
import time
import unittest

from agent_harness import AgentTestCase, configuration, hello_config, ruleset


class ObservabilityTest(AgentTestCase):
    agent_env = {"CAP_REQUEST_LOG": "1"}

    def test_logs_listing_and_tail(self):
        self.agent.deploy_ok(hello_config())
        r = self.agent.mgmt("GET", "/v1/logs")
        self.assertEqual(r.status, 200, r)
        files = r.json()["files"]
        today = time.strftime("agent-%Y-%m-%d.log")
        names = [f["name"] for f in files]
        self.assertIn(today, names)
        self.assertGreater(files[names.index(today)]["size"], 0)

        r = self.agent.mgmt("GET", f"/v1/logs/{today}?tail=2")
        self.assertEqual(r.status, 200, r)
        lines = r.text().strip().split("\n")
        self.assertEqual(len(lines), 2, r.text())
        for line in lines:
            json.loads(line)  # JSON lines in the file too
        whole = self.agent.mgmt("GET", f"/v1/logs/{today}").text()
        self.assertIn("activated configuration", whole)

    def test_log_paths_cannot_escape(self):
        for path in ("/v1/logs/..%2Fstate.json", "/v1/logs/../state.json", "/v1/logs/state.json",
                     "/v1/logs/agent-2024-01-01.log", "/v1/logs/%2Fetc%2Fpasswd"):
            r = self.agent.mgmt("GET", path)
            self.assertIn(r.status, (400, 404), (path, r))
            self.assertNotIn(b"active", r.body)
        r = self.agent.mgmt("GET", time.strftime("/v1/logs/agent-%Y-%m-%d.log?tail=x"))
        self.assertEqual(r.status, 400)

    def test_request_log(self):
        self.agent.deploy_ok(hello_config())
        self.agent.web("GET", "/hello?name=Logged")
        self.assertTrue(self.agent.wait_for_log(r"GET /hello\?name=Logged 200 [0-9.]+ms 127\.0\.0\.1"))

    def test_metrics(self):
        self.agent.deploy_ok(hello_config())
        for _ in range(3):
            self.agent.web("GET", "/hello?name=M")
        self.agent.web("GET", "/missing")
        r = self.agent.mgmt("GET", "/metrics")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.headers["content-type"].startswith("text/plain"))
        text = r.text()
        self.assertIn("cap_up 1", text)
        self.assertRegex(text, r'cap_requests_total\{status="200"\} 3\b')
        self.assertRegex(text, r'cap_requests_total\{status="404"\} 1\b')
        self.assertRegex(text, r'cap_request_duration_seconds_bucket\{le="0.0005"\} \d+')
        self.assertRegex(text, r'cap_request_duration_seconds_bucket\{le="\+Inf"\} 4\b')
        self.assertRegex(text, r"cap_request_duration_seconds_count 4\b")
        self.assertRegex(text, r'cap_rule_executions_total\{ruleset="main",node="greet",rule="SetVariable"\} 3\b')
        self.assertRegex(text, r'cap_rule_inline_seconds_total\{ruleset="main",node="greet",rule="SetVariable"\} ')
        status = self.agent.mgmt("GET", "/v1/status").json()["configuration"]
        self.assertIn(f'cap_configuration_info{{id="{status["id"]}",name="hello",sha256="{status["sha256"]}"}} 1', text)
        # Not on the web port, and never unsigned.
        self.assertEqual(self.agent.mgmt("GET", "/metrics", sign=False).status, 401)
        self.assertNotEqual(self.agent.web("GET", "/metrics").status, 200)

    def test_trace(self):
        self.agent.deploy_ok(hello_config())
        r = self.agent.mgmt("POST", "/v1/trace", {"count": 2})
        self.assertEqual(r.status, 200, r)
        for name in ("T1", "T2", "T3"):
            self.agent.web("GET", f"/hello?name={name}")
        r = self.agent.mgmt("GET", "/v1/trace")
        self.assertEqual(r.status, 200, r)
        body = r.json()
        self.assertEqual(body["remaining"], 0)
        self.assertEqual([t["request"] for t in body["traces"]],
                         ["GET /hello?name=T1", "GET /hello?name=T2"])
        kinds = [e["kind"] for e in body["traces"][0]["events"]]
        self.assertIn("enter", kinds)
        self.assertIn("set", kinds)
        self.assertIn("MSG = 'Hello, T1!'", body["traces"][0]["text"])
        # Default count is 20.
        self.assertEqual(self.agent.mgmt("POST", "/v1/trace").json()["armed"], 20)

    def test_stats(self):
        self.agent.deploy_ok(hello_config())
        self.agent.web("GET", "/hello?name=S")
        self.agent.web("GET", "/hello?name=S")
        self.agent.web("GET", "/nope")
        r = self.agent.mgmt("GET", "/v1/stats")
        self.assertEqual(r.status, 200, r)
        body = r.json()
        self.assertEqual(body["rules"]["requests"], 3)
        nodes = {n["id"]: n for rs in body["rules"]["rulesets"] for n in rs["nodes"]}
        self.assertEqual(nodes["greet"]["count"], 2)
        uris = {u["uri"]: u for u in body["requests"]["uris"]}
        self.assertEqual(uris["/hello"]["count"], 2)
        self.assertEqual(uris["/nope"]["count"], 1)

    def test_extension_endpoints_on_a_fresh_agent(self):
        # The whole life cycle is in test_extensions.py.
        r = self.agent.mgmt("GET", "/v1/extensions")
        self.assertEqual((r.status, r.json()), (200, []))
        r = self.agent.mgmt("PUT", "/v1/extensions/geo", b"zip")
        self.assertEqual(r.status, 422, r)
        self.assertEqual(r.json()["error"], "extension is not valid")
        r = self.agent.mgmt("DELETE", "/v1/extensions/geo")
        self.assertEqual(r.status, 404, r)
        self.assertEqual(r.json()["error"], "extension 'geo' is not installed")

    def test_vault(self):
        files = configuration("vault", [ruleset("main", "r", {
            "r": {"rule": "HttpRespond", "with": {"body": "user=${vault:api.user}"}}})])
        self.agent.deploy_ok(files)
        secret = "s3cr3t-value-42"
        r = self.agent.mgmt("PUT", "/v1/vault", {"api": {"user": "ann", "password": secret}})
        if r.status == 501:
            self.skipTest("this cap-agent was built without libsodium: " + r.json()["error"])
        self.assertEqual(r.status, 200, r)
        self.assertNotIn(secret.encode(), r.body)
        self.assertEqual(self.agent.web("GET", "/").body, b"user=ann")
        key = os.path.join(self.agent.home, "vault.key")
        self.assertEqual(stat.S_IMODE(os.stat(key).st_mode), 0o600)
        with open(os.path.join(self.agent.home, "vault.bin"), "rb") as f:
            self.assertNotIn(secret.encode(), f.read())
        self.assertNotIn(secret, self.agent.log_text())
        # Bad input changes nothing.
        r = self.agent.mgmt("PUT", "/v1/vault", {"api": 12})
        self.assertEqual(r.status, 400, r)
        self.assertEqual(self.agent.web("GET", "/").body, b"user=ann")
        # It survives a restart, decrypted from CAP_HOME.
        self.assertEqual(self.agent.stop(), 0)
        self.agent.start()
        self.assertEqual(self.agent.web("GET", "/").body, b"user=ann")

    def test_a_blank_agent_has_no_snapshot(self):
        r = self.agent.mgmt("GET", "/v1/snapshot")
        self.assertEqual(r.status, 409, r)
        self.assertIn("nothing to snapshot", r.json()["error"])


if __name__ == "__main__":
    unittest.main()
