"""Management API authentication (DESIGN §5): HMAC signature, skew window, nonce replay,
CIDR allow list, no key; every refusal logged without the key or signature; routing errors."""

import json
import re
import secrets
import time
import unittest

from agent_harness import Agent, AgentTestCase, auth_header, hello_config, http_request


class AuthTest(AgentTestCase):

    def assert_refused(self, reply, status, pattern):
        self.assertEqual(reply.status, status, reply)
        body = reply.json()
        self.assertRegex(body["error"], pattern)
        self.assertIsInstance(body.get("details", []), list)

    def refusal_logged(self, pattern):
        self.assertTrue(self.agent.wait_for_log(pattern), self.agent.log_text())

    def test_health_needs_no_signature(self):
        r = self.agent.mgmt("GET", "/v1/health", sign=False)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json(), {"status": "ok"})

    def test_signed_request_is_accepted(self):
        self.assertEqual(self.agent.mgmt("GET", "/v1/status").status, 200)

    def test_no_signature(self):
        r = self.agent.mgmt("GET", "/v1/status", sign=False)
        self.assert_refused(r, 401, "signature")
        self.refusal_logged(r"refused GET /v1/status from 127\.0\.0\.1")

    def test_malformed_authorization(self):
        r = self.agent.mgmt("GET", "/v1/status", sign=False,
                            headers={"Authorization": "Bearer something"})
        self.assert_refused(r, 401, "Authorization")

    def test_bad_signature(self):
        r = self.agent.mgmt("GET", "/v1/status", key="not-the-key")
        self.assert_refused(r, 401, "signature")
        self.refusal_logged(r"refused GET /v1/status .*signature")

    def test_signature_covers_body_path_and_method(self):
        body = b"PK not a zip"
        good = auth_header(self.agent.key, "PUT", "/v1/configuration", body)
        # Same header, another body.
        r = http_request(self.agent.mgmt_port, "PUT", "/v1/configuration", b"other",
                         {"Authorization": good})
        self.assert_refused(r, 401, "signature")
        # Same header, another path.
        good = auth_header(self.agent.key, "GET", "/v1/status")
        r = http_request(self.agent.mgmt_port, "GET", "/v1/status?x=1", None, {"Authorization": good})
        self.assert_refused(r, 401, "signature")
        good = auth_header(self.agent.key, "GET", "/v1/status")
        r = http_request(self.agent.mgmt_port, "POST", "/v1/status", None, {"Authorization": good})
        self.assert_refused(r, 401, "signature")

    def test_replayed_nonce(self):
        nonce = secrets.token_hex(16)
        first = self.agent.mgmt("GET", "/v1/status", nonce=nonce)
        self.assertEqual(first.status, 200)
        again = self.agent.mgmt("GET", "/v1/status", nonce=nonce)
        self.assert_refused(again, 401, "replay|nonce")
        self.refusal_logged(r"refused GET /v1/status .*nonce")
        # The very same header, byte for byte, is refused too.
        header = auth_header(self.agent.key, "GET", "/v1/stats")
        self.assertEqual(http_request(self.agent.mgmt_port, "GET", "/v1/stats", None,
                                      {"Authorization": header}).status, 200)
        r = http_request(self.agent.mgmt_port, "GET", "/v1/stats", None, {"Authorization": header})
        self.assert_refused(r, 401, "replay|nonce")

    def test_clock_skew(self):
        now = int(time.time())
        for ts in (now - 301 - 5, now + 301 + 5):
            r = self.agent.mgmt("GET", "/v1/status", ts=ts)
            self.assert_refused(r, 401, "timestamp|clock")
        self.refusal_logged(r"refused GET /v1/status .*timestamp")
        # Inside the window is fine.
        self.assertEqual(self.agent.mgmt("GET", "/v1/status", ts=now - 200).status, 200)
        self.assertEqual(self.agent.mgmt("GET", "/v1/status", ts=now + 200).status, 200)

    def test_refusals_never_log_the_key_or_signature(self):
        header = auth_header("wrong-key", "GET", "/v1/status")
        http_request(self.agent.mgmt_port, "GET", "/v1/status", None, {"Authorization": header})
        self.agent.mgmt("GET", "/v1/status", sign=False)
        self.refusal_logged(r"refused")
        sig = re.search(r"sig=([0-9a-f]+)", header).group(1)
        text = self.agent.log_text()
        self.assertNotIn(sig, text)
        self.assertNotIn(self.agent.key, text)
        self.assertNotIn("wrong-key", text)

    def test_routing_errors(self):
        r = self.agent.mgmt("GET", "/v1/nothing-here")
        self.assert_refused(r, 404, ".")
        r = self.agent.mgmt("DELETE", "/v1/status")
        self.assert_refused(r, 405, ".")
        r = self.agent.mgmt("PUT", "/v1/mode", b"{not json")
        self.assert_refused(r, 400, "JSON")
        r = self.agent.mgmt("POST", "/v1/trace", b"[1, 2]")
        self.assert_refused(r, 400, ".")

    def test_unsigned_request_to_unknown_path_is_401_not_404(self):
        r = self.agent.mgmt("GET", "/v1/nothing-here", sign=False)
        self.assertEqual(r.status, 401)


class NoKeyTest(AgentTestCase):
    agent_key = None

    def test_every_command_but_health_is_refused(self):
        self.assertEqual(self.agent.mgmt("GET", "/v1/health", sign=False).status, 200)
        for method, path in (("GET", "/v1/status"), ("PUT", "/v1/configuration"),
                             ("GET", "/metrics")):
            r = self.agent.mgmt(method, path, sign=False)
            self.assertEqual(r.status, 401, (method, path, r))
            self.assertIn("no management key", r.json()["error"])
            # Signing with any key does not help.
            r = self.agent.mgmt(method, path, key="anything")
            self.assertEqual(r.status, 401)
        self.assertTrue(self.agent.wait_for_log(r"refused .* no management key"))


class CidrTest(AgentTestCase):
    agent_env = {"CAP_MGMT_ALLOW": "10.0.0.0/8, 192.168.0.0/16"}

    def test_outside_the_allow_list_is_403(self):
        r = self.agent.mgmt("GET", "/v1/status")
        self.assertEqual(r.status, 403, r)
        self.assertIn("error", r.json())
        self.assertTrue(self.agent.wait_for_log(r"refused GET /v1/status from 127\.0\.0\.1.*CAP_MGMT_ALLOW"))
        # The web port is not affected.
        self.assertEqual(self.agent.web("GET", "/.cap/health").status, 200)


class CidrInsideTest(AgentTestCase):
    agent_env = {"CAP_MGMT_ALLOW": "10.0.0.0/8,127.0.0.0/8"}

    def test_inside_the_allow_list_is_served(self):
        self.assertEqual(self.agent.mgmt("GET", "/v1/status").status, 200)


class TlsTest(unittest.TestCase):
    """CAP_MGMT_TLS_CERT/KEY: the management port speaks TLS; the signature works the same."""

    def test_management_over_tls(self):
        import http.client
        import os
        import shutil
        import ssl
        import subprocess
        import tempfile
        if not shutil.which("openssl"):
            self.skipTest("the openssl command is not installed")
        tmp = tempfile.mkdtemp(prefix="cap-tls-")
        self.addCleanup(shutil.rmtree, tmp, True)
        cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", cert],
                       check=True, capture_output=True)
        agent = Agent(env={"CAP_MGMT_TLS_CERT": cert, "CAP_MGMT_TLS_KEY": key}).start()
        self.addCleanup(agent.cleanup)
        ctx = ssl.create_default_context(cafile=cert)
        ctx.check_hostname = False
        conn = http.client.HTTPSConnection("127.0.0.1", agent.mgmt_port, context=ctx, timeout=10)
        self.addCleanup(conn.close)
        conn.request("GET", "/v1/status",
                     headers={"Authorization": auth_header(agent.key, "GET", "/v1/status")})
        r = conn.getresponse()
        self.assertEqual(r.status, 200)
        self.assertEqual(json.loads(r.read())["name"], "test-agent")
        # Plain HTTP on the TLS port gets no answer.
        try:
            reply = http_request(agent.mgmt_port, "GET", "/v1/health", timeout=5)
        except (OSError, http.client.HTTPException):
            reply = None
        self.assertTrue(reply is None or reply.status != 200, reply)


class BadAllowListTest(unittest.TestCase):

    def test_an_invalid_allow_list_stops_the_agent(self):
        agent = Agent(env={"CAP_MGMT_ALLOW": "10.0.0.0/99"})
        self.addCleanup(agent.cleanup)
        agent.start(wait=False)
        self.assertNotEqual(agent.wait_exit(20), 0)
        self.assertIn("CAP_MGMT_ALLOW", agent.log_text())


if __name__ == "__main__":
    unittest.main()
