"""capctl against a running agent: deploy, status, logs, trace, rollback; exit codes
0/1/2 (DESIGN §8)."""

import os
import shutil
import subprocess
import tempfile
import time
import unittest

from agent_harness import (AgentTestCase, capctl_binary, closed_port, configuration, hello_config,
                           make_zip, respond_config, ruleset, write_folder)


class CapctlTest(AgentTestCase):

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="capctl-test-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.key_file = os.path.join(self.tmp, "mgmt.key")
        with open(self.key_file, "w") as f:
            f.write(self.agent.key + "\n")
        os.chmod(self.key_file, 0o600)

    def capctl(self, *args, key=True, agent=True, env=None):
        cmd = [capctl_binary()] + list(args)
        if agent:
            cmd += ["--agent", f"127.0.0.1:{self.agent.mgmt_port}"]
        if key:
            cmd += ["--key-file", self.key_file]
        e = {k: v for k, v in os.environ.items() if k != "CAP_MGMT_KEY"}
        e.update(env or {})
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=e)

    def folder(self, files):
        return write_folder(files, tempfile.mkdtemp(dir=self.tmp))

    def test_deploy_a_folder_and_a_zip(self):
        r = self.capctl("deploy", self.folder(hello_config()))
        self.assertEqual(r.returncode, 0, r.stderr)
        cid = r.stdout.strip()
        self.assertRegex(cid, r"^[0-9a-f]{12}-\d+$")
        self.assertEqual(self.agent.web("GET", "/hello?name=Cli").body, b"Hello, Cli!")
        self.assertIn("deploying", r.stderr)  # progress goes to stderr

        zip_path = os.path.join(self.tmp, "two.zip")
        with open(zip_path, "wb") as f:
            f.write(make_zip(respond_config("two", "two")))
        r = self.capctl("deploy", zip_path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.agent.web("GET", "/").body, b"two")

    def test_deploy_prints_every_error(self):
        self.agent.deploy_ok(hello_config())
        bad = configuration("bad", [ruleset("main", "a", {
            "a": {"rule": "NoSuchRule", "with": {}, "then": {"next": ["ghost"]}},
            "b": {"rule": "IfCondition", "with": {"condition": "1 +"}},
        })])
        r = self.capctl("deploy", self.folder(bad))
        self.assertEqual(r.returncode, 1, r)
        out = r.stdout
        self.assertIn("NoSuchRule", out)
        self.assertIn("node b: condition:", out)
        self.assertEqual(self.agent.web("GET", "/hello?name=Old").body, b"Hello, Old!")

    def test_status_logs_trace_rollback(self):
        first = self.agent.deploy_ok(respond_config("first", "1"))
        second = self.agent.deploy_ok(respond_config("second", "2"))

        r = self.capctl("status")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("test-agent", r.stdout)
        self.assertIn(second, r.stdout)
        self.assertIn("second", r.stdout)

        r = self.capctl("logs")
        self.assertEqual(r.returncode, 0, r.stderr)
        today = time.strftime("agent-%Y-%m-%d.log")
        self.assertIn(today, r.stdout)
        r = self.capctl("logs", today, "--tail", "1")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(r.stdout.strip().split("\n")), 1)
        r = self.capctl("logs", "../state.json")
        self.assertEqual(r.returncode, 1)

        r = self.capctl("trace", "--arm", "1")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.agent.web("GET", "/traced")
        r = self.capctl("trace")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("GET /traced", r.stdout)

        r = self.capctl("rollback")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), first)
        self.assertEqual(self.agent.web("GET", "/").body, b"1")
        r = self.capctl("rollback", "--to", second)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.agent.web("GET", "/").body, b"2")
        r = self.capctl("rollback", "--to", "000000000000-9")
        self.assertEqual(r.returncode, 1)

    def test_key_from_the_environment(self):
        r = self.capctl("status", key=False, env={"CAP_MGMT_KEY": self.agent.key})
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_exit_codes(self):
        # No key at all: bad usage.
        r = self.capctl("status", key=False)
        self.assertEqual(r.returncode, 2, r)
        self.assertIn("CAP_MGMT_KEY", r.stderr)
        # A wrong key: the agent refuses, capctl says so.
        with open(self.key_file, "w") as f:
            f.write("wrong")
        r = self.capctl("status")
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("signature", r.stderr)
        # Nothing listening.
        r = subprocess.run([capctl_binary(), "status", "--agent", f"127.0.0.1:{closed_port()}",
                            "--key-file", self.key_file], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 1, r)
        # Missing --agent, a folder that does not exist, a bad --agent.
        self.assertEqual(self.capctl("status", agent=False).returncode, 2)
        self.assertEqual(self.capctl("deploy", "/no/such/folder").returncode, 2)
        r = subprocess.run([capctl_binary(), "status", "--agent", "no-port-here",
                            "--key-file", self.key_file], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 2, r)


if __name__ == "__main__":
    unittest.main()
