"""examples/support-agent end to end on a real agent: the assistant answers with its tools
(the order lookup on a real SQLite file and a real PostgreSQL, the FAQ in a data file)
against a scripted model, keeps a conversation, hands over when the budget runs out, and
offers its tools over MCP."""

import json
import os
import shutil
import sqlite3
import tempfile
import unittest
import urllib.parse

from agent_harness import SOURCE_DIR, AgentTestCase
from llm_server import LlmServer
from postgres_harness import SharedPostgres
from test_llm_stream import events

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
    """On a SQLite file, as `make run` gives the agent."""

    def setUp(self):
        folder = tempfile.mkdtemp(prefix="cap-support-")
        self.addCleanup(shutil.rmtree, folder, True)
        self.db_path = os.path.join(folder, "shop.sqlite")
        self.agent_env = {"CAP_DB_URL": "sqlite://" + self.db_path}
        super().setUp()
        self.llm = LlmServer()
        self.addCleanup(self.llm.stop)
        r = self.agent.mgmt("PUT", "/v1/vault", {"openai": {"api_key": "sk-example-key-123456"},
                                                 "mcp": {"token": "example-mcp-token-1234"}})
        self.assertEqual(r.status, 200, r)
        self.agent.deploy_ok(example_files(self.llm.url))

    def ask(self, q, session="c1"):
        return self.agent.web("GET", "/ask?" + urllib.parse.urlencode({"q": q, "session": session}))

    def add_order(self, order_id, status, items):
        """Writes an order straight into the database the agent uses."""
        with sqlite3.connect(self.db_path) as db:
            db.execute("INSERT INTO shop_orders (id, status, items, placed_on) VALUES (?, ?, ?, '2026-03-09')",
                       (order_id, status, items))

    def tool_results(self, request):
        return [m["content"] for m in self.llm.requests[request]["json"]["messages"] if m["role"] == "tool"]

    def test_order_question(self):
        self.llm.tool_call(("lookup_order", {"order_id": "A-1001"}))
        self.llm.answer("Your order A-1001 has shipped and should arrive on 6 March.")
        r = self.ask("Where is my order A-1001?")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"answer": "Your order A-1001 has shipped and should arrive on 6 March.",
                                    "tool_calls": 1})
        offered = {t["function"]["name"]: t["function"] for t in self.llm.requests[0]["json"]["tools"]}
        self.assertEqual(sorted(offered), ["faq", "lookup_order"])
        self.assertEqual(offered["lookup_order"]["parameters"]["required"], ["order_id"])
        self.assertEqual(json.loads(self.tool_results(1)[0]), {
            "id": "A-1001", "status": "shipped", "items": "2 x trail running shoes", "placed_on": "2026-03-02",
            "delivery": "expected 2026-03-06", "tracking": "DHL 00340434161094042557"})

    def test_order_written_to_the_database_after_activation(self):
        self.add_order("B-2002", "packed", "1 x tent")
        self.llm.tool_call(("lookup_order", {"order_id": " b-2002 "}))
        self.llm.answer("B-2002 is packed.")
        self.assertEqual(self.ask("And B-2002?").json()["answer"], "B-2002 is packed.")
        found = json.loads(self.tool_results(1)[0])
        self.assertEqual((found["id"], found["status"], found["items"], found["tracking"]),
                         ("B-2002", "packed", "1 x tent", None))

    def test_unknown_order(self):
        self.llm.tool_call(("lookup_order", {"order_id": "Z-77"}))
        self.llm.answer("I cannot find order Z-77; please check the id in your confirmation.")
        r = self.ask("Where is Z-77?")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["answer"], "I cannot find order Z-77; please check the id in your confirmation.")
        self.assertEqual(self.tool_results(1), [
            "There is no order 'Z-77'. Order ids look like A-1001: ask the customer to check the id in the order confirmation."])

    def test_streamed_to_a_client_that_accepts_events(self):
        self.llm.tool_call(("lookup_order", {"order_id": "A-1002"}))
        self.llm.answer("A-1002 is being prepared.", pieces=["A-1002 is ", "being prepared."])
        r = self.agent.web("GET", "/ask?q=Where+is+A-1002%3F&session=ev", headers={"Accept": "text/event-stream"})
        self.assertEqual((r.status, r.headers["content-type"]), (200, "text/event-stream"))
        got = events(r.text())
        self.assertEqual([name for name, _ in got], ["tool_call", "tool_result", "message", "message", "done"])
        self.assertEqual(got[0][1]["arguments"], {"order_id": "A-1002"})
        self.assertEqual(json.loads(got[1][1]["result"])["status"], "processing")
        self.assertEqual("".join(d["delta"] for name, d in got if name == "message"), "A-1002 is being prepared.")
        # A failure before the first event still gets the JSON error.
        for _ in range(3):
            self.llm.raw(503, b'{"error": {"message": "overloaded"}}')
        r = self.agent.web("GET", "/ask?q=Hi", headers={"Accept": "text/event-stream"})
        self.assertEqual(r.status, 503, r)
        self.assertIn("unavailable", r.json()["error"])

    def test_order_tool_with_bad_arguments(self):
        self.llm.tool_call(("lookup_order", {"id": "A-1001"}))
        self.llm.answer("Which order do you mean?")
        self.assertEqual(self.ask("Where is my order?").json()["answer"], "Which order do you mean?")
        self.assertEqual(self.tool_results(1), ["error: unknown argument 'id'; it takes: order_id"])

    def test_order_page_and_demo_rows_are_not_added_twice(self):
        self.add_order("C-3003", "shipped", "2 x mugs")
        # A second activation keeps the orders it finds (demo ones and others).
        self.agent.deploy_ok(example_files(self.llm.url))
        r = self.agent.web("GET", "/order?order_id=C-3003")
        self.assertEqual((r.status, r.json()["items"]), (200, "2 x mugs"))
        with sqlite3.connect(self.db_path) as db:
            self.assertEqual(db.execute("SELECT count(*) FROM shop_orders").fetchone()[0], 5)
        r = self.agent.web("GET", "/order?order_id=nope")
        self.assertEqual(r.status, 404, r)

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
        self.assertEqual([t["function"]["name"] for t in first["tools"]], ["lookup_order", "faq"])
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

    def test_conversation_is_kept_in_the_shop_database(self):
        self.llm.answer("Hello Ann.")
        self.ask("I am Ann", session="ann-1")
        with sqlite3.connect(self.db_path) as db:
            rows = db.execute("SELECT scope, conversation, messages FROM cap_conversations").fetchall()
        self.assertEqual([(scope, conv) for scope, conv, _ in rows], [("support-agent/assistant", "ann-1")])
        self.assertEqual([m["content"] for m in json.loads(rows[0][2])], ["I am Ann", "Hello Ann."])
        self.assertNotIn("sk-example-key-123456", rows[0][2])
        # A restarted agent continues it.
        self.assertEqual(self.agent.stop(), 0)
        self.agent.start()
        self.llm.answer("You are Ann.")
        self.assertEqual(self.ask("Who am I?", session="ann-1").json()["answer"], "You are Ann.")
        self.assertEqual([m["role"] for m in self.llm.requests[1]["json"]["messages"]],
                         ["system", "user", "assistant", "user"])

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
        self.assertEqual([t["name"] for t in r.json()["result"]["tools"]], ["lookup_order", "faq"])
        r = self.agent.web("POST", "/mcp", json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "faq", "arguments": {"topic": "warranty"}}}).encode(), h)
        self.assertIn("two-year warranty", r.json()["result"]["content"][0]["text"])
        r = self.agent.web("POST", "/mcp", json.dumps({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
            "name": "lookup_order", "arguments": {"order_id": "A-1003"}}}).encode(), h)
        self.assertEqual(json.loads(r.json()["result"]["content"][0]["text"])["status"], "delivered")


class SupportAgentPostgresTest(SharedPostgres, AgentTestCase):
    """The same example on a real PostgreSQL, as on AWS (RDS): CAP_DB_URL names it."""

    def setUp(self):
        self.agent_env = {"CAP_DB_URL": self.pg.url}
        super().setUp()
        self.llm = LlmServer()
        self.addCleanup(self.llm.stop)
        r = self.agent.mgmt("PUT", "/v1/vault", {"openai": {"api_key": "sk-example-key-123456"}})
        self.assertEqual(r.status, 200, r)
        self.agent.deploy_ok(example_files(self.llm.url))

    def test_order_from_postgres_reaches_the_model_and_the_answer_the_client(self):
        self.pg.psql("DELETE FROM shop_orders WHERE id = 'P-5005'")
        self.pg.psql("INSERT INTO shop_orders (id, status, items, placed_on, delivery) "
                     "VALUES ('P-5005', 'in transit', '4 x tent pegs', '2026-03-08', 'expected 2026-03-12')")
        self.llm.tool_call(("lookup_order", {"order_id": "P-5005"}), ("lookup_order", {"order_id": "A-1004"}),
                           ("lookup_order", {"order_id": "Q-1"}))
        self.llm.answer("P-5005 is in transit; A-1004 was cancelled; Q-1 does not exist.")
        r = self.agent.web("GET", "/ask?" + urllib.parse.urlencode({"q": "My orders?", "session": "pg"}))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"answer": "P-5005 is in transit; A-1004 was cancelled; Q-1 does not exist.",
                                    "tool_calls": 3})
        results = [m["content"] for m in self.llm.requests[1]["json"]["messages"] if m["role"] == "tool"]
        self.assertEqual(json.loads(results[0]), {"id": "P-5005", "status": "in transit", "items": "4 x tent pegs",
                                                  "placed_on": "2026-03-08", "delivery": "expected 2026-03-12",
                                                  "tracking": None})
        self.assertEqual(json.loads(results[1])["status"], "cancelled")
        self.assertTrue(results[2].startswith("There is no order 'Q-1'."), results[2])
        self.assertEqual(self.pg.psql("SELECT count(*) FROM shop_orders WHERE id LIKE 'A-%'"), "4")

    def test_two_agents_share_the_conversations(self):
        other = self.new_agent(env={"CAP_DB_URL": self.pg.url})
        self.assertEqual(other.mgmt("PUT", "/v1/vault", {"openai": {"api_key": "sk-example-key-123456"}}).status, 200)
        other.deploy_ok(example_files(self.llm.url))
        self.llm.tool_call(("lookup_order", {"order_id": "A-1001"}))
        self.llm.answer("A-1001 has shipped.")
        self.llm.answer("It should arrive on 6 March.")
        q = {"session": "pg-shared"}
        self.agent.web("GET", "/ask?" + urllib.parse.urlencode(dict(q, q="Where is A-1001?")))
        r = other.web("GET", "/ask?" + urllib.parse.urlencode(dict(q, q="When will it arrive?")))
        self.assertEqual(r.json()["answer"], "It should arrive on 6 March.")
        self.assertEqual([m["role"] for m in self.llm.requests[2]["json"]["messages"]],
                         ["system", "user", "assistant", "tool", "assistant", "user"])
        self.assertIn('"status":"shipped"', self.llm.requests[2]["json"]["messages"][3]["content"])

    def test_database_down_is_a_result_the_model_can_use(self):
        self.pg.stop()
        self.addCleanup(self.pg.start)
        self.llm.tool_call(("lookup_order", {"order_id": "A-1001"}))
        self.llm.answer("The order system is down; a colleague will get back to you.")
        r = self.agent.web("GET", "/ask?q=Where+is+A-1001%3F")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["answer"], "The order system is down; a colleague will get back to you.")
        results = [m["content"] for m in self.llm.requests[1]["json"]["messages"] if m["role"] == "tool"]
        self.assertEqual(results, ["The order system is unavailable right now; the order cannot be looked up. "
                                   "Offer to have a colleague get back to the customer."])


if __name__ == "__main__":
    unittest.main()
