"""Proxy mode against a local origin: headers, bodies, a 5 MB body both ways, the network
rules (HttpServerExecute, HttpResponseAddition, HttpClient), origin down, stopped rules;
large origin answers stream through with bounded memory, at the client's pace."""

import hashlib
import http.client
import json
import socket
import time
import unittest

from agent_harness import (AgentTestCase, Origin, closed_port, configuration, process_memory_kb,
                           ruleset, stream_sha256)

MB = 1024 * 1024


def fetch_hashed(port, path, headers=None):
    """GET `path`, reading the body in pieces: (status, lower-case headers, length, sha256)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        h = hashlib.sha256()
        n = 0
        while True:
            piece = r.read(256 * 1024)
            if not piece:
                break
            h.update(piece)
            n += len(piece)
        return r.status, {k.lower(): v for k, v in r.getheaders()}, n, h.hexdigest()
    finally:
        conn.close()


def passthrough_config(origin_url, extra_rules=None, start=None):
    """Rules that answer /local themselves and leave every other request to the origin
    (or to `extra_rules`, starting at node `start`)."""
    rules = {
        "isLocal": {"rule": "IfCondition", "with": {"condition": "URI == '/local'"},
                    "then": {"true": ["local"]}},
        "local": {"rule": "HttpRespond", "with": {"body": "from the rules"}},
    }
    if extra_rules:
        rules["isLocal"]["then"]["false"] = [start]
        rules.update(extra_rules)
    return configuration("proxy", [ruleset("main", "isLocal", rules)], origin=origin_url)


class ProxyTest(AgentTestCase):

    def setUp(self):
        super().setUp()
        self.origin = Origin()
        self.addCleanup(self.origin.close)

    def test_passes_requests_the_rules_leave_alone(self):
        self.agent.deploy_ok(passthrough_config(self.origin.url))
        r = self.agent.web("GET", "/local")
        self.assertEqual((r.status, r.body), (200, b"from the rules"))
        self.assertEqual(self.origin.requests, [])

        r = self.agent.web("POST", "/echo/path?q=1&r=two", body=b"hello body",
                           headers={"Host": "shop.example", "X-Custom": "kept",
                                    "Content-Type": "text/plain", "Connection": "keep-alive, X-Hop",
                                    "X-Hop": "dropped", "X-Forwarded-For": "10.1.1.1"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers["x-origin"], "yes")
        echo = r.json()
        self.assertEqual(echo["method"], "POST")
        self.assertEqual(echo["path"], "/echo/path?q=1&r=two")
        h = echo["headers"]
        self.assertEqual(h["host"], "shop.example")
        self.assertEqual(h["x-custom"], "kept")
        self.assertNotIn("x-hop", h)
        self.assertEqual(h["x-forwarded-for"], "10.1.1.1, 127.0.0.1")
        self.assertEqual(h["x-forwarded-proto"], "http")
        self.assertEqual(h["x-forwarded-host"], "shop.example")
        self.assertEqual(echo["body_length"], 10)
        self.assertEqual(echo["body_sha256"], hashlib.sha256(b"hello body").hexdigest())

    def test_large_bodies_both_ways(self):
        self.agent.deploy_ok(passthrough_config(self.origin.url))
        big = bytes((i * 7) % 256 for i in range(5 * 1024 * 1024))
        r = self.agent.web("PUT", "/echo/upload", body=big,
                           headers={"Content-Type": "application/octet-stream"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["body_length"], len(big))
        self.assertEqual(r.json()["body_sha256"], hashlib.sha256(big).hexdigest())

        n = 5 * 1024 * 1024
        r = self.agent.web("GET", f"/big?bytes={n}")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, bytes(i % 251 for i in range(n)))

    def test_a_200_mb_answer_streams_through_in_bounded_memory(self):
        self.agent.deploy_ok(passthrough_config(self.origin.url))
        n = 200 * MB
        status, headers, length, digest = fetch_hashed(self.agent.web_port, f"/stream?bytes={n}")
        self.assertEqual(status, 200)
        self.assertEqual(headers["content-length"], str(n))  # the origin's length is kept
        self.assertEqual((length, digest), (n, stream_sha256(n)))
        peak_kb = process_memory_kb(self.agent.proc.pid)
        self.assertLess(peak_kb, 64 * 1024, f"agent peak RSS {peak_kb} kB for a {n} byte answer")
        # The connection and the agent go on serving.
        self.assertEqual(self.agent.web("GET", "/local").body, b"from the rules")

    def test_a_chunked_answer_of_unknown_length_streams_chunked(self):
        self.agent.deploy_ok(passthrough_config(self.origin.url))
        n = 3 * MB + 12345
        status, headers, length, digest = fetch_hashed(self.agent.web_port,
                                                       f"/stream?bytes={n}&chunked=1")
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("transfer-encoding"), "chunked")
        self.assertNotIn("content-length", headers)
        self.assertEqual((length, digest), (n, stream_sha256(n)))

    def test_a_slow_client_holds_the_origin_back(self):
        self.agent.deploy_ok(passthrough_config(self.origin.url))
        n = 100 * MB
        s = socket.create_connection(("127.0.0.1", self.agent.web_port), timeout=30)
        self.addCleanup(s.close)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.sendall(f"GET /stream?bytes={n} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)
        head, _, first = data.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
        time.sleep(2)  # the client reads nothing: the agent must not read the origin dry
        self.assertLess(self.origin.stream_sent, 40 * MB)
        self.assertLess(process_memory_kb(self.agent.proc.pid), 64 * 1024)
        h = hashlib.sha256(first)
        got = len(first)
        while got < n:
            piece = s.recv(1024 * 1024)
            self.assertTrue(piece, f"the connection closed after {got} bytes")
            h.update(piece)
            got += len(piece)
        self.assertEqual((got, h.hexdigest()), (n, stream_sha256(n)))

    def test_header_edits_apply_to_a_streamed_answer(self):
        extra = {
            "addHeader": {"rule": "HttpResponseAddition", "with": {
                "add_headers": {"X-Added": "by-cap"}, "remove_headers": ["X-Remove-Me"]}},
        }
        self.agent.deploy_ok(passthrough_config(self.origin.url, extra, "addHeader"))
        for chunked in ("", "&chunked=1"):
            n = 2 * MB
            status, headers, length, digest = fetch_hashed(self.agent.web_port,
                                                           f"/stream?bytes={n}{chunked}")
            self.assertEqual(status, 200)
            self.assertEqual(headers["x-added"], "by-cap")
            self.assertEqual(headers["x-origin"], "yes")
            self.assertNotIn("x-remove-me", headers)
            self.assertEqual((length, digest), (n, stream_sha256(n)))

    def test_a_body_edit_on_a_large_answer_buffers_it(self):
        extra = {
            "replace": {"rule": "HttpResponseAddition", "with": {"body": "replaced"}},
        }
        self.agent.deploy_ok(passthrough_config(self.origin.url, extra, "replace"))
        r = self.agent.web("GET", f"/stream?bytes={2 * MB}")
        self.assertEqual((r.status, r.body), (200, b"replaced"))

    def test_response_addition_on_a_proxied_response(self):
        extra = {
            "addHeader": {"rule": "HttpResponseAddition", "with": {
                "add_headers": {"X-Added": "by-cap", "X-Path": "${URI}"},
                "remove_headers": ["X-Remove-Me"]}},
        }
        self.agent.deploy_ok(passthrough_config(self.origin.url, extra, "addHeader"))
        r = self.agent.web("GET", "/echo/x")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers["x-added"], "by-cap")
        self.assertEqual(r.headers["x-path"], "/echo/x")
        self.assertEqual(r.headers["x-origin"], "yes")
        self.assertNotIn("x-remove-me", r.headers)
        self.assertEqual(r.json()["path"], "/echo/x")

    def test_server_execute_with_overrides_and_body_replacement(self):
        extra = {
            "exec": {"rule": "HttpServerExecute", "with": {
                "path": "/echo/rewritten", "add_headers": {"X-Via": "cap"},
                "remove_headers": ["X-Secret"]},
                "then": {"ok": ["check"], "error": ["down"]}},
            "check": {"rule": "IfCondition", "with": {"condition": "ORIGIN_STATUS == 200"},
                      "then": {"true": ["rewrite"]}},
            "rewrite": {"rule": "HttpResponseAddition", "with": {
                "body": "origin said ${ORIGIN_STATUS}, path ${json(ORIGIN_BODY)}",
                "add_headers": {"X-Seen": "${ORIGIN_HEADERS['x-origin']}"}}},
            "down": {"rule": "HttpRespond", "with": {"status": 599, "body": "${ORIGIN_ERROR}"}},
        }
        self.agent.deploy_ok(passthrough_config(self.origin.url, extra, "exec"))
        r = self.agent.web("GET", "/anything?keep=1", headers={"X-Secret": "s", "X-Other": "o"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers["x-seen"], "yes")
        self.assertTrue(r.body.startswith(b"origin said 200, path "), r.body)
        seen = self.origin.requests[-1]
        self.assertEqual(seen["path"], "/echo/rewritten?keep=1")
        self.assertEqual(seen["headers"]["x-via"], "cap")
        self.assertNotIn("x-secret", seen["headers"])
        self.assertEqual(seen["headers"]["x-other"], "o")
        self.assertEqual(len(self.origin.requests), 1)  # forwarded once, not proxied again

    def test_http_client_rule(self):
        files = configuration("client", [ruleset("main", "call", {
            "call": {"rule": "HttpClient", "with": {
                "url": self.origin.url + "/echo/called", "method": "POST", "body": "ping",
                "headers": {"X-Call": "1"}, "output": "R"},
                "then": {"ok": ["ok"], "error": ["err"], "timeout": ["slow"]}},
            "ok": {"rule": "HttpRespond", "with": {
                "body": "${R.status} ${R.headers['x-origin']}",
                "headers": {"X-Len": "${len(R.body)}"}}},
            "err": {"rule": "HttpRespond", "with": {"status": 502, "body": "error ${R.error}"}},
            "slow": {"rule": "HttpRespond", "with": {"status": 504, "body": "timeout"}},
        })])
        self.agent.deploy_ok(files)
        r = self.agent.web("GET", "/")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.body.startswith(b"200 yes"), r.body)
        self.assertEqual(self.origin.requests[-1]["body"], b"ping")
        self.assertEqual(self.origin.requests[-1]["headers"]["x-call"], "1")

    def test_http_client_error_and_timeout_chain_points(self):
        dead = closed_port()
        files = configuration("client", [ruleset("main", "which", {
            "which": {"rule": "IfCondition", "with": {"condition": "URI == '/dead'"},
                      "then": {"true": ["dead"], "false": ["slow"]}},
            "dead": {"rule": "HttpClient", "with": {"url": f"http://127.0.0.1:{dead}/", "output": "R"},
                     "then": {"ok": ["ok"], "error": ["err"], "timeout": ["late"]}},
            "slow": {"rule": "HttpClient", "with": {"url": self.origin.url + "/slow?ms=3000",
                                                    "timeout_ms": 300, "output": "R"},
                     "then": {"ok": ["ok"], "error": ["err"], "timeout": ["late"]}},
            "ok": {"rule": "HttpRespond", "with": {"body": "ok"}},
            "err": {"rule": "HttpRespond", "with": {"status": 502, "body": "error"}},
            "late": {"rule": "HttpRespond", "with": {"status": 504, "body": "timeout"}},
        })])
        self.agent.deploy_ok(files)
        r = self.agent.web("GET", "/dead")
        self.assertEqual((r.status, r.body), (502, b"error"))
        r = self.agent.web("GET", "/slow")
        self.assertEqual((r.status, r.body), (504, b"timeout"))

    def test_origin_down_gives_502(self):
        self.agent.deploy_ok(passthrough_config(f"http://127.0.0.1:{closed_port()}"))
        r = self.agent.web("GET", "/anything")
        self.assertEqual(r.status, 502)
        self.assertIn("text/html", r.headers["content-type"])
        self.assertEqual(self.agent.web("GET", "/local").body, b"from the rules")

    def test_stopped_rules_pass_everything_through(self):
        self.agent.deploy_ok(passthrough_config(self.origin.url))
        self.assertEqual(self.agent.mgmt("POST", "/v1/configuration/stop").status, 200)
        r = self.agent.web("GET", "/local")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["path"], "/local")  # the origin answered
        self.assertEqual(self.agent.mgmt("POST", "/v1/configuration/start").status, 200)
        self.assertEqual(self.agent.web("GET", "/local").body, b"from the rules")

    def test_rule_error_gives_500_and_a_log_line(self):
        files = configuration("err", [ruleset("main", "bad", {
            "bad": {"rule": "SetVariable", "with": {"name": "X", "value": "${1 / 0}"}},
        })], origin=self.origin.url)
        self.agent.deploy_ok(files)
        r = self.agent.web("GET", "/boom")
        self.assertEqual(r.status, 500)
        self.assertIn("text/html", r.headers["content-type"])
        self.assertTrue(self.agent.wait_for_log(r"rule error on GET /boom: rule set main, node bad"))
        self.assertEqual(self.origin.requests, [])


if __name__ == "__main__":
    unittest.main()
