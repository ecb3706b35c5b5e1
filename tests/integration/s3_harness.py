"""A real S3-compatible server for integration tests: `moto_server` (preinstalled in the
machine's Python) on a free loopback port, with signature checking and IAM authorisation
turned on (moto's INITIAL_NO_AUTH_ACTION_COUNT mechanism, switched on through its
/moto-api/reset-auth endpoint once the test users and bucket exist).

    with S3Server() as s3:
        s3.endpoint               # http://127.0.0.1:PORT
        s3.env()                  # AWS_* variables for the user allowed on s3.bucket
        s3.env(s3.denied_key)     # a user with no S3 permission
        s3.put(key, data); s3.get(key); s3.keys(prefix)

A missing moto_server is a test failure with a message saying how to install it, never a
skip. The setup calls use boto3 from moto_server's own Python.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request

BUCKET = "cap-snapshots"
REGION = "eu-west-1"


def moto_server_path():
    candidates = [os.environ.get("MOTO_SERVER"), shutil.which("moto_server"),
                  "/root/.pyenv/shims/moto_server"]
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return c
    raise AssertionError(
        "moto_server not found (tried $MOTO_SERVER, PATH, /root/.pyenv/shims/moto_server): the "
        "snapshot tests need a real S3-compatible server; install it with "
        "`pip install 'moto[server]'` into the Python on PATH or set MOTO_SERVER")


def _moto_python():
    """The Python that moto_server runs with (beside it: a pyenv shim or a venv's bin)."""
    py = os.path.join(os.path.dirname(moto_server_path()), "python3")
    return py if os.access(py, os.X_OK) else None


def run_under_moto_python_if_needed():
    """boto3 (moto's dependency) sets up the users and the bucket. When the Python running
    the tests lacks it but moto_server's own Python has it, run the same command there."""
    try:
        import boto3  # noqa: F401
        return
    except ImportError:
        pass
    py = _moto_python()
    if not py or os.environ.get("CAP_S3_HARNESS_REEXEC"):
        raise AssertionError("boto3 is missing from the Python running the tests "
                             f"({sys.executable}) and from moto_server's; it comes with moto: "
                             "pip install 'moto[server]'")
    os.environ["CAP_S3_HARNESS_REEXEC"] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    # `python -m unittest` shows itself as "python -m unittest" (or its __main__.py).
    argv0 = sys.argv[0]
    if "-m unittest" in argv0 or argv0.endswith(os.path.join("unittest", "__main__.py")):
        os.execv(py, [py, "-m", "unittest"] + sys.argv[1:])
    os.execv(py, [py] + sys.argv)


def _boto3():
    import boto3
    return boto3


def stop_process(proc, timeout=10):
    """SIGTERM to a server process the test started (if it still runs), SIGKILL after
    `timeout` seconds."""
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_moto_server(command, output, env=None):
    """Starts moto_server (`command`: the program and any arguments before the address
    options) on 127.0.0.1 at a port it picks, without moto's initial unauthenticated calls.
    Its output lines go to the list `output`. Returns (process, endpoint URL); raises
    AssertionError with the output when it has not started within 30 s."""
    env = dict(env or os.environ)
    env.pop("INITIAL_NO_AUTH_ACTION_COUNT", None)
    proc = subprocess.Popen(command + ["-H", "127.0.0.1", "-p", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    found = threading.Event()
    endpoint = []

    def read():
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace")
            output.append(line)
            m = re.search(r"Running on (http://127\.0\.0\.1:\d+)", line)
            if m and not found.is_set():
                endpoint.append(m.group(1))
                found.set()

    threading.Thread(target=read, daemon=True).start()
    if not found.wait(30):
        stop_process(proc)
        raise AssertionError("moto_server did not start:\n" + "".join(output))
    return proc, endpoint[0]


def moto_api(endpoint, path, data):
    """POSTs `data` (bytes) to one of moto_server's own /moto-api endpoints. (text/plain: a
    form content type would hide the body from moto.)"""
    req = urllib.request.Request(endpoint + path, data=data, method="POST",
                                 headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(req, timeout=10) as r:
        if not 200 <= r.status < 300:
            raise AssertionError(f"moto_server answered {r.status} to {path}")


class S3Server:
    def __init__(self):
        self.proc = None
        self.endpoint = None
        self.bucket = BUCKET
        self.region = REGION
        self._output = []

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        run_under_moto_python_if_needed()
        self.proc, self.endpoint = start_moto_server([moto_server_path()], self._output)
        self._setup()
        return self

    def _client(self, service, key=None):
        boto3 = _boto3()
        key = key or ("setup", "setup-secret")
        return boto3.client(service, endpoint_url=self.endpoint, region_name=self.region,
                            aws_access_key_id=key[0], aws_secret_access_key=key[1])

    def _setup(self):
        iam = self._client("iam")
        policy = {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": "s3:*",
            "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"]}]}
        iam.create_user(UserName="cap-snapshots")
        iam.put_user_policy(UserName="cap-snapshots", PolicyName="snapshots",
                            PolicyDocument=json.dumps(policy))
        k = iam.create_access_key(UserName="cap-snapshots")["AccessKey"]
        self.key = (k["AccessKeyId"], k["SecretAccessKey"])
        iam.create_user(UserName="nobody")
        k = iam.create_access_key(UserName="nobody")["AccessKey"]
        self.denied_key = (k["AccessKeyId"], k["SecretAccessKey"])
        self._client("s3").create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        # From here on every request must be signed by a known key and allowed by policy.
        # (text/plain: a form content type would hide the body from moto.)
        moto_api(self.endpoint, "/moto-api/reset-auth", b"0")

    def stop(self):
        stop_process(self.proc)
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()

    def env(self, key=None, **extra):
        """The environment a cap process needs to reach this store with `key`."""
        key = key or self.key
        e = {"AWS_ACCESS_KEY_ID": key[0], "AWS_SECRET_ACCESS_KEY": key[1],
             "AWS_REGION": self.region, "AWS_ENDPOINT_URL_S3": self.endpoint}
        e.update(extra)
        return e

    # Direct access for the tests (signed with the allowed key).
    def s3(self):
        return self._client("s3", self.key)

    def put(self, key, data):
        self.s3().put_object(Bucket=BUCKET, Key=key, Body=data)

    def get(self, key):
        return self.s3().get_object(Bucket=BUCKET, Key=key)["Body"].read()

    def keys(self, prefix=""):
        out = self.s3().list_objects_v2(Bucket=BUCKET, Prefix=prefix)
        return sorted(o["Key"] for o in out.get("Contents", []))

    def url(self, key):
        return f"s3://{BUCKET}/{key}"


def clean_aws_env(env):
    """`env` without AWS_* variables from the caller's environment."""
    return {k: v for k, v in env.items() if not k.startswith("AWS_")}


def wait_until(predicate, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False
