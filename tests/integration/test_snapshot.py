"""Snapshots end to end against a real S3 protocol server (moto_server with signature
checking and IAM authorisation on): capture from one agent with capctl, start a second
agent from S3_GOLD_MASTER and see the same configuration, mode, extensions and vault;
runtime restore; file:// URLs; multipart upload; the task-role credential endpoint."""

import hashlib
import http.server
import io
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
import unittest
import zipfile

from agent_harness import (Agent, capctl_binary, closed_port, configuration, make_zip, ruleset)
from s3_harness import S3Server, clean_aws_env

KEY = "snapshot-test-key-0123456789"


def site_config(name="site", body="normal user=${vault:api.user}", extensions=None):
    """A configuration with a Maintenance mode and a body that shows a vault field."""
    manifest = {"modes": {"Maintenance": "maintenance"}}
    if extensions:
        manifest["extensions"] = extensions
    return configuration(name, [
        ruleset("main", "r", {"r": {"rule": "HttpRespond", "with": {"body": body}}}),
        ruleset("maintenance", "m", {"m": {"rule": "HttpRespond", "with": {
            "status": 503, "body": "maintenance user=${vault:api.user}"}}}),
    ], **manifest)


def extension_zip(name, version="1.0.0", data=b""):
    """A real extension package (it verifies and loads); `data` pads it as a data file."""
    script = b"return function(ctx) end"
    members = {"rules/rule.lua": script, "data/blob.bin": data}
    manifest = {"name": name, "version": version,
                "rules": [{"name": "Rule_" + name.replace("-", "_"), "doc": "Does nothing.",
                           "script": "rules/rule.lua"}],
                "sha256": {p: hashlib.sha256(d).hexdigest() for p, d in members.items()}}
    members["extension.json"] = json.dumps(manifest).encode()
    return make_zip(members)


def read_zip(data):
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {n: z.read(n) for n in z.namelist()}


def write_snapshot(members, meta_changes=None, hashes=None):
    """A snapshot zip from {name: bytes}; snapshot.json lists sha256 of each (or `hashes`)."""
    meta = {"format": 1, "agent_version": "0.1.0", "agent_name": "crafted",
            "created_at": "2024-01-01T00:00:00.000Z",
            "members": {n: hashlib.sha256(b).hexdigest() for n, b in members.items()}}
    if hashes:
        meta["members"].update(hashes)
    meta.update(meta_changes or {})
    files = dict(members)
    files["snapshot.json"] = json.dumps(meta).encode()
    return make_zip(files)


class SnapshotTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.s3 = S3Server().start()

    @classmethod
    def tearDownClass(cls):
        cls.s3.stop()

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="cap-snapshot-test-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.key_file = os.path.join(self.tmp, "mgmt.key")
        with open(self.key_file, "w") as f:
            f.write(KEY)

    # -- helpers

    def agent(self, env=None, wait=True, key=KEY, home=None):
        a = Agent(key=key, env=dict(env or {}), home=home)
        self.addCleanup(a.cleanup)
        return a.start(wait=wait)

    def capctl(self, *args, env=None, timeout=120):
        e = clean_aws_env({k: v for k, v in os.environ.items() if k != "CAP_MGMT_KEY"})
        e.update(env if env is not None else self.s3.env())
        return subprocess.run([capctl_binary()] + list(args), capture_output=True, text=True,
                              timeout=timeout, env=e)

    def agent_args(self, a):
        return ["--agent", f"127.0.0.1:{a.mgmt_port}", "--key-file", self.key_file]

    def source_agent(self, extensions=None, ext_files=None):
        """An agent with a configuration (in Maintenance mode), extension files and a vault."""
        a = self.agent()
        for name, data in (ext_files or {}).items():
            r = a.mgmt("PUT", "/v1/extensions/" + name[:-len(".zip")], data)
            self.assertEqual(r.status, 200, r)
        a.deploy_ok(site_config(extensions=extensions))
        r = a.mgmt("PUT", "/v1/vault", {"api": {"user": "ann", "password": "s3cr3t pw"}})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(a.mgmt("PUT", "/v1/mode", {"mode": "Maintenance"}).status, 200)
        return a

    def failed_start(self, url, env=None, key=KEY, home=None):
        """Starts an agent with S3_GOLD_MASTER=url that must stop; returns its error lines."""
        e = dict(self.s3.env() if env is None else env)
        e["S3_GOLD_MASTER"] = url
        a = self.agent(env=e, wait=False, key=key, home=home)
        code = a.wait_exit(60)
        self.assertNotEqual(code, 0, a.log_text())
        self.assertNotIn("serving:", a.log_text())
        errors = [r for r in a.log_records() if r.get("level") == "error"]
        self.assertEqual(len(errors), 1, a.log_text())
        self.assertIn(url, errors[0]["msg"])
        return errors[0]["msg"]

    def status(self, a):
        r = a.mgmt("GET", "/v1/status")
        self.assertEqual(r.status, 200, r)
        return r.json()

    def read_dir(self, path):
        if not os.path.isdir(path):
            return {}
        out = {}
        for name in os.listdir(path):
            with open(os.path.join(path, name), "rb") as f:
                out[name] = f.read()
        return out

    # -- the whole round trip

    def test_capture_to_s3_then_a_second_agent_starts_from_the_gold_master(self):
        ext = {"geo.zip": extension_zip("geo", data=secrets.token_bytes(50_000)),
               "notes.zip": extension_zip("notes")}
        a = self.source_agent(extensions={"geo": "1.0"}, ext_files=ext)
        r = self.capctl("snapshot", "capture", *self.agent_args(a), "--to",
                        self.s3.url("prod/"), "--latest")
        self.assertEqual(r.returncode, 0, r.stderr)
        written = r.stdout.strip()
        self.assertRegex(written, r"^s3://cap-snapshots/prod/test-agent-\d{8}T\d{6}Z\.zip$")
        self.assertIn("capturing", r.stderr)  # progress on stderr
        key = written[len("s3://cap-snapshots/"):]
        self.assertEqual(self.s3.keys("prod"), sorted([key, "prod/latest"]))
        self.assertIn(written.encode(), self.s3.get("prod/latest"))
        members = read_zip(self.s3.get(key))
        self.assertEqual(members["extensions/geo.zip"], ext["geo.zip"])
        self.assertNotIn(b"s3cr3t", members["vault.sealed"])  # the vault travels sealed

        b = self.agent(env=dict(self.s3.env(), S3_GOLD_MASTER=self.s3.url("prod/latest")))
        sa, sb = self.status(a), self.status(b)
        self.assertEqual(sb["configuration"]["sha256"], sa["configuration"]["sha256"])
        self.assertEqual(sb["mode"], "Maintenance")
        ra, rb = a.web("GET", "/"), b.web("GET", "/")
        self.assertEqual((rb.status, rb.body), (ra.status, ra.body))
        self.assertEqual(rb.body, b"maintenance user=ann")
        self.assertEqual(self.read_dir(os.path.join(b.home, "extensions")), ext)
        # The vault works in B under B's own key.
        self.assertEqual(b.mgmt("PUT", "/v1/mode", {"mode": "default"}).status, 200)
        self.assertEqual(b.web("GET", "/").body, b"normal user=ann")
        with open(os.path.join(a.home, "vault.key"), "rb") as fa, \
                open(os.path.join(b.home, "vault.key"), "rb") as fb:
            self.assertNotEqual(fa.read(), fb.read())
        self.assertTrue(b.wait_for_log(r"gold master s3://cap-snapshots/prod/latest points to"))

        # The same configuration survives B's restart without the gold master.
        b.stop()
        c = self.agent(env=self.s3.env(), home=b.home)
        self.assertEqual(self.status(c)["configuration"]["sha256"], sa["configuration"]["sha256"])
        self.assertEqual(c.web("GET", "/").body, b"normal user=ann")

    def test_inspect_and_list(self):
        a = self.source_agent()
        url = self.s3.url("inspect/one.zip")
        self.assertEqual(self.capctl("snapshot", "capture", *self.agent_args(a), "--to", url,
                                     "--latest").returncode, 0)
        r = self.capctl("snapshot", "inspect", url)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("configuration site", r.stdout)
        self.assertIn("mode          Maintenance", r.stdout)
        self.assertIn("vault         sealed", r.stdout)
        self.assertIn("configuration.zip", r.stdout)
        # moto_server checks the signature of a listing against the decoded query, so a
        # prefix with '/' (which must be sent as %2F) is refused there; real S3 takes it.
        r = self.capctl("snapshot", "list", self.s3.url("inspect"))
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.strip().splitlines()
        self.assertEqual(len(lines), 2, r.stdout)
        self.assertTrue(lines[0].endswith(" -> " + url), lines)  # latest, with its target
        self.assertTrue(lines[1].endswith(url), lines)

        bad = os.path.join(self.tmp, "bad.zip")
        with open(bad, "wb") as f:
            f.write(b"not a zip at all")
        r = self.capctl("snapshot", "inspect", bad)
        self.assertEqual(r.returncode, 1)
        self.assertIn("corrupt snapshot", r.stderr)

    def test_runtime_restore_with_capctl_and_file_urls(self):
        one = extension_zip("one")
        a = self.source_agent(ext_files={"one.zip": one})
        path = os.path.join(self.tmp, "snaps")
        os.makedirs(path)
        r = self.capctl("snapshot", "capture", *self.agent_args(a), "--to", f"file://{path}/")
        self.assertEqual(r.returncode, 0, r.stderr)
        url = r.stdout.strip()
        self.assertTrue(url.startswith(f"file://{path}/test-agent-"), url)

        b = self.agent()
        os.makedirs(os.path.join(b.home, "extensions"), exist_ok=True)
        with open(os.path.join(b.home, "extensions", "old.zip"), "wb") as f:
            f.write(b"old")
        r = self.capctl("snapshot", "restore", "--from", url, *self.agent_args(b))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), self.status(b)["configuration"]["id"])
        self.assertEqual(b.web("GET", "/").body, b"maintenance user=ann")
        self.assertEqual(self.read_dir(os.path.join(b.home, "extensions")), {"one.zip": one})

        r = self.capctl("snapshot", "list", f"file://{path}/")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(url, r.stdout)

        # A gold master can be a file too.
        c = self.agent(env={"S3_GOLD_MASTER": url})
        self.assertEqual(c.web("GET", "/").body, b"maintenance user=ann")

    def test_multipart_upload_of_a_large_snapshot(self):
        big = extension_zip("big", data=secrets.token_bytes(11 * 1024 * 1024))
        a = self.source_agent(ext_files={"big.zip": big})
        env = self.s3.env(CAP_S3_MULTIPART_MB="5", CAP_S3_PART_SIZE_MB="5")
        r = self.capctl("snapshot", "capture", *self.agent_args(a), "--to",
                        self.s3.url("big/snap.zip"), env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("uploading: 5.0 of", r.stderr)  # one line a part
        head = self.s3.s3().head_object(Bucket=self.s3.bucket, Key="big/snap.zip")
        self.assertTrue(head["ETag"].strip('"').endswith("-3"), head["ETag"])  # three parts
        b = self.agent(env=dict(self.s3.env(), S3_GOLD_MASTER=self.s3.url("big/snap.zip")))
        self.assertEqual(self.read_dir(os.path.join(b.home, "extensions")), {"big.zip": big})

    # -- restore at start: every failure stops the agent with one clear line

    def test_missing_object(self):
        msg = self.failed_start(self.s3.url("nothing/here.zip"))
        self.assertIn("missing object", msg)
        self.assertIn("NoSuchKey", msg)
        b = self.agent()
        cid = b.deploy_ok(site_config("before", body="before"))
        r = self.capctl("snapshot", "restore", "--from", self.s3.url("nothing/here.zip"),
                        *self.agent_args(b))
        self.assertEqual(r.returncode, 1)
        self.assertIn("no such object", r.stderr)
        self.assertEqual(self.status(b)["configuration"]["id"], cid)
        r = self.capctl("snapshot", "restore", "--from", "http://x/y.zip", *self.agent_args(b))
        self.assertEqual(r.returncode, 2)
        self.assertIn("is not a snapshot URL", r.stderr)

    def test_access_denied(self):
        a = self.source_agent()
        url = self.s3.url("denied/snap.zip")
        self.assertEqual(self.capctl("snapshot", "capture", *self.agent_args(a), "--to",
                                     url).returncode, 0)
        msg = self.failed_start(url, env=self.s3.env(self.s3.denied_key))
        self.assertIn("access denied", msg)
        self.assertIn("AccessDenied", msg)
        msg = self.failed_start(url, env=self.s3.env((self.s3.key[0], "wrong-secret")))
        self.assertIn("access denied", msg)
        self.assertIn("SignatureDoesNotMatch", msg)
        # capctl says the same, reading and writing, and writes nothing.
        r = self.capctl("snapshot", "inspect", url, env=self.s3.env(self.s3.denied_key))
        self.assertEqual(r.returncode, 1)
        self.assertIn("access denied", r.stderr)
        r = self.capctl("snapshot", "capture", *self.agent_args(a), "--to",
                        self.s3.url("denied/other.zip"), env=self.s3.env(self.s3.denied_key))
        self.assertEqual(r.returncode, 1)
        self.assertIn("access denied", r.stderr)
        self.assertEqual(r.stdout, "")
        self.assertEqual(self.s3.keys("denied"), ["denied/snap.zip"])

    def test_unreachable_endpoint(self):
        env = self.s3.env(AWS_ENDPOINT_URL_S3=f"http://127.0.0.1:{closed_port()}")
        msg = self.failed_start(self.s3.url("any/snap.zip"), env=env)
        self.assertIn("unreachable endpoint", msg)

    def test_no_credentials(self):
        env = {"AWS_REGION": "eu-west-1", "AWS_ENDPOINT_URL_S3": self.s3.endpoint,
               "HOME": self.tmp}
        msg = self.failed_start(self.s3.url("any/snap.zip"), env=env)
        self.assertIn("no AWS credentials", msg)

    def good_members(self, config=None):
        return {"configuration.zip": make_zip(config or site_config()),
                "mode.json": b'{"mode":"","stopped":false}'}

    def test_corrupt_zip(self):
        url = self.s3.url("bad/corrupt.zip")
        good = write_snapshot(self.good_members())
        self.s3.put("bad/corrupt.zip", good[: len(good) // 2])
        msg = self.failed_start(url)
        self.assertIn("corrupt snapshot", msg)

    def test_hash_mismatch_leaves_cap_home_untouched(self):
        members = self.good_members()
        self.s3.put("bad/hash.zip", write_snapshot(
            members, hashes={"mode.json": hashlib.sha256(b"other").hexdigest()}))
        # An agent that already has a configuration in its home.
        a = self.agent()
        a.deploy_ok(site_config("before", body="before"))
        a.stop()
        with open(os.path.join(a.home, "state.json"), "rb") as f:
            state = f.read()
        msg = self.failed_start(self.s3.url("bad/hash.zip"), home=a.home)
        self.assertIn("hash mismatch: member mode.json", msg)
        with open(os.path.join(a.home, "state.json"), "rb") as f:
            self.assertEqual(f.read(), state)

    def test_unknown_format_version(self):
        self.s3.put("bad/format.zip", write_snapshot(self.good_members(), {"format": 2}))
        msg = self.failed_start(self.s3.url("bad/format.zip"))
        self.assertIn("unknown snapshot format 2", msg)

    def test_missing_extension(self):
        members = self.good_members(site_config(extensions={"geo": "1.0"}))
        self.s3.put("bad/ext.zip", write_snapshot(members))
        msg = self.failed_start(self.s3.url("bad/ext.zip"))
        self.assertIn("missing extension", msg)
        self.assertIn("'geo'", msg)

    def test_vault_sealed_with_another_management_key(self):
        a = self.source_agent()
        url = self.s3.url("vault/snap.zip")
        self.assertEqual(self.capctl("snapshot", "capture", *self.agent_args(a), "--to",
                                     url).returncode, 0)
        msg = self.failed_start(url, key="another-key-0123456789")
        self.assertIn("does not open with this agent's CAP_MGMT_KEY", msg)

    def test_invalid_url(self):
        msg = self.failed_start("http://example.com/snap.zip")
        self.assertIn("not a valid snapshot URL", msg)

    # -- PUT /v1/snapshot refuses bad snapshots and changes nothing

    def test_put_snapshot_refusals_change_nothing(self):
        b = self.agent()
        cid = b.deploy_ok(site_config("before", body="before"))
        ext_dir = os.path.join(b.home, "extensions")
        os.makedirs(ext_dir, exist_ok=True)
        with open(os.path.join(ext_dir, "old.zip"), "wb") as f:
            f.write(b"old")
        self.assertEqual(b.mgmt("PUT", "/v1/vault", {"api": {"user": "bob"}}).status, 200)

        bad_config = configuration("bad", [ruleset("main", "a", {
            "a": {"rule": "NoSuchRule", "with": {}}})])
        cases = {
            "corrupt snapshot": b"PK\x03\x04 truncated",
            "hash mismatch": write_snapshot(self.good_members(),
                                            hashes={"mode.json": "0" * 64}),
            "unknown snapshot format 7": write_snapshot(self.good_members(), {"format": 7}),
            "missing extension": write_snapshot(
                self.good_members(site_config(extensions={"geo": "1"}))),
            "cannot be activated": write_snapshot(dict(
                self.good_members(bad_config), **{"extensions/new.zip": extension_zip("new")})),
            "has no mode 'Gone'": write_snapshot(dict(
                self.good_members(), **{"mode.json": b'{"mode":"Gone"}',
                                        "extensions/new.zip": extension_zip("new")})),
        }
        for cause, body in cases.items():
            with self.subTest(cause=cause):
                r = b.mgmt("PUT", "/v1/snapshot", body, {"Content-Type": "application/zip"})
                self.assertEqual(r.status, 422, r)
                self.assertIn(cause, json.dumps(r.json()))
                self.assertEqual(self.status(b)["configuration"]["id"], cid)
                self.assertEqual(b.web("GET", "/").body, b"before")
                self.assertEqual(self.read_dir(ext_dir), {"old.zip": b"old"})
                self.assertFalse(os.path.exists(ext_dir + ".previous"))
                self.assertFalse(os.path.exists(ext_dir + ".restoring"))

    def test_capture_of_a_blank_agent_is_refused(self):
        b = self.agent()
        r = b.mgmt("GET", "/v1/snapshot")
        self.assertEqual(r.status, 409)
        self.assertIn("no configuration is active", r.json()["error"])
        r = self.capctl("snapshot", "capture", *self.agent_args(b), "--to",
                        self.s3.url("blank/x.zip"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("no configuration is active", r.stderr)
        self.assertEqual(self.s3.keys("blank"), [])

    # -- the ECS task role: credentials from the container endpoint

    def test_task_role_credentials_endpoint(self):
        a = self.source_agent()
        url = self.s3.url("role/snap.zip")
        self.assertEqual(self.capctl("snapshot", "capture", *self.agent_args(a), "--to",
                                     url).returncode, 0)
        key_id, secret = self.s3.key
        seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                seen.append((self.path, self.headers.get("Authorization")))
                if self.headers.get("Authorization") != "role-token":
                    self.send_response(401)
                    self.end_headers()
                    return
                expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
                body = json.dumps({"AccessKeyId": key_id, "SecretAccessKey": secret,
                                   "Token": "", "Expiration": expires}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        endpoint = f"http://127.0.0.1:{server.server_address[1]}/v2/credentials/task"
        env = {"AWS_REGION": self.s3.region, "AWS_ENDPOINT_URL_S3": self.s3.endpoint,
               "HOME": self.tmp, "AWS_CONTAINER_CREDENTIALS_FULL_URI": endpoint,
               "AWS_CONTAINER_AUTHORIZATION_TOKEN": "role-token", "S3_GOLD_MASTER": url}
        b = self.agent(env=env)
        self.assertEqual(b.web("GET", "/").body, b"maintenance user=ann")
        self.assertIn(("/v2/credentials/task", "role-token"), seen)

        env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = "wrong-token"
        del env["S3_GOLD_MASTER"]
        msg = self.failed_start(url, env=env)
        self.assertIn("container credentials endpoint", msg)
        self.assertIn("HTTP 401", msg)
        self.assertNotIn("wrong-token", msg)


if __name__ == "__main__":
    unittest.main()
