"""Rule sets offered as MCP tools on the web port: a real MCP client (the official
TypeScript SDK, npm @modelcontextprotocol/sdk, in tests/mcp-client) lists and calls them,
keeps a session, hears list changes on its event stream and progress of a slow tool; raw
HTTP checks the transport's edges (sessions, versions, origins, streams), the bearer token,
and the configuration errors."""

import http.client
import http.server
import json
import os
import queue
import shutil
import subprocess
import threading
import time
import unittest

from agent_harness import SOURCE_DIR, AgentTestCase, configuration, http_request, ruleset

TOKEN = "mcp-token-5e6f7a8b9c0d1e2f"
CLIENT_DIR = os.path.join(SOURCE_DIR, "tests", "mcp-client")


def ensure_client():
    """npm ci in tests/mcp-client when its node_modules is missing (CI: a fresh checkout)."""
    if os.path.isdir(os.path.join(CLIENT_DIR, "node_modules", "@modelcontextprotocol", "sdk")):
        return
    npm = shutil.which("npm")
    if not npm:
        raise AssertionError("npm is needed for the MCP client test (scripts/install-deps installs nodejs and npm)")
    r = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=CLIENT_DIR,
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise AssertionError("npm ci in tests/mcp-client failed:\n" + r.stdout + r.stderr)


def tools_config(path="/mcp", tools=("lookup_order", "faq"), token="${vault:mcp.token}", mcp=None,
                 slow_url=None, **extra):
    main = ruleset("main", "hello", {
        "hello": {"rule": "HttpRespond", "with": {"body": "site ${URI}"}}})
    order = ruleset("lookup_order", "find", {
        "find": {"rule": "CsvLookup", "with": {"file": "data/orders.csv", "key": "${order_id}",
                                                "output": "RESULT"},
                 "then": {"not_found": ["missing"]}},
        "missing": {"rule": "RuleSetExit", "with": {"name": "not_found"}},
    }, exits=["not_found"])
    order["description"] = "Finds an order by its id: status and delivery date."
    order["params"] = [{"name": "order_id", "type": "string", "required": True,
                        "description": "The order id, like A-1001"}]
    faq = ruleset("faq", "answer", {
        "answer": {"rule": "SetVariable", "with": {"name": "RESULT", "value": "Returns within ${days} days."}}})
    faq["description"] = "Answers the returns question."
    faq["params"] = [{"name": "days", "type": "integer"}]
    broken = ruleset("broken", "boom", {
        "boom": {"rule": "SetVariable", "with": {"name": "X", "value": "${RESULT / 0}"}}})
    broken["description"] = "Fails."
    sets = [main, order, faq, broken]
    if slow_url:
        slow = ruleset("slow", "ask", {
            "ask": {"rule": "HttpClient", "with": {"url": slow_url, "timeout_ms": 120000,
                                                   "output": "ANSWER"},
                    "then": {"ok": ["keep"]}},
            "keep": {"rule": "SetVariable", "with": {"name": "RESULT", "value": "${ANSWER['body']}"}}})
        slow["description"] = "Asks a slow service."
        sets.append(slow)
    settings = {"path": path, "token": token, "tools": list(tools)}
    settings.update(mcp or {})
    files = configuration("shop", sets, description="The shop's tools.", mcp=settings, **extra)
    files["data/orders.csv"] = b"order_id,status,delivery\nA-1001,shipped,2026-12-01\nA-1002,packing,\n"
    return files


INIT = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
LIST_CHANGED = {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}


class EventStream:
    """A response read as server-sent events, as they arrive (raw HTTP)."""

    def __init__(self, port, method, path, headers, body=None):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=90)
        self.conn.request(method, path, body=body, headers=headers)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.headers = {k.lower(): v for k, v in self.resp.getheaders()}

    def next(self):
        """("comment", text), ("message", decoded JSON), or None when the stream ended."""
        data = []
        while True:
            line = self.resp.readline()
            if not line:
                return None
            line = line.decode().rstrip("\r\n")
            if line == "":
                if data:
                    return ("message", json.loads("\n".join(data)))
            elif line.startswith(":"):
                return ("comment", line[1:].strip())
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())

    def until(self, want):
        """Reads events until `want(event)` holds; returns that event and the ones before."""
        seen = []
        while True:
            ev = self.next()
            if ev is None:
                raise AssertionError(f"the stream ended before the event looked for; got {seen}")
            seen.append(ev)
            if want(ev):
                return ev, seen

    def close(self):
        self.conn.close()


class SlowService:
    """An HTTP service whose answer waits until release() (a slow tool's backend)."""

    def __init__(self):
        self.released = threading.Event()
        self.asked = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                outer.asked.set()
                outer.released.wait(120)
                body = b"the slow answer"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/slow"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def release(self):
        self.released.set()

    def close(self):
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


class McpTest(AgentTestCase):
    def setUp(self):
        super().setUp()
        r = self.agent.mgmt("PUT", "/v1/vault", {"mcp": {"token": TOKEN}})
        self.assertEqual(r.status, 200, r)
        self.session = None

    def rpc(self, body, token=TOKEN, path="/mcp", headers=None, session=True):
        """POSTs `body`; with the test's session (self.session) unless session is False."""
        h = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        if token:
            h["Authorization"] = "Bearer " + token
        if session and self.session:
            h["Mcp-Session-Id"] = self.session
        h.update(headers or {})
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.agent.web("POST", path, data, h)

    def initialize(self, path="/mcp", version="2025-06-18"):
        """Opens a session (self.session) and returns the initialize reply."""
        init = json.loads(json.dumps(INIT))
        init["params"]["protocolVersion"] = version
        r = self.rpc(init, path=path, session=False)
        self.assertEqual(r.status, 200, r)
        self.session = r.headers.get("mcp-session-id")
        self.assertRegex(self.session or "", r"^[0-9a-f]{32}$")
        return r

    def raw(self, method, headers=None, session=None, token=TOKEN, body=None):
        h = {"Authorization": "Bearer " + token}
        if session:
            h["Mcp-Session-Id"] = session
        h.update(headers or {})
        return self.agent.web(method, "/mcp", body, h)

    def stream(self, method="GET", session=None, body=None, headers=None):
        h = {"Authorization": "Bearer " + TOKEN, "Accept": "text/event-stream"}
        if method == "POST":
            h.update({"Content-Type": "application/json", "Accept": "application/json, text/event-stream"})
        if session or self.session:
            h["Mcp-Session-Id"] = session or self.session
        h.update(headers or {})
        es = EventStream(self.agent.web_port, method, "/mcp", h,
                         json.dumps(body).encode() if body is not None else None)
        self.addCleanup(es.close)
        return es

    def sdk(self, options=(), token=TOKEN, path="/mcp"):
        ensure_client()
        url = f"http://127.0.0.1:{self.agent.web_port}{path}"
        r = subprocess.run(["node", "client.mjs", url, token, json.dumps(options)], cwd=CLIENT_DIR,
                           capture_output=True, text=True, timeout=180)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout.strip().splitlines()[-1])

    def sdk_process(self, options, token=TOKEN):
        """The SDK client running in the background: its stdout lines come through a queue."""
        ensure_client()
        url = f"http://127.0.0.1:{self.agent.web_port}/mcp"
        proc = subprocess.Popen(["node", "client.mjs", url, token, json.dumps(options)], cwd=CLIENT_DIR,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        def stop():
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdout.close()
            proc.stderr.close()
        self.addCleanup(stop)
        lines = queue.Queue()

        def pump():
            for line in proc.stdout:
                lines.put(json.loads(line))
            lines.put(None)
        threading.Thread(target=pump, daemon=True).start()
        return proc, lines

    def next_line(self, lines, proc):
        line = lines.get(timeout=120)
        if line is None:
            raise AssertionError("the MCP client ended early: " + proc.stderr.read())
        return line

    # ---- the SDK client

    def test_sdk_client_lists_and_calls_tools(self):
        self.agent.deploy_ok(tools_config())
        out = self.sdk({"calls": [{"name": "lookup_order", "arguments": {"order_id": "A-1001"}},
                                  {"name": "lookup_order", "arguments": {"order_id": "Z-9"}},
                                  {"name": "faq", "arguments": {"days": 30}},
                                  {"name": "lookup_order", "arguments": {}},
                                  {"name": "broken", "arguments": {}},
                                  {"name": "nosuch", "arguments": {}}],
                        "terminate": True})
        self.assertNotIn("error", out, out)
        self.assertEqual(out["server"]["name"], "shop")
        self.assertEqual(out["protocol"], "2025-11-25")
        self.assertEqual(out["capabilities"], {"tools": {"listChanged": True}})
        self.assertEqual(out["instructions"], "The shop's tools.")
        self.assertEqual([t["name"] for t in out["tools"]], ["lookup_order", "faq"])
        self.assertEqual(out["tools"][0]["description"], "Finds an order by its id: status and delivery date.")
        self.assertEqual(out["tools"][0]["inputSchema"], {
            "type": "object",
            "properties": {"order_id": {"type": "string", "description": "The order id, like A-1001"}},
            "required": ["order_id"], "additionalProperties": False})
        found, missing, faq, bad, broken, unknown = out["calls"]
        self.assertFalse(found["isError"])
        self.assertEqual(json.loads(found["content"][0]["text"]),
                         {"order_id": "A-1001", "status": "shipped", "delivery": "2026-12-01"})
        self.assertEqual(missing["content"], [{"type": "text", "text": "not_found"}])
        self.assertEqual(faq["content"][0]["text"], "Returns within 30 days.")
        self.assertTrue(bad["isError"])
        self.assertEqual(bad["content"][0]["text"], "missing required argument 'order_id'")
        # Offered tools only: "broken" is a rule set, but not in mcp.tools.
        self.assertIn("unknown tool 'broken'", broken.get("thrown", "") + json.dumps(broken))
        self.assertIn("unknown tool 'nosuch'", unknown.get("thrown", "") + json.dumps(unknown))
        # The session: initialize opened it, every later request carried it, DELETE ended it.
        session = out["session"]
        self.assertRegex(session, r"^[0-9a-f]{32}$")
        self.assertEqual(out["session_after_calls"], session)
        self.assertIsNone(out["session_after_terminate"])
        reqs = out["requests"]
        self.assertEqual((reqs[0]["method"], reqs[0]["session"], reqs[0]["status"]), ("POST", None, 200))
        self.assertTrue(all(q["session"] == session for q in reqs[1:]), reqs)
        self.assertIn(("GET", 200, "text/event-stream"),
                      [(q["method"], q["status"], q["contentType"]) for q in reqs])
        self.assertEqual([(q["method"], q["status"]) for q in reqs if q["method"] == "DELETE"], [("DELETE", 204)])
        # The ended session is gone for everyone.
        self.session = session
        r = self.rpc(PING)
        self.assertEqual(r.status, 404, r)
        # The site itself still answers on the same port.
        self.assertEqual(self.agent.web("GET", "/other").text(), "site /other")
        stats = self.agent.mgmt("GET", "/v1/stats").json()["mcp"]
        self.assertEqual((stats["sessions_opened"], stats["sessions_ended_by_clients"], stats["sessions"]), (1, 1, 0))
        self.assertEqual((stats["tool_calls"], stats["tool_errors"]), (6, 3))
        metrics = self.agent.mgmt("GET", "/metrics").text()
        self.assertIn("cap_mcp_tool_calls_total 6\n", metrics)
        self.assertIn("cap_mcp_sessions_ended_total 1\n", metrics)
        self.assertNotIn(session, metrics + json.dumps(stats) + self.agent.log_text())

    def test_sdk_client_with_a_wrong_token_is_refused(self):
        self.agent.deploy_ok(tools_config())
        out = self.sdk(token="wrong-token")
        self.assertIn("error", out)
        self.assertIn("a valid bearer token is required", out["error"])

    def test_sdk_client_hears_that_the_tool_list_changed(self):
        self.agent.deploy_ok(tools_config())
        proc, lines = self.sdk_process({"listen": True})
        self.assertEqual(self.next_line(lines, proc), {"event": "stream-open"})
        self.agent.deploy_ok(tools_config(tools=["faq"]))
        out = self.next_line(lines, proc)
        self.assertNotIn("error", out, out)
        self.assertEqual([t["name"] for t in out["tools"]], ["lookup_order", "faq"])
        self.assertEqual([t["name"] for t in out["tools_after"]], ["faq"])

    def test_sdk_client_gets_progress_of_a_slow_tool(self):
        slow = SlowService()
        self.addCleanup(slow.close)
        self.agent.deploy_ok(tools_config(tools=["slow", "faq"], slow_url=slow.url))
        proc, lines = self.sdk_process({"progress": True, "calls": [{"name": "slow", "arguments": {}}]})
        first = self.next_line(lines, proc)
        self.assertEqual(first["progress"]["progress"], 0)
        self.assertEqual(first["progress"]["message"], "slow: started")
        # The service answers only once the client heard that the tool is still running.
        second = self.next_line(lines, proc)
        self.assertEqual(second["progress"]["progress"], 1, second)
        self.assertRegex(second["progress"]["message"], r"^slow: running for \d+ s$")
        slow.release()
        while True:
            out = self.next_line(lines, proc)
            if list(out) != ["progress"]:  # not one more progress line: the outcome
                break
        self.assertNotIn("error", out, out)
        self.assertEqual(out["calls"], [{"content": [{"type": "text", "text": "the slow answer"}], "isError": False}])
        self.assertGreaterEqual(len(out["progress"]), 2)
        self.assertEqual([p["progress"] for p in out["progress"]], sorted(set(p["progress"] for p in out["progress"])))
        call = [q for q in out["requests"] if q["method"] == "POST"][-1]
        self.assertEqual((call["status"], call["contentType"]), (200, "text/event-stream"))

    # ---- sessions over raw HTTP

    def test_protocol(self):
        self.agent.deploy_ok(tools_config(path="/agents/mcp"))
        r = self.initialize(path="/agents/mcp", version="2025-03-26")
        self.assertEqual(r.headers["content-type"], "application/json")
        self.assertEqual(r.json(), {"jsonrpc": "2.0", "id": 0, "result": {
            "protocolVersion": "2025-03-26", "capabilities": {"tools": {"listChanged": True}},
            "serverInfo": {"name": "shop", "version": r.json()["result"]["serverInfo"]["version"]},
            "instructions": "The shop's tools."}})
        first = self.session
        # Each initialize opens a session of its own; an unknown revision gets the newest.
        r = self.rpc({"jsonrpc": "2.0", "id": "i2", "method": "initialize", "params": {"protocolVersion": "1999-01-01"}},
                     path="/agents/mcp", session=False)
        self.assertEqual(r.json()["result"]["protocolVersion"], "2025-11-25")
        self.assertNotEqual(r.headers["mcp-session-id"], first)
        # Notifications and client responses: 202, no body.
        r = self.rpc({"jsonrpc": "2.0", "method": "notifications/initialized"}, path="/agents/mcp")
        self.assertEqual((r.status, r.body), (202, b""))
        r = self.rpc({"jsonrpc": "2.0", "id": 9, "result": {}}, path="/agents/mcp")
        self.assertEqual((r.status, r.body), (202, b""))
        r = self.rpc({"jsonrpc": "2.0", "id": 5, "method": "ping"}, path="/agents/mcp",
                     headers={"MCP-Protocol-Version": "2025-03-26"})
        self.assertEqual(r.json(), {"jsonrpc": "2.0", "id": 5, "result": {}})
        self.assertEqual(r.headers["mcp-session-id"], first)
        r = self.rpc({"jsonrpc": "2.0", "id": 6, "method": "resources/list"}, path="/agents/mcp")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["error"], {"code": -32601, "message": "method 'resources/list' is not offered by this server"})
        for params in ({"arguments": {}}, {"name": "faq", "arguments": [1]}, "faq"):
            r = self.rpc({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params}, path="/agents/mcp")
            self.assertEqual(r.json()["error"]["code"], -32602, (params, r))
        # A batch (2025-03-26).
        r = self.rpc([{"jsonrpc": "2.0", "id": 1, "method": "ping"},
                      {"jsonrpc": "2.0", "method": "notifications/cancelled"},
                      {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                       "params": {"name": "faq", "arguments": {"days": 14}}}], path="/agents/mcp")
        self.assertEqual(r.status, 200, r)
        self.assertEqual([a["id"] for a in r.json()], [1, 2])
        self.assertEqual(r.json()[1]["result"]["content"][0]["text"], "Returns within 14 days.")
        r = self.rpc([{"jsonrpc": "2.0", "method": "notifications/cancelled"}], path="/agents/mcp")
        self.assertEqual((r.status, r.body), (202, b""))
        # A client that takes only event streams gets its answer as one.
        r = self.rpc(PING, path="/agents/mcp", headers={"Accept": "text/event-stream"})
        self.assertEqual((r.status, r.headers["content-type"]), (200, "text/event-stream"))
        self.assertIn('data: {"jsonrpc":"2.0","id":1,"result":{}}', r.text())
        # The configured path only: /mcp is the site's.
        self.assertEqual(self.agent.web("POST", "/mcp", b"{}").text(), "site /mcp")

    def test_session_errors(self):
        self.agent.deploy_ok(tools_config())
        self.initialize()
        good = self.session
        # No session id: 400, for every method that needs one.
        self.session = None
        r = self.rpc(PING)
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.json()["error"]["code"], -32000)
        self.assertIn("the Mcp-Session-Id header is required", r.json()["error"]["message"])
        for method, accept in (("GET", "text/event-stream"), ("DELETE", "application/json")):
            r = self.raw(method, {"Accept": accept})
            self.assertEqual(r.status, 400, (method, r))
        # An unknown (or ended) session: 404, so that clients start a new one.
        for sid in ("0" * 32, good + "x", "not a session"):
            self.session = sid
            r = self.rpc(PING)
            self.assertEqual(r.status, 404, (sid, r))
            self.assertEqual(r.json()["error"]["code"], -32001)
            self.assertIn("session not found", r.json()["error"]["message"])
            for method in ("GET", "DELETE"):
                self.assertEqual(self.raw(method, {"Accept": "text/event-stream"}, session=sid).status, 404)
        # Protocol versions: one this server does not speak, or not the session's: 400.
        self.session = good
        r = self.rpc(PING, headers={"MCP-Protocol-Version": "2030-01-01"})
        self.assertEqual(r.status, 400)
        self.assertIn("unsupported MCP-Protocol-Version '2030-01-01'", r.json()["error"]["message"])
        r = self.raw("GET", {"Accept": "text/event-stream", "MCP-Protocol-Version": "1.0"}, session=good)
        self.assertEqual(r.status, 400)
        r = self.rpc(PING, headers={"MCP-Protocol-Version": "2025-03-26"})
        self.assertEqual(r.status, 400)
        self.assertIn("is not the version this session negotiated ('2025-06-18')", r.json()["error"]["message"])
        # None of that harmed the session.
        r = self.rpc(PING, headers={"MCP-Protocol-Version": "2025-06-18"})
        self.assertEqual((r.status, r.json()["result"]), (200, {}))
        # initialize goes alone.
        r = self.rpc([INIT, PING], session=False)
        self.assertEqual(r.status, 400)
        self.assertEqual(r.json()["error"]["message"], "initialize must be sent alone, not in a batch")
        # DELETE ends it; then it is unknown.
        r = self.raw("DELETE", session=good)
        self.assertEqual((r.status, r.body), (204, b""))
        self.assertEqual(self.rpc(PING).status, 404)
        self.assertEqual(self.raw("DELETE", session=good).status, 404)
        self.assertNotIn(good, self.agent.log_text())

    def test_session_table_full(self):
        self.agent.deploy_ok(tools_config(mcp={"max_sessions": 2}))
        self.initialize()
        a = self.session
        self.initialize()
        b = self.session
        r = self.rpc(INIT, session=False)
        self.assertEqual(r.status, 503, r)
        self.assertNotIn("mcp-session-id", r.headers)
        self.assertEqual(r.headers["retry-after"], "30")
        self.assertIn("too many MCP sessions: all 2 are open (mcp.max_sessions)", r.json()["error"]["message"])
        self.assertTrue(self.agent.wait_for_log(r"MCP: refused a new session: all 2 sessions"))
        # The open sessions still work; ending one makes room.
        for sid in (a, b):
            self.session = sid
            self.assertEqual(self.rpc(PING).status, 200)
        metrics = self.agent.mgmt("GET", "/metrics").text()
        self.assertIn("cap_mcp_sessions 2\n", metrics)
        self.assertIn("cap_mcp_sessions_refused_total 1\n", metrics)
        self.assertEqual(self.raw("DELETE", session=a).status, 204)
        self.initialize()
        self.assertNotIn(self.session, (a, b))

    def test_idle_session_expires(self):
        self.agent.deploy_ok(tools_config(mcp={"session_ttl_s": 1, "max_sessions": 1}))
        self.initialize()
        idle = self.session
        # Idle for longer than the TTL: gone, and its place in the table is free.
        deadline = time.time() + 30
        while time.time() < deadline and self.rpc(INIT, session=False).status == 503:
            time.sleep(0.3)
        self.session = idle
        r = self.rpc(PING)
        self.assertEqual(r.status, 404, r)
        stats = self.agent.mgmt("GET", "/v1/stats").json()["mcp"]
        self.assertGreaterEqual(stats["sessions_expired"], 1)
        # With no request to notice it, the session the loop opened expires too; then the
        # table is empty (the housekeeping sleeps) and the next session still expires.
        for _ in range(2):
            self.assertEqual(self.open_sessions_after_expiry(), 0)
            self.initialize()
        self.assertEqual(self.open_sessions_after_expiry(), 0)

    def open_sessions_after_expiry(self):
        """The number of open sessions once it is 0, or after 30 s."""
        deadline = time.time() + 30
        while True:
            n = self.agent.mgmt("GET", "/v1/stats").json()["mcp"]["sessions"]
            if n == 0 or time.time() > deadline:
                return n
            time.sleep(0.2)

    def test_origins(self):
        self.agent.deploy_ok(tools_config())
        self.initialize()
        # Without mcp.origins: a browser's Origin must name the host it talks to.
        r = self.rpc(PING, headers={"Origin": "http://evil.example"})
        self.assertEqual(r.status, 403, r)
        self.assertEqual(r.json()["error"]["message"], "the Origin header does not match the Host")
        r = self.rpc(PING, headers={"Origin": f"http://127.0.0.1:{self.agent.web_port}"})
        self.assertEqual(r.status, 200, r)
        # With mcp.origins: those only, whatever the Host; no Origin (not a browser) passes.
        self.agent.deploy_ok(tools_config(mcp={"origins": ["https://app.example.com", "http://localhost:3000"]}))
        for origin, status in (("https://app.example.com", 200), ("http://localhost:3000", 200),
                               ("https://evil.example", 403), ("null", 403),
                               (f"http://127.0.0.1:{self.agent.web_port}", 403), (None, 200)):
            r = self.rpc(PING, headers={"Origin": origin} if origin else {})
            self.assertEqual(r.status, status, (origin, r))
        r = self.raw("GET", {"Accept": "text/event-stream", "Origin": "https://evil.example"}, session=self.session)
        self.assertEqual(r.status, 403)
        r = self.rpc(INIT, session=False, headers={"Origin": "https://evil.example"})
        self.assertEqual(r.status, 403)
        self.assertNotIn("mcp-session-id", r.headers)
        self.assertNotIn("access-control-allow-origin", r.headers)
        # A browser app on a listed origin: its preflight (no token) and its answers carry CORS
        # headers, so it can read them and the session id.
        r = self.agent.web("OPTIONS", "/mcp", headers={
            "Origin": "https://app.example.com", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, mcp-session-id"})
        self.assertEqual(r.status, 204, r)
        self.assertEqual(r.headers["access-control-allow-origin"], "https://app.example.com")
        self.assertEqual(r.headers["access-control-allow-methods"], "GET, POST, DELETE")
        self.assertIn("Mcp-Session-Id", r.headers["access-control-allow-headers"])
        self.assertIn("Authorization", r.headers["access-control-allow-headers"])
        r = self.agent.web("OPTIONS", "/mcp", headers={"Origin": "https://evil.example",
                                                      "Access-Control-Request-Method": "POST"})
        self.assertEqual(r.status, 403, r)
        self.assertNotIn("access-control-allow-origin", r.headers)
        r = self.rpc(INIT, session=False, headers={"Origin": "https://app.example.com"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers["access-control-allow-origin"], "https://app.example.com")
        self.assertIn("Mcp-Session-Id", r.headers["access-control-expose-headers"])
        r = self.rpc(PING, token="wrong", headers={"Origin": "https://app.example.com"})
        self.assertEqual((r.status, r.headers["access-control-allow-origin"]), (401, "https://app.example.com"))

    def test_stateless(self):
        self.agent.deploy_ok(tools_config(mcp={"sessions": False}))
        r = self.rpc(INIT, session=False)
        self.assertEqual(r.status, 200)
        self.assertNotIn("mcp-session-id", r.headers)
        self.assertEqual(r.json()["result"]["capabilities"], {"tools": {"listChanged": False}})
        r = self.rpc({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                      "params": {"name": "faq", "arguments": {"days": 7}}}, session=False)
        self.assertEqual(r.json()["result"]["content"][0]["text"], "Returns within 7 days.")
        for method in ("GET", "DELETE"):
            r = self.raw(method, {"Accept": "text/event-stream"})
            self.assertEqual((r.status, r.headers["allow"]), (405, "POST, OPTIONS"), (method, r))
        out = self.sdk({"calls": [{"name": "faq", "arguments": {"days": 3}}]})
        self.assertNotIn("error", out, out)
        self.assertIsNone(out["session"])
        self.assertEqual(out["calls"][0]["content"][0]["text"], "Returns within 3 days.")

    def test_bad_requests(self):
        self.agent.deploy_ok(tools_config())
        self.initialize()
        cases = [
            (b"{not json", 400, -32700),
            (b"[]", 400, -32600),
            (b'"hello"', 400, -32600),
            (json.dumps({"jsonrpc": "1.0", "id": 1, "method": "ping"}).encode(), 400, -32600),
            (json.dumps({"jsonrpc": "2.0", "id": 1}).encode(), 400, -32600),
            (json.dumps({"jsonrpc": "2.0", "id": [1], "method": "ping"}).encode(), 400, -32600),
            (json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": [1]}).encode(), 200, -32602),
        ]
        for body, status, code in cases:
            r = self.rpc(body)
            self.assertEqual(r.status, status, (body, r))
            self.assertEqual(r.json()["error"]["code"], code, (body, r))
        # Malformed JSON is refused before the session is looked at.
        r = self.rpc(b"{not json", session=False)
        self.assertEqual((r.status, r.json()["error"]["code"]), (400, -32700))
        for method in ("PUT", "PATCH"):
            r = self.raw(method, session=self.session)
            self.assertEqual(r.status, 405, r)
            self.assertEqual(r.headers["allow"], "GET, POST, DELETE, OPTIONS")
        r = self.raw("GET", {"Accept": "application/json"}, session=self.session)
        self.assertEqual(r.status, 406, r)
        self.assertIn("Accept: text/event-stream", r.json()["error"]["message"])
        r = self.rpc(PING, headers={"Accept": "text/html"})
        self.assertEqual(r.status, 406, r)
        r = self.rpc(PING, headers={"Content-Type": "text/plain"})
        self.assertEqual(r.status, 415, r)
        # The session survived every refusal.
        self.assertEqual(self.rpc(PING).json()["result"], {})

    def test_token(self):
        self.agent.deploy_ok(tools_config())
        self.initialize()
        ping = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
        for token in (None, "", "wrong", TOKEN + "x", TOKEN[:-1]):
            r = self.rpc(ping, token=token)
            self.assertEqual(r.status, 401, (token, r))
            self.assertEqual(r.headers["www-authenticate"], 'Bearer realm="cap-mcp"')
            self.assertNotIn(TOKEN.encode(), r.body)
            r = self.raw("GET", {"Accept": "text/event-stream"}, session=self.session, token=token or "")
            self.assertEqual(r.status, 401, (token, r))
        r = self.rpc(ping, headers={"Authorization": "Basic " + TOKEN})
        self.assertEqual(r.status, 401)
        self.assertEqual(self.raw("DELETE", session=self.session, token="wrong").status, 401)
        self.assertEqual(self.rpc(ping).status, 200)
        # A rotated token applies at once; the old one stops working.
        self.agent.mgmt("PUT", "/v1/vault", {"mcp": {"token": "rotated-token-123456"}})
        self.assertEqual(self.rpc(ping).status, 401)
        self.assertEqual(self.rpc(ping, token="rotated-token-123456").status, 200)
        # Without the credential every request is refused, and the log says why.
        self.agent.mgmt("PUT", "/v1/vault", {})
        self.assertEqual(self.rpc(ping, token="rotated-token-123456").status, 401)
        self.assertTrue(self.agent.wait_for_log(r"MCP: the token cannot be read.*vault credential 'mcp'"))
        self.assertNotIn(TOKEN, self.agent.log_text())

    # ---- event streams

    def test_event_stream(self):
        self.agent.deploy_ok(tools_config(mcp={"keepalive_s": 1}))
        self.initialize()
        es = self.stream()
        self.assertEqual((es.status, es.headers["content-type"]), (200, "text/event-stream"))
        self.assertEqual(es.headers["mcp-session-id"], self.session)
        self.assertEqual(es.headers["cache-control"], "no-cache")
        self.assertEqual(self.agent.mgmt("GET", "/v1/stats").json()["mcp"]["event_streams"], 1)
        # Keep-alive comments while nothing happens.
        self.assertEqual(es.next(), ("comment", "keep-alive"))
        # A new configuration with another tool list: the stream hears of it.
        self.agent.deploy_ok(tools_config(tools=["lookup_order"], mcp={"keepalive_s": 1}))
        ev, seen = es.until(lambda e: e[0] == "message")
        self.assertEqual(ev, ("message", LIST_CHANGED))
        r = self.rpc({"jsonrpc": "2.0", "id": 3, "method": "tools/list"})
        self.assertEqual([t["name"] for t in r.json()["result"]["tools"]], ["lookup_order"])
        # The same tool list again (a new configuration, same tools): nothing to tell, while a
        # changed description is a change.
        self.agent.deploy_ok(tools_config(tools=["lookup_order"], mcp={"keepalive_s": 1, "max_sessions": 99}))
        files = tools_config(tools=["lookup_order"], mcp={"keepalive_s": 1})
        order = json.loads(files["rulesets/lookup_order.json"])
        order["description"] = "Finds orders."
        files["rulesets/lookup_order.json"] = json.dumps(order).encode()
        self.agent.deploy_ok(files)
        ev, seen = es.until(lambda e: e[0] == "message")
        self.assertEqual(ev, ("message", LIST_CHANGED))
        self.assertTrue(all(e == ("comment", "keep-alive") for e in seen[:-1]), seen)
        self.assertTrue(self.agent.wait_for_log(r"MCP: the tool list changed; told 1 open event streams"))
        # A second GET on the session replaces the first, which ends.
        es2 = self.stream()
        self.assertEqual(es2.status, 200)
        while es.next() is not None:
            pass
        # DELETE ends the session and its stream.
        self.assertEqual(self.raw("DELETE", session=self.session).status, 204)
        while es2.next() is not None:
            pass
        self.assertEqual(self.raw("GET", {"Accept": "text/event-stream"}, session=self.session).status, 404)

    def test_new_endpoint_path_ends_sessions(self):
        self.agent.deploy_ok(tools_config())
        self.initialize()
        es = self.stream()
        self.assertEqual(es.status, 200)
        self.agent.deploy_ok(tools_config(path="/tools/mcp"))
        while es.next() is not None:  # the stream ends with its session
            pass
        r = self.rpc(PING, path="/tools/mcp")
        self.assertEqual(r.status, 404, r)

    def test_slow_tool_answers_as_an_event_stream_with_progress(self):
        slow = SlowService()
        self.addCleanup(slow.close)
        self.agent.deploy_ok(tools_config(tools=["slow", "faq"], slow_url=slow.url))
        self.initialize()
        call = {"jsonrpc": "2.0", "id": 11, "method": "tools/call",
                "params": {"name": "slow", "arguments": {}, "_meta": {"progressToken": "tok-1"}}}
        es = self.stream("POST", body=call)
        self.assertEqual((es.status, es.headers["content-type"]), (200, "text/event-stream"))
        self.assertEqual(es.headers["mcp-session-id"], self.session)
        self.assertEqual(es.next(), ("message", {"jsonrpc": "2.0", "method": "notifications/progress", "params": {
            "progressToken": "tok-1", "progress": 0, "message": "slow: started"}}))
        kind, second = es.next()
        self.assertEqual(second["params"]["progress"], 1, second)
        self.assertEqual(second["params"]["progressToken"], "tok-1")
        self.assertTrue(slow.asked.is_set())
        slow.release()
        ev, seen = es.until(lambda e: e[0] == "message" and "id" in e[1])
        self.assertEqual(ev[1], {"jsonrpc": "2.0", "id": 11, "result": {
            "content": [{"type": "text", "text": "the slow answer"}], "isError": False}})
        self.assertTrue(all(e[1]["method"] == "notifications/progress" for e in seen[:-1]), seen)
        self.assertIsNone(es.next())  # the stream ends with the answer
        self.assertIn("cap_mcp_streamed_calls_total 1\n", self.agent.mgmt("GET", "/metrics").text())
        # Without a progressToken the same call is answered as JSON; the session goes on.
        call["params"].pop("_meta")
        r = self.rpc(call)
        self.assertEqual((r.status, r.headers["content-type"]), (200, "application/json"))
        self.assertEqual(r.json()["result"]["content"][0]["text"], "the slow answer")

    def test_slow_tool_gets_progress_without_sessions(self):
        # No session keeps the housekeeping awake here: the streamed call itself wakes it.
        slow = SlowService()
        self.addCleanup(slow.close)
        self.agent.deploy_ok(tools_config(tools=["slow"], slow_url=slow.url, mcp={"sessions": False}))
        call = {"jsonrpc": "2.0", "id": 12, "method": "tools/call",
                "params": {"name": "slow", "arguments": {}, "_meta": {"progressToken": "tok-2"}}}
        es = self.stream("POST", body=call)
        self.assertEqual((es.status, es.headers["content-type"]), (200, "text/event-stream"))
        kind, first = es.next()
        self.assertEqual(first["params"]["message"], "slow: started")
        kind, second = es.next()
        self.assertEqual((second["params"]["progressToken"], second["params"]["progress"]), ("tok-2", 1))
        slow.release()
        ev, seen = es.until(lambda e: e[0] == "message" and "id" in e[1])
        self.assertEqual(ev[1]["result"]["content"][0]["text"], "the slow answer")

    def test_cancelled_streamed_call_gets_no_answer(self):
        slow = SlowService()
        self.addCleanup(slow.close)
        self.agent.deploy_ok(tools_config(tools=["slow"], slow_url=slow.url))
        self.initialize()
        call = {"jsonrpc": "2.0", "id": "c-1", "method": "tools/call",
                "params": {"name": "slow", "arguments": {}, "_meta": {"progressToken": 7}}}
        es = self.stream("POST", body=call)
        kind, first = es.next()
        self.assertEqual((first["params"]["progressToken"], first["params"]["progress"]), (7, 0))
        # Another session's cancel, or one naming another request, changes nothing.
        cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "c-2"}}
        self.assertEqual(self.rpc(cancel).status, 202)
        mine = self.session
        self.initialize()
        cancel["params"]["requestId"] = "c-1"
        self.assertEqual(self.rpc(cancel).status, 202)
        kind, more = es.next()
        self.assertEqual(more["method"], "notifications/progress")
        # The caller's cancel ends the stream without an answer.
        self.session = mine
        self.assertEqual(self.rpc(cancel).status, 202)
        while True:
            ev = es.next()
            if ev is None:
                break
            self.assertEqual(ev[1]["method"], "notifications/progress", ev)
        self.assertTrue(self.agent.wait_for_log(r"MCP: the client cancelled its call of slow"))
        slow.release()
        # The session goes on.
        self.assertEqual(self.rpc(PING).json()["result"], {})

    def test_stopping_ends_open_streams(self):
        self.agent.deploy_ok(tools_config())
        self.initialize()
        es = self.stream()
        self.assertEqual(es.status, 200)
        self.assertEqual(self.agent.stop(), 0)
        while es.next() is not None:
            pass
        self.assertNotIn("still in flight", self.agent.log_text())

    def test_calls_are_traced_without_the_token(self):
        self.agent.deploy_ok(tools_config())
        self.initialize()
        self.agent.mgmt("POST", "/v1/trace", {"count": 1})
        r = self.rpc({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                      "params": {"name": "lookup_order", "arguments": {"order_id": "A-1002"}}})
        self.assertEqual(json.loads(r.json()["result"]["content"][0]["text"])["status"], "packing")
        traces = self.agent.mgmt("GET", "/v1/trace").json()["traces"]
        self.assertEqual(traces[0]["request"], "MCP tools/call lookup_order")
        self.assertIn("order_id = 'A-1002'", traces[0]["text"])
        self.assertIn("enter     lookup_order/find CsvLookup", traces[0]["text"])
        self.assertNotIn(TOKEN, json.dumps(traces) + self.agent.log_text())
        self.assertNotIn(self.session, json.dumps(traces) + self.agent.log_text())

    def test_configuration_errors(self):
        good = self.agent.deploy_ok(tools_config())
        bad = [
            (tools_config(tools=["nosuch"]), "mcp.tools: rule set 'nosuch' does not exist"),
            (tools_config(tools=[]), "mcp.tools: must be a non-empty list of rule set names"),
            (tools_config(tools=["main"]), "rule set 'main' needs a \\\"description\\\""),
            (tools_config(token="plain-secret"), "mcp.token: must come from the vault"),
            (tools_config(token=""), "mcp.token: missing"),
            (tools_config(path="mcp"), "mcp.path: must be a path starting with '/'"),
            (tools_config(path="/.cap/mcp"), "mcp.path: must be a path starting with '/' (not under /.cap/)"),
            (tools_config(path="/a b"), "mcp.path: must be a path"),
            (tools_config(mcp={"origins": ["app.example.com"]}), "mcp.origins: must hold origins like"),
            (tools_config(mcp={"origins": ["https://app.example.com/path"]}), "mcp.origins: must hold origins like"),
            (tools_config(mcp={"origins": "https://app.example.com"}), "mcp.origins: must be a list of origins"),
            (tools_config(mcp={"sessions": "yes"}), "mcp.sessions: must be true (sessions) or false (stateless)"),
            (tools_config(mcp={"session_ttl_s": 0}), "mcp.session_ttl_s: must be a whole number from 1 to 604800"),
            (tools_config(mcp={"max_sessions": 2.5}), "mcp.max_sessions: must be a whole number from 1 to 100000"),
            (tools_config(mcp={"keepalive_s": "15"}), "mcp.keepalive_s: must be a whole number from 1 to 300"),
        ]
        for files, expect in bad:
            r = self.agent.deploy(files)
            self.assertEqual(r.status, 422, (expect, r))
            self.assertIn(expect, json.dumps(r.json()), r)
        files = tools_config()
        cap = json.loads(files["cap.json"])
        cap["mcp"] = ["x"]
        files["cap.json"] = json.dumps(cap).encode()
        r = self.agent.deploy(files)
        self.assertEqual(r.status, 422)
        self.assertIn("mcp: must be an object", json.dumps(r.json()))
        self.assertEqual(self.agent.mgmt("GET", "/v1/status").json()["configuration"]["id"], good)
        self.initialize()
        self.assertEqual(self.rpc(PING).status, 200)

    def test_without_mcp_the_path_is_the_sites(self):
        files = tools_config()
        cap = json.loads(files["cap.json"])
        del cap["mcp"]
        files["cap.json"] = json.dumps(cap).encode()
        self.agent.deploy_ok(files)
        r = self.rpc(INIT)
        self.assertEqual((r.status, r.text()), (200, "site /mcp"))


if __name__ == "__main__":
    unittest.main()
