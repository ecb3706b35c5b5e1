"""AiAgent conversations kept in a database (`memory: "database"`): on a SQLite file and on
a real PostgreSQL, the table made on first use, expiry, a restart that keeps them, two
agents sharing one PostgreSQL continuing one conversation, a database that is down, bad
parameters refused at deploy, and no secret in the table."""

import json
import os
import shutil
import sqlite3
import tempfile
import unittest
import urllib.parse

from agent_harness import Agent, AgentTestCase, configuration, ruleset
from llm_server import LlmServer
from postgres_harness import SharedPostgres

API_KEY = "sk-memory-9f8e7d6c5b4a39281706"


def memory_config(llm, **with_):
    params = {"base_url": llm.url, "model": "gpt-memory", "credential": "openai", "retries": 0,
              "system": "You remember things.", "prompt": "${q}", "tools": ["echo"],
              "conversation": "${session}", "memory": "database", "memory_database": "app"}
    params.update(with_)
    echo = ruleset("echo", "set", {
        "set": {"rule": "SetVariable", "with": {"name": "RESULT", "value": "echo ${text}"}}})
    echo["description"] = "Echoes a text."
    echo["params"] = [{"name": "text", "type": "string", "required": True}]
    main = ruleset("main", "agent", {
        "agent": {"rule": "AiAgent", "with": params,
                  "then": {"answered": ["answered"], "error": ["error"], "budget_exceeded": ["error"]}},
        "answered": {"rule": "HttpRespond", "with": {"status": 200, "body": "${AI_ANSWER}"}},
        "error": {"rule": "HttpRespond", "with": {"status": 502, "body": "error: ${AI_ERROR}"}},
    })
    return configuration("memo", [main, echo], databases={"app": {"url": "${env:CAP_DB_URL}"}})


def ask(agent, q, session):
    return agent.web("GET", "/?" + urllib.parse.urlencode({"q": q, "session": session}))


def roles(request):
    return [(m["role"], m.get("content")) for m in request["json"]["messages"]]


class MemoryOnSqliteTest(AgentTestCase):
    def setUp(self):
        self.folder = tempfile.mkdtemp(prefix="cap-memory-")
        self.addCleanup(shutil.rmtree, self.folder, True)
        self.db_path = os.path.join(self.folder, "app.sqlite")
        self.agent_env = {"CAP_DB_URL": "sqlite://" + self.db_path}
        super().setUp()
        self.llm = LlmServer()
        self.addCleanup(self.llm.stop)
        self.assertEqual(self.agent.mgmt("PUT", "/v1/vault", {"openai": {"api_key": API_KEY}}).status, 200)

    def rows(self, sql, args=()):
        with sqlite3.connect(self.db_path) as db:
            return db.execute(sql, args).fetchall()

    def test_conversation_is_kept_in_the_table(self):
        self.agent.deploy_ok(memory_config(self.llm, memory_ttl_s=600))
        self.assertFalse(os.path.exists(self.db_path))  # made on first use, not at deploy
        self.llm.tool_call(("echo", {"text": "hi"}))
        self.llm.answer("Hello Ann.")
        self.llm.answer("You are Ann.")
        self.assertEqual(ask(self.agent, "I am Ann", "s1").text(), "Hello Ann.")
        self.assertEqual(ask(self.agent, "Who am I?", "s1").text(), "You are Ann.")
        self.assertEqual(roles(self.llm.requests[2]), [
            ("system", "You remember things."), ("user", "I am Ann"), ("assistant", None),
            ("tool", "echo hi"), ("assistant", "Hello Ann."), ("user", "Who am I?")])

        [(scope, conversation, messages, updated, expires)] = self.rows(
            "SELECT scope, conversation, messages, updated_at, expires_at FROM cap_conversations")
        self.assertEqual((scope, conversation), ("memo/agent", "s1"))
        self.assertEqual(expires - updated, 600 * 1000)
        stored = json.loads(messages)
        self.assertEqual([m["role"] for m in stored], ["user", "assistant", "tool", "assistant", "user", "assistant"])
        self.assertEqual(stored[1]["tool_calls"][0]["name"], "echo")
        self.assertEqual(json.loads(stored[1]["tool_calls"][0]["arguments"]), {"text": "hi"})
        self.assertEqual(stored[2]["tool_name"], "echo")
        self.assertNotIn(API_KEY, messages)
        self.assertNotIn("You remember things.", messages)  # the system prompt is not stored

    def test_expired_conversations_are_not_read(self):
        self.agent.deploy_ok(memory_config(self.llm))
        self.llm.answer("first")
        self.llm.answer("second")
        ask(self.agent, "one", "s")
        with sqlite3.connect(self.db_path) as db:
            db.execute("UPDATE cap_conversations SET expires_at = 1")
        self.assertEqual(ask(self.agent, "two", "s").text(), "second")
        self.assertEqual(roles(self.llm.requests[1]), [("system", "You remember things."), ("user", "two")])

    def test_conversations_survive_a_restart_and_a_new_deploy(self):
        self.agent.deploy_ok(memory_config(self.llm))
        self.llm.answer("Noted: blue.")
        self.llm.answer("Blue.")
        self.llm.answer("Still blue.")
        ask(self.agent, "My colour is blue", "c")
        self.assertEqual(self.agent.stop(), 0)
        self.agent.start()
        self.assertEqual(ask(self.agent, "My colour?", "c").text(), "Blue.")
        self.assertEqual([r for r, _ in roles(self.llm.requests[1])], ["system", "user", "assistant", "user"])
        self.agent.deploy_ok(memory_config(self.llm, max_steps=3))
        ask(self.agent, "And now?", "c")
        self.assertEqual(len(self.llm.requests[2]["json"]["messages"]), 6)

    def test_custom_table_and_separate_nodes(self):
        self.agent.deploy_ok(memory_config(self.llm, memory_table="support_memory"))
        self.llm.answer("ok")
        ask(self.agent, "x", "k")
        self.assertEqual(self.rows("SELECT scope, conversation FROM support_memory"), [("memo/agent", "k")])
        self.assertEqual(self.rows("SELECT name FROM sqlite_master WHERE name = 'cap_conversations'"), [])

    def test_memory_in_process_stays_the_default(self):
        self.agent.deploy_ok(memory_config(self.llm, memory="memory", memory_database=""))
        self.llm.answer("a")
        self.llm.answer("b")
        ask(self.agent, "one", "m")
        ask(self.agent, "two", "m")
        self.assertEqual(len(self.llm.requests[1]["json"]["messages"]), 4)
        self.assertFalse(os.path.exists(self.db_path))


class MemoryValidationTest(AgentTestCase):
    agent_env = {"CAP_DB_URL": "sqlite::memory:"}

    def test_bad_memory_parameters_are_refused_at_deploy(self):
        llm_url = "http://127.0.0.1:9/v1"

        class Fake:
            url = llm_url
        good = self.agent.deploy_ok(memory_config(Fake()))
        cases = [
            ({"memory_database": "nosuch"}, "memory_database: no database 'nosuch' in cap.json `databases` (it names app)"),
            ({"memory_database": ""}, "memory_database: memory: database needs memory_database"),
            ({"memory": "memory"}, "memory_database: is used only with memory: database"),
            ({"memory": "redis"}, "memory"),
            ({"memory_table": "x; DROP TABLE y"}, "memory_table: must be a plain table name"),
            ({"memory_database": "${DB}"}, "memory_database: must be written in the rule set, not a template"),
        ]
        for params, expect in cases:
            r = self.agent.deploy(memory_config(Fake(), **params))
            self.assertEqual(r.status, 422, (params, r))
            self.assertTrue(any(expect in d for d in r.json()["details"]), (expect, r.json()))
            status = self.agent.mgmt("GET", "/v1/status").json()
            self.assertEqual(status["configuration"]["id"], good, status)


class MemoryOnPostgresTest(SharedPostgres, unittest.TestCase):
    def setUp(self):
        self.pg.psql("DROP TABLE IF EXISTS cap_conversations")
        self.llm = LlmServer()
        self.addCleanup(self.llm.stop)

    def agent(self):
        a = Agent(env={"CAP_DB_URL": self.pg.url}).start()
        self.addCleanup(a.cleanup)
        self.assertEqual(a.mgmt("PUT", "/v1/vault", {"openai": {"api_key": API_KEY}}).status, 200)
        a.deploy_ok(memory_config(self.llm))
        return a

    def test_two_agents_continue_one_conversation(self):
        first, second = self.agent(), self.agent()
        self.llm.tool_call(("echo", {"text": "order 42"}))
        self.llm.answer("I noted order 42.")
        self.llm.answer("Your order is 42.")
        self.llm.answer("A new conversation.")
        self.assertEqual(ask(first, "Remember order 42", "shared").text(), "I noted order 42.")
        self.assertEqual(ask(second, "Which order?", "shared").text(), "Your order is 42.")
        self.assertEqual(roles(self.llm.requests[2]), [
            ("system", "You remember things."), ("user", "Remember order 42"), ("assistant", None),
            ("tool", "echo order 42"), ("assistant", "I noted order 42."), ("user", "Which order?")])
        # Another id starts empty, on either agent.
        ask(first, "Hello", "other")
        self.assertEqual(len(self.llm.requests[3]["json"]["messages"]), 2)
        rows = self.pg.psql("SELECT scope, conversation, expires_at - updated_at FROM cap_conversations "
                            "ORDER BY conversation")
        self.assertEqual(rows.splitlines(), ["memo/agent|other|3600000", "memo/agent|shared|3600000"])
        self.assertNotIn(API_KEY, self.pg.psql("SELECT string_agg(messages, '') FROM cap_conversations"))

    def test_database_down_takes_error(self):
        a = self.agent()
        self.llm.answer("kept")
        ask(a, "one", "d")
        self.pg.stop()
        try:
            r = ask(a, "two", "d")
            self.assertEqual(r.status, 502, r)
            self.assertTrue(r.text().startswith("error: conversation memory: database 'app'"), r.text())
            self.assertEqual(len(self.llm.requests), 1)  # the model was not asked
        finally:
            self.pg.start()


if __name__ == "__main__":
    unittest.main()
