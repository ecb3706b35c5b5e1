"""examples/support-agent end to end on a real agent: the assistant answers with its tools
against a scripted model, keeps a conversation, hands over when the budget runs out, and
offers its tools over MCP."""

import json
import os
import unittest
import urllib.parse

from agent_harness import SOURCE_DIR, AgentTestCase
from llm_server import LlmServer

EXAMPLE = os.path.join(SOURCE_DIR, "examples", "support-agent")


def example_files(llm_url):
    files = {}
    for root, _, names in os.walk(EXAMPLE):
        for name in names:
            full = os.path.join(root, name)
            rel = os.path.relpath(full, EXAMPLE)
            if rel.startswith(("cap.json", "rulesets", "data")):
                with open(full, "rb") as f:
                    files[rel] = f.read()
    cap = json.loads(files["cap.json"])
    cap["globals"]["LLM_URL"] = llm_url
    files["cap.json"] = json.dumps(cap).encode()
    return files


class SupportAgentExampleTest(AgentTestCase):
    def setUp(self):
        super().setUp()
        self.llm = LlmServer()
        self.addCleanup(self.llm.stop)
        r = self.agent.mgmt("PUT", "/v1/vault", {"openai": {"api_key": "sk-example-key-123456"},
                                                 "mcp": {"token": "example-mcp-token-1234"}})
        self.assertEqual(r.status, 200, r)
        self.agent.deploy_ok(example_files(self.llm.url))

    def ask(self, q, session="c1"):
        return self.agent.web("GET", "/ask?" + urllib.parse.urlencode({"q": q, "session": session}))

    def test_faq_question(self):
        self.llm.tool_call(("faq", {"topic": "returns"}))
        self.llm.answer("You have 30 days to return an unused item; the label is free.")
        r = self.ask("Can I send my shoes back?")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"answer": "You have 30 days to return an unused item; the label is free.",
                                    "tool_calls": 1})
        first, second = [q["json"] for q in self.llm.requests]
        self.assertEqual(first["model"], "gpt-4o-mini")
        self.assertTrue(first["messages"][0]["content"].startswith("You are the support assistant of Example Shop."))
        self.assertEqual([t["function"]["name"] for t in first["tools"]], ["faq"])
        tool = second["messages"][-1]
        self.assertEqual(tool["role"], "tool")
        self.assertIn("within 30 days of delivery", tool["content"])

    def test_follow_up_in_the_same_conversation(self):
        self.llm.tool_call(("faq", {"topic": "shipping"}))
        self.llm.answer("Orders ship within 2 business days.")
        self.llm.answer("Express delivery costs 9 EUR.")
        self.ask("When do you ship?", session="abc")
        r = self.ask("And how much is express?", session="abc")
        self.assertEqual(r.json()["answer"], "Express delivery costs 9 EUR.")
        roles = [m["role"] for m in self.llm.requests[2]["json"]["messages"]]
        self.assertEqual(roles, ["system", "user", "assistant", "tool", "assistant", "user"])

    def test_hand_over_and_unavailable(self):
        for _ in range(5):
            self.llm.tool_call(("faq", {"topic": "gift cards"}))
        r = self.ask("Do you sell gift cards?")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["answer"], "I could not find the answer. A colleague will get back to you.")
        self.llm.raw(503, b'{"error": {"message": "overloaded"}}')
        self.llm.raw(503, b'{"error": {"message": "overloaded"}}')
        self.llm.raw(503, b'{"error": {"message": "overloaded"}}')
        r = self.ask("Hello?")
        self.assertEqual(r.status, 503, r)
        self.assertIn("unavailable", r.json()["error"])

    def test_tools_over_mcp(self):
        h = {"Authorization": "Bearer example-mcp-token-1234", "Content-Type": "application/json"}
        r = self.agent.web("POST", "/mcp", json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize"}).encode(), h)
        h["Mcp-Session-Id"] = r.headers["mcp-session-id"]  # the session every later request names
        r = self.agent.web("POST", "/mcp", json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).encode(), h)
        self.assertEqual(r.status, 200, r)
        self.assertEqual([t["name"] for t in r.json()["result"]["tools"]], ["faq"])
        r = self.agent.web("POST", "/mcp", json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "faq", "arguments": {"topic": "warranty"}}}).encode(), h)
        self.assertIn("two-year warranty", r.json()["result"]["content"][0]["text"])


if __name__ == "__main__":
    unittest.main()
