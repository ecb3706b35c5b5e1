"""Rule sets offered as MCP tools on the web port: a real MCP client (the official
TypeScript SDK, npm @modelcontextprotocol/sdk, in tests/mcp-client) lists and calls them;
raw JSON-RPC checks the protocol's edges, the bearer token, and the configuration errors."""

import json
import os
import shutil
import subprocess
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


def tools_config(path="/mcp", tools=("lookup_order", "faq"), token="${vault:mcp.token}", **extra):
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
    files = configuration("shop", [main, order, faq, broken], description="The shop's tools.",
                          mcp={"path": path, "token": token, "tools": list(tools)}, **extra)
    files["data/orders.csv"] = b"order_id,status,delivery\nA-1001,shipped,2026-12-01\nA-1002,packing,\n"
    return files


class McpTest(AgentTestCase):
    def setUp(self):
        super().setUp()
        r = self.agent.mgmt("PUT", "/v1/vault", {"mcp": {"token": TOKEN}})
        self.assertEqual(r.status, 200, r)

    def rpc(self, body, token=TOKEN, path="/mcp", headers=None):
        h = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        if token:
            h["Authorization"] = "Bearer " + token
        h.update(headers or {})
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.agent.web("POST", path, data, h)

    def sdk(self, calls=(), token=TOKEN, path="/mcp"):
        ensure_client()
        url = f"http://127.0.0.1:{self.agent.web_port}{path}"
        r = subprocess.run(["node", "client.mjs", url, token, json.dumps(list(calls))], cwd=CLIENT_DIR,
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout.strip().splitlines()[-1])

    def test_sdk_client_lists_and_calls_tools(self):
        self.agent.deploy_ok(tools_config())
        out = self.sdk([{"name": "lookup_order", "arguments": {"order_id": "A-1001"}},
                        {"name": "lookup_order", "arguments": {"order_id": "Z-9"}},
                        {"name": "faq", "arguments": {"days": 30}},
                        {"name": "lookup_order", "arguments": {}},
                        {"name": "broken", "arguments": {}},
                        {"name": "nosuch", "arguments": {}}])
        self.assertNotIn("error", out, out)
        self.assertEqual(out["server"]["name"], "shop")
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
        # The site itself still answers on the same port.
        self.assertEqual(self.agent.web("GET", "/other").text(), "site /other")

    def test_sdk_client_with_a_wrong_token_is_refused(self):
        self.agent.deploy_ok(tools_config())
        out = self.sdk(token="wrong-token")
        self.assertIn("error", out)
        self.assertIn("a valid bearer token is required", out["error"])

    def test_protocol(self):
        self.agent.deploy_ok(tools_config(path="/agents/mcp"))
        r = self.rpc({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}},
            path="/agents/mcp")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers["content-type"], "application/json")
        self.assertEqual(r.json(), {"jsonrpc": "2.0", "id": 1, "result": {
            "protocolVersion": "2025-03-26", "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": {"name": "shop", "version": r.json()["result"]["serverInfo"]["version"]},
            "instructions": "The shop's tools."}})
        self.assertNotIn("mcp-session-id", r.headers)
        # An unknown revision gets the newest this server speaks.
        r = self.rpc({"jsonrpc": "2.0", "id": "i2", "method": "initialize", "params": {"protocolVersion": "1999-01-01"}},
                     path="/agents/mcp")
        self.assertEqual(r.json()["result"]["protocolVersion"], "2025-06-18")
        # Notifications and client responses: 202, no body.
        r = self.rpc({"jsonrpc": "2.0", "method": "notifications/initialized"}, path="/agents/mcp")
        self.assertEqual((r.status, r.body), (202, b""))
        self.assertEqual(self.rpc({"jsonrpc": "2.0", "id": 5, "method": "ping"}, path="/agents/mcp").json(),
                         {"jsonrpc": "2.0", "id": 5, "result": {}})
        r = self.rpc({"jsonrpc": "2.0", "id": 6, "method": "resources/list"}, path="/agents/mcp")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["error"], {"code": -32601, "message": "method 'resources/list' is not offered by this server"})
        r = self.rpc({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"arguments": {}}}, path="/agents/mcp")
        self.assertEqual(r.json()["error"]["code"], -32602)
        # A batch (2025-03-26).
        r = self.rpc([{"jsonrpc": "2.0", "id": 1, "method": "ping"},
                      {"jsonrpc": "2.0", "method": "notifications/cancelled"},
                      {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                       "params": {"name": "faq", "arguments": {"days": 14}}}], path="/agents/mcp")
        self.assertEqual(r.status, 200, r)
        self.assertEqual([a["id"] for a in r.json()], [1, 2])
        self.assertEqual(r.json()[1]["result"]["content"][0]["text"], "Returns within 14 days.")
        # The configured path only: /mcp is the site's.
        self.assertEqual(self.agent.web("POST", "/mcp", b"{}").text(), "site /mcp")

    def test_bad_requests(self):
        self.agent.deploy_ok(tools_config())
        cases = [
            (b"{not json", 400, -32700),
            (b"[]", 400, -32600),
            (b'"hello"', 400, -32600),
            (json.dumps({"jsonrpc": "1.0", "id": 1, "method": "ping"}).encode(), 400, -32600),
            (json.dumps({"jsonrpc": "2.0", "id": 1}).encode(), 400, -32600),
            (json.dumps({"jsonrpc": "2.0", "id": [1], "method": "ping"}).encode(), 400, -32600),
        ]
        for body, status, code in cases:
            r = self.rpc(body)
            self.assertEqual(r.status, status, (body, r))
            self.assertEqual(r.json()["error"]["code"], code, (body, r))
        for method in ("GET", "DELETE", "PUT"):
            r = self.agent.web(method, "/mcp", headers={"Authorization": "Bearer " + TOKEN})
            self.assertEqual(r.status, 405, r)
            self.assertEqual(r.headers["allow"], "POST")
        r = self.rpc({"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers={"MCP-Protocol-Version": "2030-01-01"})
        self.assertEqual(r.status, 400)
        self.assertIn("unsupported MCP-Protocol-Version", r.json()["error"])
        r = self.rpc({"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers={"Origin": "http://evil.example"})
        self.assertEqual(r.status, 403, r)
        r = self.rpc({"jsonrpc": "2.0", "id": 1, "method": "ping"},
                     headers={"Origin": f"http://127.0.0.1:{self.agent.web_port}"})
        self.assertEqual(r.status, 200, r)

    def test_token(self):
        self.agent.deploy_ok(tools_config())
        ping = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
        for token in (None, "", "wrong", TOKEN + "x", TOKEN[:-1]):
            r = self.rpc(ping, token=token)
            self.assertEqual(r.status, 401, (token, r))
            self.assertEqual(r.headers["www-authenticate"], 'Bearer realm="cap-mcp"')
            self.assertNotIn(TOKEN.encode(), r.body)
        r = self.rpc(ping, headers={"Authorization": "Basic " + TOKEN})
        self.assertEqual(r.status, 401)
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

    def test_calls_are_traced_without_the_token(self):
        self.agent.deploy_ok(tools_config())
        self.agent.mgmt("POST", "/v1/trace", {"count": 1})
        r = self.rpc({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                      "params": {"name": "lookup_order", "arguments": {"order_id": "A-1002"}}})
        self.assertEqual(json.loads(r.json()["result"]["content"][0]["text"])["status"], "packing")
        traces = self.agent.mgmt("GET", "/v1/trace").json()["traces"]
        self.assertEqual(traces[0]["request"], "MCP tools/call lookup_order")
        self.assertIn("order_id = 'A-1002'", traces[0]["text"])
        self.assertIn("enter     lookup_order/find CsvLookup", traces[0]["text"])
        self.assertNotIn(TOKEN, json.dumps(traces) + self.agent.log_text())

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
        self.assertEqual(self.rpc({"jsonrpc": "2.0", "id": 1, "method": "ping"}).status, 200)

    def test_without_mcp_the_path_is_the_sites(self):
        files = tools_config()
        cap = json.loads(files["cap.json"])
        del cap["mcp"]
        files["cap.json"] = json.dumps(cap).encode()
        self.agent.deploy_ok(files)
        r = self.rpc({"jsonrpc": "2.0", "id": 1, "method": "ping"})
        self.assertEqual((r.status, r.text()), (200, "site /mcp"))


if __name__ == "__main__":
    unittest.main()
