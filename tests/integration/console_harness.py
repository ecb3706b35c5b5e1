"""Helpers for the console's integration tests: start a real cap-console on a free loopback
port with a temporary CAP_CONSOLE_HOME (SQLite) or a given CAP_CONSOLE_DB, log in, and call
its REST API. Agents come from agent_harness.

Python 3 standard library only. The binary comes from CAP_CONSOLE (set by ctest) or
build/release.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest

from agent_harness import SOURCE_DIR, Agent, Reply, _binary, http_request, make_zip

ADMIN_PASSWORD = "admin-password-for-tests"


def console_binary():
    return _binary("CAP_CONSOLE", "cap-console")


class Console:
    """A cap-console process with its own home and port."""

    def __init__(self, home=None, env=None, admin_password=ADMIN_PASSWORD):
        self.own_home = home is None
        self.home = home or tempfile.mkdtemp(prefix="cap-console-")
        self.env = dict(env or {})
        self.admin_password = admin_password
        self.proc = None
        self.port = None
        self.lines = []
        self.lock = threading.Lock()
        self._token = None

    def start(self, wait=True):
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAP_")}
        env.update({
            "CAP_CONSOLE_HOME": self.home,
            "CAP_CONSOLE_PORT": "0",
            "CAP_CONSOLE_ADDRESS": "127.0.0.1",
            "CAP_CONSOLE_POLL_MS": "300",
        })
        if self.admin_password:
            env["CAP_ADMIN_PASSWORD"] = self.admin_password
        env.update(self.env)
        self.lines = []
        self.port = None
        self._token = None
        self.proc = subprocess.Popen([console_binary()], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self._listening = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if wait and not self._listening.wait(30):
            self.kill()
            raise AssertionError("cap-console did not start:\n" + self.output())
        return self

    def _read(self):
        with self.proc.stdout as stream:
            for raw in stream:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                with self.lock:
                    self.lines.append(line)
                m = re.search(r"listening on https?://[^ ]+:(\d+)", line)
                if m:
                    self.port = int(m.group(1))
                    self._listening.set()

    def output(self):
        with self.lock:
            return "\n".join(self.lines)

    def stop(self, timeout=30):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            code = self.proc.wait(timeout)
            self._reader.join(5)
            return code
        return self.proc.returncode if self.proc else None

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def cleanup(self):
        self.kill()
        if self.own_home:
            shutil.rmtree(self.home, ignore_errors=True)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    # -- HTTP

    def request(self, method, path, body=None, headers=None, token=None, timeout=180):
        """One request. `body` may be bytes, str or a JSON-able dict/list. `token`: a Bearer
        token; None uses the admin's; False sends none."""
        h = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            body = body.encode()
        if token is None:
            token = self.admin_token()
        if token:
            h["Authorization"] = "Bearer " + token
        return http_request(self.port, method, path, body, h, timeout=timeout)

    def login(self, username, password):
        r = self.request("POST", "/api/v1/auth/token", {"username": username, "password": password},
                         token=False)
        if r.status != 200:
            raise AssertionError(f"login as {username} failed: {r}")
        return r.json()["token"]

    def admin_token(self):
        if not self._token:
            self._token = self.login("admin", self.admin_password or ADMIN_PASSWORD)
        return self._token

    def ok(self, method, path, body=None, expect=(200, 201, 204), **kw):
        r = self.request(method, path, body, **kw)
        if r.status not in (expect if isinstance(expect, tuple) else (expect,)):
            raise AssertionError(f"{method} {path}: {r}")
        return r.json() if r.body else None

    # -- shortcuts

    def add_agent(self, agent, agent_id, group="", **extra):
        body = {"id": agent_id, "host": "127.0.0.1", "port": agent.mgmt_port, "key": agent.key,
                "type": "test", "group": group, "web_port": agent.web_port}
        body.update(extra)
        return self.ok("POST", "/api/v1/agents", body)

    def save(self, repo, name, files, message="", token=None):
        return self.request("PUT", f"/api/v1/repositories/{repo}/configurations/{name}"
                            f"?message={message.replace(' ', '+')}", make_zip(files),
                            {"Content-Type": "application/zip"}, token=token)

    def wait_for(self, predicate, timeout=15, what="condition"):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


class ConsoleTestCase(unittest.TestCase):
    """Starts one console per test (self.console) and cleans up after."""

    console_env = {}

    def setUp(self):
        self.console = Console(env=dict(self.console_env)).start()
        self.addCleanup(self.console.cleanup)

    def new_agent(self, **kw):
        a = Agent(**kw).start()
        self.addCleanup(a.cleanup)
        return a

    def new_console(self, **kw):
        c = Console(**kw).start()
        self.addCleanup(c.cleanup)
        return c
