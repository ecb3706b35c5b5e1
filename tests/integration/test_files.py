"""The file rules in real agents on a real shared folder: examples/uploads end to end
(upload, list, download), oversized uploads (the rule's limit and the agent's body limit),
path-escape attempts (.., absolute paths, links leading outside) that write nothing
outside, atomic replacement seen by concurrent readers, and appends from two agents
sharing one folder that never interleave."""

import os
import shutil
import tempfile
import threading
import unittest
import urllib.parse

from agent_harness import Agent, configuration, early_answer, ruleset
from test_sql import read_example

MB = 1024 * 1024


def multipart(filename, data, field="file", boundary="cap-test-boundary"):
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; "
            f"filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
    body += data + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def files_config():
    """/write?p=&c=, /append?p=&c=, /read?p=, /list?p= over the shared folder; errors answer
    400 with FILE_ERROR."""
    def node(rule, with_, chains):
        return {"rule": rule, "with": with_, "then": chains}
    rules = {
        "route": {"rule": "Switch", "with": {"value": "${URI}"},
                  "then": {"/write": ["write"], "/append": ["append"], "/read": ["read"],
                           "/list": ["list"]}},
        "write": node("FileWrite", {"path": "${p}", "content": "${c}"},
                      {"ok": ["done"], "error": ["failed"]}),
        "append": node("FileWrite", {"path": "${p}", "content": "${c}", "append": True},
                       {"ok": ["done"], "error": ["failed"]}),
        "read": node("FileRead", {"path": "${p}"},
                     {"ok": ["show"], "missing": ["missing"], "error": ["failed"]}),
        "list": node("FileList", {"path": "${p}"},
                     {"ok": ["names"], "empty": ["missing"], "error": ["failed"]}),
        "show": {"rule": "HttpRespond", "with": {"body": "${FILE_CONTENT}"}},
        "names": {"rule": "HttpRespond", "with": {"body": "${json(FILES)}"}},
        "done": {"rule": "HttpRespond", "with": {"body": "ok"}},
        "missing": {"rule": "HttpRespond", "with": {"status": 404, "body": "missing"}},
        "failed": {"rule": "HttpRespond", "with": {"status": 400, "body": "${FILE_ERROR}"}},
    }
    return configuration("files", [ruleset("main", "route", rules)])


def q(**params):
    return "?" + urllib.parse.urlencode(params)


class SharedFolderTestCase(unittest.TestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="cap-files-")
        self.addCleanup(shutil.rmtree, self.root, True)
        self.shared = os.path.join(self.root, "shared")
        os.makedirs(self.shared)

    def agent(self, **env):
        e = {"CAP_SHARED_DIR": self.shared}
        e.update(env)
        a = Agent(env=e).start()
        self.addCleanup(a.cleanup)
        return a


class Uploads(SharedFolderTestCase):
    def test_upload_list_download(self):
        a = self.agent()
        a.deploy_ok(read_example("uploads"))
        payload = bytes(range(256)) * 64  # binary, 16 KiB
        body, headers = multipart("data.bin", payload)
        r = a.web("POST", "/upload", body, headers)
        self.assertEqual(r.status, 303, r)
        with open(os.path.join(self.shared, "uploads", "data.bin"), "rb") as f:
            self.assertEqual(f.read(), payload)
        listing = a.web("GET", "/files").json()
        self.assertEqual([(f["name"], f["size"]) for f in listing], [("data.bin", len(payload))])
        r = a.web("GET", "/download?name=data.bin")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, payload)
        self.assertEqual(r.headers.get("content-disposition"), 'attachment; filename="data.bin"')

    def test_oversized_uploads_save_nothing(self):
        a = self.agent(CAP_MAX_BODY_BYTES=str(2 * MB))
        a.deploy_ok(read_example("uploads"))
        body, headers = multipart("big.bin", b"x" * (MB + 1))  # over the rule's 1 MiB
        r = a.web("POST", "/upload", body, headers)
        self.assertEqual(r.status, 413, r)
        self.assertIn("more than the limit of 1048576", r.json()["error"])
        body, headers = multipart("huge.bin", b"x" * (3 * MB))  # over the agent's body limit
        status, head, _ = early_answer(a.web_port, "POST", "/upload", len(body),
                                       headers={"Content-Type": headers["Content-Type"]})
        self.assertEqual(status, 413, head)
        self.assertFalse(os.path.exists(os.path.join(self.shared, "uploads")))
        self.assertEqual(a.web("GET", "/files").json(), [])

    def test_upload_name_cannot_leave_the_folder(self):
        a = self.agent()
        a.deploy_ok(read_example("uploads"))
        body, headers = multipart("../../../etc/evil.sh", b"#!/bin/sh\n")
        self.assertEqual(a.web("POST", "/upload", body, headers).status, 303)
        self.assertTrue(os.path.exists(os.path.join(self.shared, "uploads", "evil.sh")))
        self.assertEqual(sorted(os.listdir(self.root)), ["shared"])


class Escapes(SharedFolderTestCase):
    def test_escape_attempts_are_refused_and_write_nothing_outside(self):
        outside = os.path.join(self.root, "outside")
        os.makedirs(outside)
        with open(os.path.join(outside, "secret.txt"), "w") as f:
            f.write("top secret")
        os.symlink(outside, os.path.join(self.shared, "link"))
        os.symlink(os.path.join(outside, "secret.txt"), os.path.join(self.shared, "secret-link"))
        a = self.agent()
        a.deploy_ok(files_config())
        for path in ["../escape.txt", "a/../../escape.txt", "/etc/passwd", "/tmp/escape.txt",
                     "link/secret.txt", "link/new.txt", "secret-link", "..", "a\\..\\..\\x"]:
            for op in ("write", "append", "read"):
                r = a.web("GET", f"/{op}" + q(p=path, c="pwned"))
                self.assertEqual(r.status, 400, (op, path, r))
                self.assertIn("is refused", r.text(), (op, path))
                self.assertNotIn("top secret", r.text())
        for path in ["link", "..", "/"]:
            r = a.web("GET", "/list" + q(p=path))
            self.assertEqual(r.status, 400, (path, r))
        self.assertEqual(sorted(os.listdir(outside)), ["secret.txt"])
        self.assertEqual(sorted(os.listdir(self.root)), ["outside", "shared"])
        with open(os.path.join(outside, "secret.txt")) as f:
            self.assertEqual(f.read(), "top secret")
        # Inside the folder everything works, links that stay inside included.
        self.assertEqual(a.web("GET", "/write" + q(p="ok/a.txt", c="fine")).text(), "ok")
        os.symlink(os.path.join(self.shared, "ok"), os.path.join(self.shared, "inner-link"))
        self.assertEqual(a.web("GET", "/read" + q(p="inner-link/a.txt")).text(), "fine")


class Concurrency(SharedFolderTestCase):
    def test_replacement_is_atomic_for_readers(self):
        a = self.agent()
        a.deploy_ok(files_config())
        versions = ["A" * 50000, "B" * 50000]
        def write(content):
            r = a.web("POST", "/write", urllib.parse.urlencode({"p": "doc.txt", "c": content}).encode(),
                      {"Content-Type": "application/x-www-form-urlencoded"})
            self.assertEqual(r.status, 200, r)

        write(versions[0])
        seen, stop = set(), threading.Event()

        def read():
            while not stop.is_set():
                r = a.web("GET", "/read" + q(p="doc.txt"))
                body = r.body.decode()
                seen.add(body if body in versions else f"{r.status}: {body[:80]!r} ({len(body)} bytes)")

        readers = [threading.Thread(target=read) for _ in range(3)]
        for t in readers:
            t.start()
        for i in range(40):
            write(versions[(i + 1) % 2])
        stop.set()
        for t in readers:
            t.join(30)
        self.assertTrue(seen)
        self.assertEqual(seen - set(versions), set())  # never a torn or empty file
        self.assertEqual(os.listdir(self.shared), ["doc.txt"])  # no temporary files left

    def test_appends_from_two_agents_sharing_a_folder_never_interleave(self):
        agents = [self.agent(), self.agent()]
        for a in agents:
            a.deploy_ok(files_config())
        n, line_len = 100, 2000

        def append(a, tag):
            for i in range(n):
                line = (tag * line_len)[:line_len - 6] + f"{i:05d}\n"
                r = a.web("POST", "/append", urllib.parse.urlencode({"p": "log/all.txt", "c": line}).encode(),
                          {"Content-Type": "application/x-www-form-urlencoded"})
                assert r.status == 200, r

        threads = [threading.Thread(target=append, args=(a, tag)) for a, tag in
                   [(agents[0], "a"), (agents[0], "b"), (agents[1], "c"), (agents[1], "d")]]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        with open(os.path.join(self.shared, "log", "all.txt")) as f:
            lines = f.read().splitlines()
        self.assertEqual(len(lines), 4 * n)
        for line in lines:
            self.assertEqual(len(line), line_len - 1, line[:40])
            self.assertEqual(set(line[:-5]), {line[0]}, line[:40])  # one writer per line
        for tag in "abcd":
            self.assertEqual(sorted(int(l[-5:]) for l in lines if l[0] == tag), list(range(n)))


if __name__ == "__main__":
    unittest.main()
