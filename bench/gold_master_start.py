#!/usr/bin/env python3
"""Cold start from a gold master: how long a new cap-agent with an empty CAP_HOME takes from
its process start to the first 200 on /.cap/ready, when S3_GOLD_MASTER names a ~10 MB
snapshot in a local S3 server (moto_server, signature checking on).

    python3 bench/gold_master_start.py [--runs 7] [--mb 10]

Prints one line per run and a summary (min, median, max), plus the agent's own split of
download and restore time. Needs build/release/cap-agent and capctl (or CAP_AGENT, CAPCTL)
and moto_server. Timings are reported, never asserted.
"""

import argparse
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

from agent_harness import Agent, agent_binary, capctl_binary, configuration, ruleset  # noqa: E402
from s3_harness import S3Server, clean_aws_env  # noqa: E402

KEY = "bench-key-0123456789abcdef"


def ready_within(port, deadline):
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/.cap/ready", timeout=1) as r:
                if r.status == 200:
                    return True
        except Exception:
            pass
        time.sleep(0.001)
    return False


def one_start(s3, url):
    home = tempfile.mkdtemp(prefix="cap-bench-home-")
    env = clean_aws_env({k: v for k, v in os.environ.items() if not k.startswith("CAP_")})
    env.update(s3.env(S3_GOLD_MASTER=url))
    env.update({"CAP_HOME": home, "CAP_WEB_ADDRESS": "127.0.0.1", "CAP_MGMT_ADDRESS": "127.0.0.1",
                "CAP_WEB_PORT": "0", "CAP_MGMT_PORT": "0", "CAP_WORKERS": "1",
                "CAP_LOG_FORMAT": "text", "CAP_MGMT_KEY": KEY})
    started = time.monotonic()
    proc = subprocess.Popen([agent_binary()], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    port, split, lines = None, "", []
    for raw in proc.stdout:
        line = raw.decode("utf-8", "replace")
        lines.append(line)
        m = re.search(r"download (\d+) ms, restore (\d+) ms", line)
        if m:
            split = f"download {m.group(1)} ms, restore {m.group(2)} ms"
        m = re.search(r"serving: web on [^:]+:(\d+)", line)
        if m:
            port = int(m.group(1))
            break
    ok = port is not None and ready_within(port, time.monotonic() + 10)
    elapsed = time.monotonic() - started
    proc.terminate()
    proc.wait(30)
    proc.stdout.close()
    subprocess.run(["rm", "-rf", home])
    if not ok:
        raise SystemExit("the agent did not become ready:\n" + "".join(lines))
    return elapsed, split


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--mb", type=int, default=10)
    args = ap.parse_args()

    with S3Server() as s3:
        # A source agent whose snapshot is ~args.mb MB: an incompressible extension file.
        source = Agent(key=KEY).start()
        try:
            source.deploy_ok(configuration("bench", [ruleset("main", "r", {
                "r": {"rule": "HttpRespond", "with": {"body": "ok"}}})]))
            ext = os.path.join(source.home, "extensions")
            os.makedirs(ext, exist_ok=True)
            with open(os.path.join(ext, "payload.zip"), "wb") as f:
                f.write(secrets.token_bytes(args.mb * 1024 * 1024))
            key_file = os.path.join(source.home, "bench.key")
            with open(key_file, "w") as f:
                f.write(KEY)
            env = clean_aws_env(dict(os.environ))
            env.update(s3.env())
            r = subprocess.run([capctl_binary(), "snapshot", "capture", "--agent",
                                f"127.0.0.1:{source.mgmt_port}", "--key-file", key_file,
                                "--to", s3.url("bench/snap.zip")],
                               capture_output=True, text=True, env=env)
            if r.returncode != 0:
                raise SystemExit("capture failed: " + r.stderr)
        finally:
            source.cleanup()
        size = len(s3.get("bench/snap.zip"))
        print(f"snapshot: {size / 1e6:.1f} MB at {s3.url('bench/snap.zip')} ({s3.endpoint})")
        times = []
        for i in range(args.runs):
            t, split = one_start(s3, s3.url("bench/snap.zip"))
            times.append(t)
            print(f"run {i + 1}: {t * 1000:.0f} ms to /.cap/ready ({split})")
        print(f"cold start to /.cap/ready, {size / 1e6:.1f} MB gold master, {args.runs} runs: "
              f"min {min(times) * 1000:.0f} ms, median {statistics.median(times) * 1000:.0f} ms, "
              f"max {max(times) * 1000:.0f} ms (target < 500 ms)")


if __name__ == "__main__":
    main()
