"""Helpers for the agent's integration tests: start a real cap-agent on free loopback
ports with a temporary CAP_HOME, sign management requests, build configuration zips, run a
local origin server.

Python 3 standard library only. The binaries come from the environment (CAP_AGENT,
CAPCTL, set by ctest) or from build/release.
"""

import hashlib
import hmac
import http.client
import http.server
import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import socketserver
import subprocess
import tempfile
import threading
import time
import unittest
import zipfile

SOURCE_DIR = os.environ.get(
    "CAP_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))


def _binary(env_name, name):
    path = os.environ.get(env_name) or os.path.join(SOURCE_DIR, "build", "release", name)
    if not os.access(path, os.X_OK):
        raise unittest.SkipTest(f"{name} not built ({path}); set {env_name}")
    return path


def agent_binary():
    return _binary("CAP_AGENT", "cap-agent")


def capctl_binary():
    return _binary("CAPCTL", "capctl")


# ----------------------------------------------------------------------------------------
# Configurations


def ruleset(name, start, rules, exits=None):
    return {"name": name, "start": start, "exits": exits or [], "rules": rules}


def configuration(name, rulesets, **manifest):
    """A configuration as {path: bytes}. `rulesets` is a list of rule-set dicts; the first
    is the entry unless manifest names one."""
    cap = {"format": 1, "name": name, "ruleset": rulesets[0]["name"]}
    cap.update(manifest)
    files = {"cap.json": json.dumps(cap).encode()}
    for rs in rulesets:
        files[f"rulesets/{rs['name']}.json"] = json.dumps(rs).encode()
    return files


def respond_config(name, body, status=200, headers=None, **manifest):
    """Every request gets `body`."""
    return configuration(name, [ruleset("main", "respond", {
        "respond": {"rule": "HttpRespond", "with": {
            "status": status, "body": body, "content_type": "text/plain",
            "headers": headers or {}}},
    })], **manifest)


def hello_config(greeting="Hello"):
    """Like examples/hello: /hello?name=X greets, anything else 404."""
    return configuration("hello", [ruleset("main", "isHello", {
        "isHello": {"rule": "IfCondition", "with": {"condition": "URI == '/hello'"},
                    "then": {"true": ["greet"], "false": ["notFound"]}},
        "greet": {"rule": "SetVariable", "with": {"name": "MSG", "value": "${GREETING}, ${name}!"},
                  "then": {"next": ["respond"]}},
        "respond": {"rule": "HttpRespond", "with": {"status": 200, "body": "${MSG}",
                                                     "content_type": "text/plain"}},
        "notFound": {"rule": "HttpRespond", "with": {"status": 404, "body": "not found"}},
    })], globals={"GREETING": greeting})


def make_zip(files):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for path, data in sorted(files.items()):
            z.writestr(path, data)
    return buf.getvalue()


def write_folder(files, root):
    for path, data in files.items():
        full = os.path.join(root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(data)
    return root


# ----------------------------------------------------------------------------------------
# Signing (DESIGN §5)


def auth_header(key, method, path, body=b"", ts=None, nonce=None):
    ts = str(int(time.time()) if ts is None else ts)
    nonce = nonce or secrets.token_hex(16)
    text = "\n".join([method, path, ts, nonce, hashlib.sha256(body).hexdigest()])
    sig = hmac.new(key.encode(), text.encode(), hashlib.sha256).hexdigest()
    return f"CAP-HMAC-SHA256 ts={ts}, nonce={nonce}, sig={sig}"


class Reply:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lower-case name -> value (last wins)
        self.header_list = []
        self.body = body

    def json(self):
        return json.loads(self.body)

    def text(self):
        return self.body.decode("utf-8", "replace")

    def __repr__(self):
        return f"Reply({self.status}, {self.body[:300]!r})"


def http_request(port, method, path, body=None, headers=None, host="127.0.0.1", timeout=30):
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        reply = Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
        reply.header_list = r.getheaders()
        return reply
    finally:
        conn.close()


# ----------------------------------------------------------------------------------------
# The agent process


class Agent:
    """A cap-agent process with its own CAP_HOME and ports."""

    def __init__(self, home=None, key="test-key-0123456789", env=None, args=None, prefix=None):
        """`prefix`: words run before the binary (["ip", "netns", "exec", NS])."""
        self.prefix = prefix or []
        self.own_home = home is None
        self.home = home or tempfile.mkdtemp(prefix="cap-home-")
        self.key = key
        self.extra_env = env or {}
        self.args = args or []
        self.proc = None
        self.lines = []  # stdout lines (JSON log records)
        self.lines_lock = threading.Lock()
        self.web_port = None
        self.mgmt_port = None

    # -- life cycle

    def start(self, wait=True):
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAP_") and k != "S3_GOLD_MASTER"}
        env.update({
            "CAP_HOME": self.home,
            "CAP_WEB_ADDRESS": "127.0.0.1",
            "CAP_MGMT_ADDRESS": "127.0.0.1",
            "CAP_WEB_PORT": "0",
            "CAP_MGMT_PORT": "0",
            "CAP_WORKERS": "2",
            "CAP_LOG_FORMAT": "json",
            "CAP_AGENT_NAME": "test-agent",
        })
        if self.key:
            env["CAP_MGMT_KEY"] = self.key
        env.update(self.extra_env)
        self.lines = []
        self.proc = subprocess.Popen(self.prefix + [agent_binary()] + self.args, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._serving = threading.Event()
        self._reader = threading.Thread(target=self._read_output, args=(self.proc.stdout,),
                                        daemon=True)
        self._reader.start()
        if wait:
            if not self._serving.wait(20):
                self.kill()
                raise AssertionError("cap-agent did not start:\n" + self.log_text())
        return self

    def _read_output(self, stream):
        with stream:
            self._read_lines(stream)

    def _read_lines(self, stream):
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self.lines_lock:
                self.lines.append(line)
            m = re.search(r"serving: web on [^:]+:(\d+), management on [^:]+:(\d+)", line)
            if m:
                self.web_port, self.mgmt_port = int(m.group(1)), int(m.group(2))
                self._serving.set()

    def wait_exit(self, timeout=30):
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def stop(self, timeout=30):
        """SIGTERM and wait; returns the exit status."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.wait_exit(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise
        return self.proc.returncode if self.proc else None

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc:
            self._reader.join(5)

    def cleanup(self):
        self.kill()
        if self.own_home:
            shutil.rmtree(self.home, ignore_errors=True)

    def log_text(self):
        with self.lines_lock:
            return "\n".join(self.lines)

    def wait_log(self, pattern, timeout=10):
        """The log text once a line matches `pattern` (a regex), or as it is after `timeout`
        seconds: lines reach the harness through a reader thread, a moment after the agent
        wrote them."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_text()
            if re.search(pattern, text) or time.monotonic() > deadline:
                return text
            time.sleep(0.02)

    def log_records(self):
        out = []
        with self.lines_lock:
            lines = list(self.lines)
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def wait_for_log(self, pattern, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if re.search(pattern, self.log_text()):
                return True
            time.sleep(0.02)
        return False

    # -- HTTP

    def web(self, method, path, body=None, headers=None, timeout=30):
        return http_request(self.web_port, method, path, body, headers, timeout=timeout)

    def mgmt(self, method, path, body=b"", headers=None, sign=True, key=None, ts=None, nonce=None,
             timeout=30):
        if isinstance(body, str):
            body = body.encode()
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        h = dict(headers or {})
        if sign:
            h["Authorization"] = auth_header(key or self.key, method, path, body or b"", ts, nonce)
        return http_request(self.mgmt_port, method, path, body if body else None, h, timeout=timeout)

    def traces(self, timeout=20):
        """The recorded traces (GET /v1/trace), waiting until there is one: a trace is stored
        when the request's rules finish, which for a streamed answer is just after its end
        reached the client."""
        deadline = time.monotonic() + timeout
        while True:
            traces = self.mgmt("GET", "/v1/trace").json()["traces"]
            if traces or time.monotonic() > deadline:
                return traces
            time.sleep(0.05)

    def deploy(self, files):
        return self.mgmt("PUT", "/v1/configuration", make_zip(files),
                         {"Content-Type": "application/zip"})

    def deploy_ok(self, files):
        r = self.deploy(files)
        if r.status != 200:
            raise AssertionError(f"deploy failed: {r}")
        return r.json()["id"]


class LogAssertions:
    """A test case mixin for cases with an agent in self.agent."""

    def assertLogged(self, pattern):
        """The agent logs a line matching `pattern` (waiting for the log reader)."""
        self.assertRegex(self.agent.wait_log(pattern), pattern)


class AgentTestCase(LogAssertions, unittest.TestCase):
    """Starts one agent per test (self.agent) and cleans up after."""

    agent_env = {}
    agent_key = "test-key-0123456789"

    def setUp(self):
        self.agent = Agent(key=self.agent_key, env=dict(self.agent_env)).start()
        self.addCleanup(self.agent.cleanup)

    def new_agent(self, **kw):
        a = Agent(**kw).start()
        self.addCleanup(a.cleanup)
        return a


# ----------------------------------------------------------------------------------------
# A local origin server


class Origin:
    """A threading HTTP server on a free loopback port. Paths:
      /echo...          200 JSON {method, path, headers, body_sha256, body_length}
      /slow?ms=N        waits N ms (signals `slow_started` first), then 200 "slow done"
      /big?bytes=N      200 with N bytes
      /stream?bytes=N   200 with N bytes of stream_pattern(), written in 64 KiB pieces as the
                        reader takes them (chunked with &chunked=1); `stream_sent` counts them
      /sink             reads the body (Content-Length or chunked) piece by piece and answers
                        its length and sha256 without keeping it (uploads of any size)
      anything else     like /echo
    Every request is recorded in `requests` (method, path, headers dict, body)."""

    def __init__(self):
        self.requests = []
        self.slow_started = threading.Event()
        self.stream_sent = 0
        origin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _body(self):
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _digest(self, n, h):
                while n:
                    piece = self.rfile.read(min(n, 256 * 1024))
                    if not piece:
                        raise ConnectionError("the body was cut short")
                    h.update(piece)
                    n -= len(piece)

            def _sink(self):
                """Reads the body piece by piece (Content-Length or chunked), keeping only
                its length and digest."""
                h = hashlib.sha256()
                n = 0
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            break
                        self._digest(size, h)
                        n += size
                        self.rfile.readline()
                else:
                    n = int(self.headers.get("Content-Length") or 0)
                    self._digest(n, h)
                info = {"method": self.command, "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body_sha256": h.hexdigest(), "body_length": n}
                origin.requests.append(info)
                self._send(200, json.dumps(info).encode(), "application/json")

            def _handle(self):
                if self.path.startswith("/sink"):
                    return self._sink()
                body = self._body()
                origin.requests.append({"method": self.command, "path": self.path,
                                        "headers": {k.lower(): v for k, v in self.headers.items()},
                                        "body": body})
                if self.path.startswith("/slow"):
                    ms = int(re.search(r"ms=(\d+)", self.path).group(1))
                    origin.slow_started.set()
                    time.sleep(ms / 1000)
                    return self._send(200, b"slow done", "text/plain")
                if self.path.startswith("/stream"):
                    return self._stream(int(re.search(r"bytes=(\d+)", self.path).group(1)),
                                        "chunked=1" in self.path)
                if self.path.startswith("/big"):
                    n = int(re.search(r"bytes=(\d+)", self.path).group(1))
                    return self._send(200, bytes(i % 251 for i in range(n)), "application/octet-stream")
                info = {"method": self.command, "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body_sha256": hashlib.sha256(body).hexdigest(), "body_length": len(body)}
                self._send(200, json.dumps(info).encode(), "application/json",
                           {"X-Origin": "yes", "X-Remove-Me": "1"})

            def _stream(self, n, chunked):
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("X-Origin", "yes")
                self.send_header("X-Remove-Me", "1")
                if chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                else:
                    self.send_header("Content-Length", str(n))
                self.end_headers()
                if self.command == "HEAD":
                    return
                for piece in stream_pattern(n):
                    if chunked:
                        self.wfile.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
                    else:
                        self.wfile.write(piece)
                    origin.stream_sent += len(piece)
                if chunked:
                    self.wfile.write(b"0\r\n\r\n")

            def _send(self, status, body, ctype, extra=None):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request, client_address):
                pass  # a client that gave up (a timeout test) is expected

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


_PATTERN = bytes((i * 31 + i // 256) % 256 for i in range(64 * 1024))


def stream_pattern(n):
    """N bytes of a fixed 64 KiB pattern, as pieces of at most 64 KiB."""
    while n > 0:
        piece = _PATTERN[:min(n, len(_PATTERN))]
        n -= len(piece)
        yield piece


def stream_sha256(n):
    h = hashlib.sha256()
    for piece in stream_pattern(n):
        h.update(piece)
    return h.hexdigest()


def process_memory_kb(pid, field="VmHWM"):
    """A field of /proc/PID/status in kB (VmHWM: the peak resident set size)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def early_answer(port, method, path, length, send=1024 * 1024, headers=None):
    """Sends the head of a request declaring a `length` byte body and the first `send` bytes
    of it, then reads what the agent answers before the rest: (status, headers text, body).
    (A client that sends everything first may hit a closed connection instead of reading
    an early answer such as 413.)"""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items()).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n%s\r\n"
                  % (method.encode(), path.encode(), length, extra))
        s.sendall(b"q" * min(send, length))
        got = b""
        try:
            while True:
                piece = s.recv(65536)
                if not piece:
                    break
                got += piece
        except ConnectionResetError:
            pass
    head, _, body = got.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1]) if head.startswith(b"HTTP/1.1 ") else 0
    return status, head.decode("latin-1"), body


def closed_port():
    """A loopback port nothing listens on."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
