"""Web port limits: a slow client gets 408, oversized heads 431, oversized bodies 413; the
agent keeps serving others meanwhile. The management port answers the same errors with a
JSON body."""

import json
import re
import socket
import time
import unittest

from agent_harness import AgentTestCase, hello_config


def read_reply(sock, timeout=10):
    """The status and body of a closing response read whole from `sock`."""
    sock.settimeout(timeout)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), head.decode("latin-1").lower(), body


def read_until(sock, marker, timeout=10):
    """What `sock` sends until `marker` has arrived or the connection closed."""
    sock.settimeout(timeout)
    data = b""
    while marker not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def read_status(sock, timeout=10):
    line = read_until(sock, b"\r\n", timeout).split(b"\r\n", 1)[0]
    return int(line.split()[1]) if line.startswith(b"HTTP/1.") else None


def read_kept_alive(sock, timeout=10):
    """The status and body of one response with a Content-Length, the connection left open."""
    head, found, body = read_until(sock, b"\r\n\r\n", timeout).partition(b"\r\n\r\n")
    if not found:
        raise AssertionError("closed before the answer: " + repr(head))
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    while len(body) < length:
        body += sock.recv(4096)
    return int(head.split()[1]), body


class LimitsTest(AgentTestCase):
    agent_env = {"CAP_READ_TIMEOUT_MS": "1000", "CAP_MAX_BODY_BYTES": "1024",
                 "CAP_MAX_HEADER_BYTES": "4096", "CAP_IDLE_TIMEOUT_MS": "1500"}

    def setUp(self):
        super().setUp()
        self.agent.deploy_ok(hello_config())

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.agent.web_port), timeout=10)
        self.addCleanup(s.close)
        return s

    def test_slow_client_gets_408(self):
        s = self.connect()
        s.sendall(b"GET /hello?name=slow HTTP/1.1\r\nHost: x\r\n")  # the head never ends
        started = time.monotonic()
        # Others are served meanwhile.
        self.assertEqual(self.agent.web("GET", "/hello?name=Fast").body, b"Hello, Fast!")
        self.assertEqual(read_status(s), 408)
        self.assertLess(time.monotonic() - started, 8)

    def test_idle_keep_alive_connection_after_a_quiet_spell_is_closed(self):
        # A quiet web port arms no timer; the connection that ends the quiet spell must
        # still be closed once it has been idle for CAP_IDLE_TIMEOUT_MS.
        time.sleep(2)
        s = self.connect()
        s.sendall(b"GET /hello?name=A HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(read_kept_alive(s), (200, b"Hello, A!"))
        s.sendall(b"GET /hello?name=B HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(read_kept_alive(s), (200, b"Hello, B!"))
        s.settimeout(30)
        self.assertEqual(s.recv(4096), b"")  # closed silently (no 408) by the agent

    def test_slow_body_gets_408(self):
        s = self.connect()
        s.sendall(b"POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly a part")
        self.assertEqual(read_status(s), 408)

    def test_oversized_head_gets_431(self):
        s = self.connect()
        s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8000 + b"\r\n\r\n")
        self.assertEqual(read_status(s), 431)
        self.assertEqual(self.agent.web("GET", "/hello?name=B").status, 200)

    def test_oversized_body_gets_413(self):
        r = self.agent.web("POST", "/hello", body=b"x" * 5000)
        self.assertEqual(r.status, 413)
        r = self.agent.web("POST", "/hello?name=ok", body=b"x" * 1000)
        self.assertEqual(r.status, 200)

    def test_malformed_request_gets_400(self):
        s = self.connect()
        s.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        self.assertEqual(read_status(s), 400)


class ManagementLimitsTest(AgentTestCase):
    agent_env = {"CAP_MAX_MGMT_BODY_BYTES": "2048"}

    def test_oversized_management_body_gets_413(self):
        r = self.agent.mgmt("PUT", "/v1/configuration", b"x" * 4096)
        self.assertEqual(r.status, 413)
        self.assertEqual(r.headers["content-type"], "application/json")
        self.assertEqual(r.json(), {"error": "the request body is too large", "details": []})
        # Nothing changed: the agent is still blank and answers the next request.
        r = self.agent.mgmt("GET", "/v1/status")
        self.assertEqual(r.status, 200, r)
        self.assertFalse(r.json()["ready"])
        self.assertIsNone(r.json()["configuration"])

    def test_malformed_management_request_gets_400_with_json(self):
        s = socket.create_connection(("127.0.0.1", self.agent.mgmt_port), timeout=10)
        self.addCleanup(s.close)
        s.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        status, head, body = read_reply(s)
        self.assertEqual(status, 400)
        self.assertIn("content-type: application/json", head)
        self.assertEqual(json.loads(body), {"error": "the request is malformed", "details": []})
        self.assertEqual(self.agent.mgmt("GET", "/v1/health").status, 200)

    def test_malformed_management_json_gets_400_with_json(self):
        r = self.agent.mgmt("PUT", "/v1/mode", b"{not json")
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.json()["error"], "the body is not valid JSON")
        self.assertIsInstance(r.json()["details"], list)


if __name__ == "__main__":
    unittest.main()
