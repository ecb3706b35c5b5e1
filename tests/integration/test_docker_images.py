"""The container images and the compose file (deploy/docker): no Docker engine runs here,
so the files are parsed and checked for what DESIGN.md §5 and §9 ask of them (Debian 12,
a slim non-root runtime stage, CAP_HOME as a volume, the ports, a health check on
/.cap/health, an exec-form ENTRYPOINT so SIGTERM reaches the process), the packages they
install are real Debian 12 packages, and the runtime stage installs every shared library
the built binaries load. The runtime stage's own commands are deploy/docker/
runtime-stage.sh, which the tests run into a temporary root (as root: it creates a user)
and then start what it installed, as that user, checked with the image's HEALTHCHECK."""

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import tempfile
import time
import unittest

import yaml

SOURCE = os.environ.get("CAP_SOURCE_DIR",
                        os.path.join(os.path.dirname(__file__), "..", ".."))
DOCKER = os.path.join(SOURCE, "deploy", "docker")
# Libraries debian:12-slim already holds (apt and dpkg depend on them).
BASE_IMAGE_PACKAGES = {"libc6", "libgcc-s1", "libstdc++6", "zlib1g", "libbz2-1.0"}
SCRIPT = os.path.join(DOCKER, "runtime-stage.sh")
UI_DIST = os.path.join(SOURCE, "web", "console", "dist")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_dockerfile(path):
    """[(INSTRUCTION, argument text)] with continuation lines joined, comments dropped."""
    out, current = [], ""
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not current and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if line.endswith("\\"):
                current += line[:-1] + " "
                continue
            current += line
            word, _, rest = current.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            current = ""
    return out


def stages(instructions):
    """{stage name: [(INSTRUCTION, args)]} in order; the FROM line starts each stage."""
    result, name = {}, None
    for ins, args in instructions:
        if ins == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?$", args, re.IGNORECASE)
            name = m.group(2) or m.group(1)
            result[name] = []
        result[name].append((ins, args))
    return result


def apt_packages(stage):
    pkgs = []
    for ins, args in stage:
        if ins != "RUN":
            continue
        for command in re.split(r"&&|;", args):
            words = shlex.split(command)
            if words[:2] == ["apt-get", "install"]:
                pkgs += [w for w in words[2:] if not w.startswith("-")]
    return pkgs


def needed_packages(binary):
    """The Debian packages holding the libraries `binary` links directly (DT_NEEDED)."""
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]",
                        subprocess.run(["readelf", "-d", binary], capture_output=True,
                                       text=True, check=True).stdout)
    paths = dict(re.findall(r"^\s*(\S+) => (\S+)", subprocess.run(
        ["ldd", binary], capture_output=True, text=True, check=True).stdout, re.M))
    pkgs = set()
    for lib in needed:
        path = paths[lib]
        candidates = [path, os.path.realpath(path)]
        candidates += [c.replace("/usr/lib/", "/lib/", 1) for c in list(candidates)]
        for c in candidates:
            r = subprocess.run(["dpkg", "-S", c], capture_output=True, text=True)
            if r.returncode == 0:
                pkgs.add(r.stdout.split(":")[0])
                break
        else:
            raise AssertionError(f"no Debian package holds {lib} ({path})")
    return pkgs


class Image:
    def __init__(self, name):
        self.path = os.path.join(DOCKER, name)
        self.instructions = parse_dockerfile(self.path)
        self.stages = stages(self.instructions)
        self.runtime = self.stages["runtime"]

    def last(self, ins, stage=None):
        found = [a for i, a in (stage or self.runtime) if i == ins]
        return found[-1] if found else None

    def env(self):
        values = {}
        for ins, args in self.runtime:
            if ins == "ENV":
                values.update(dict(re.findall(r"(\w+)=(\S+)", args)))
        return values


class DockerfileChecks:
    """Shared checks; subclasses set NAME, BINARY, BINARY_ENV, ROLE, HOME_VAR, PORT_VAR, PORTS,
    HEALTH_PATH, and run_env() and check_running(root, port) for the started binary."""

    def setUp(self):
        self.image = Image(self.NAME)

    def test_multi_stage_debian_12_with_a_slim_runtime_last(self):
        names = list(self.image.stages)
        self.assertGreaterEqual(len(names), 2)
        self.assertEqual(names[-1], "runtime", "the runtime stage is the image")
        froms = [a for i, a in self.image.instructions if i == "FROM"]
        for f in froms:
            self.assertRegex(f.split()[0], r"^(debian:12|.*bookworm)", f"{f}: not Debian 12")
        self.assertTrue(froms[-1].startswith("debian:12-slim "), froms[-1])
        for i, a in self.image.runtime:
            if i == "COPY":
                self.assertRegex(a, r"^--from=", f"the runtime copies only built files: {a}")

    def test_non_root_user(self):
        user = self.image.last("USER")
        self.assertEqual(user, "cap", "the runtime stage runs as the user the script makes")

    def test_the_runtime_stage_runs_the_script(self):
        runs = [" ".join(a.split()) for i, a in self.image.runtime if i == "RUN"]
        call = ("--mount=type=bind,from=build,source=/src,target=/mnt/src "
                f"sh /mnt/src/deploy/docker/runtime-stage.sh {self.ROLE} / /mnt/src/build/release")
        if self.ROLE == "console":
            call += " /mnt/src/web/console/dist"
        self.assertEqual([r for r in runs if "runtime-stage.sh" in r], [call])
        self.assertEqual([a for i, a in self.image.runtime if i == "COPY"], [],
                         "files come in through the script")
        with open(self.image.path) as f:
            self.assertEqual(f.readline().strip(), "# syntax=docker/dockerfile:1",
                             "RUN --mount needs the BuildKit syntax line")

    def test_runtime_stage_script_into_a_temporary_root(self):
        if os.geteuid() != 0:
            self.skipTest("the script creates a user and sets ownership: it needs root")
        binary = os.environ.get(self.BINARY_ENV)
        self.assertTrue(binary and os.access(binary, os.X_OK), f"${self.BINARY_ENV} is not set")
        root = tempfile.mkdtemp(prefix="cap-image-root-")
        self.addCleanup(subprocess.run, ["rm", "-rf", root])
        os.chmod(root, 0o755)  # the user cap must reach the files below it
        os.makedirs(os.path.join(root, "etc"))
        for name, line in (("passwd", "root:x:0:0:root:/root:/bin/bash"), ("group", "root:x:0:"),
                           ("shadow", "root:*:19000:0:99999:7:::"), ("gshadow", "root:*::")):
            with open(os.path.join(root, "etc", name), "w") as f:
                f.write(line + "\n")
        args = ["sh", SCRIPT, self.ROLE, root, os.path.dirname(binary)]
        if self.ROLE == "console":
            self.assertTrue(os.path.isfile(os.path.join(UI_DIST, "index.html")),
                            "the console UI is not built (web/console/dist)")
            args.append(UI_DIST)
        r = subprocess.run(args, capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)

        home = self.image.env()[self.HOME_VAR]
        with open(os.path.join(root, "etc", "passwd")) as f:
            self.assertIn(f"cap:x:10001:10001::{home}:/usr/sbin/nologin\n", f.read())
        with open(os.path.join(root, "etc", "group")) as f:
            self.assertIn("cap:x:10001:\n", f.read())
        st = os.stat(root + home)
        self.assertEqual((st.st_uid, st.st_gid, oct(st.st_mode & 0o777)), (10001, 10001, "0o750"))
        installed = os.path.join(root, "usr", "local", "bin")
        self.assertEqual(sorted(os.listdir(installed)), sorted([self.BINARY, "capctl"]))
        for b in (self.BINARY, "capctl"):
            path = os.path.join(installed, b)
            self.assertEqual(oct(os.stat(path).st_mode & 0o777), "0o755")
            v = subprocess.run([path, "--version"], capture_output=True, text=True)
            self.assertEqual(v.returncode, 0, v.stderr)

        # What it installed runs as the user cap with its state in the home, and the image's
        # HEALTHCHECK command tells a serving process from none.
        port = free_port()
        check = ["sh", "-c", self.image.last("HEALTHCHECK").split(" CMD ", 1)[1]]
        check_env = dict(os.environ, **{self.PORT_VAR: str(port)})
        self.assertNotEqual(subprocess.run(check, env=check_env, capture_output=True).returncode,
                            0, "the health check passes with nothing serving")
        env = {"PATH": "/usr/bin:/bin", self.HOME_VAR: root + home, self.PORT_VAR: str(port)}
        env.update(self.run_env())
        log = tempfile.TemporaryFile()
        self.addCleanup(log.close)
        proc = subprocess.Popen(["setpriv", "--reuid=10001", "--regid=10001", "--clear-groups",
                                 os.path.join(installed, self.BINARY)], env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        self.addCleanup(lambda: proc.poll() is None and (proc.kill(), proc.wait()))

        def output():
            log.seek(0)
            return log.read().decode("utf-8", "replace")

        deadline, ok = time.time() + 30, False
        while time.time() < deadline and proc.poll() is None and not ok:
            ok = subprocess.run(check, env=check_env, capture_output=True).returncode == 0
            time.sleep(0.1)
        self.assertTrue(ok, f"the health check never passed; exit {proc.poll()}\n{output()}")
        self.check_running(root, port)
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(30), 0, output())
        owners = {(os.stat(os.path.join(d, n)).st_uid)
                  for d, dirs, files in os.walk(root + home) for n in dirs + files}
        self.assertTrue(owners, "nothing was written to the home")
        self.assertEqual(owners, {10001})

    def test_home_is_a_volume_and_ports_are_exposed(self):
        env = self.image.env()
        home = env[self.HOME_VAR]
        self.assertEqual(json.loads(self.image.last("VOLUME")), [home])
        self.assertEqual(self.image.last("EXPOSE").split(), [str(p) for p in self.PORTS])
        self.assertEqual(env[self.PORT_VAR], str(self.PORTS[0]))

    def test_healthcheck_and_exec_form_entrypoint(self):
        health = self.image.last("HEALTHCHECK")
        self.assertIn("CMD curl -fsS", health)
        self.assertIn(f"http://127.0.0.1:${{{self.PORT_VAR}}}{self.HEALTH_PATH}", health)
        entry = json.loads(self.image.last("ENTRYPOINT"))  # exec form: a JSON array
        self.assertEqual(entry, [f"/usr/local/bin/{self.BINARY}"])
        self.assertEqual(self.image.last("STOPSIGNAL"), "SIGTERM")

    def test_packages_exist_and_cover_the_binarys_libraries(self):
        build = apt_packages(self.image.stages[list(self.image.stages)[0]])
        runtime = apt_packages(self.image.runtime)
        self.assertIn("ca-certificates", runtime)
        # Every package named is a Debian 12 package (this machine is Debian 12 with the
        # build dependencies from scripts/install-deps, which pull the runtime libraries).
        r = subprocess.run(["dpkg-query", "-W", "-f=${Package}\n"] + build + runtime,
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, f"unknown packages: {r.stderr}")
        binary = os.environ.get(self.BINARY_ENV)
        self.assertTrue(binary and os.access(binary, os.X_OK),
                        f"${self.BINARY_ENV} must name the built {self.BINARY}")
        missing = needed_packages(binary) - set(runtime) - BASE_IMAGE_PACKAGES
        self.assertEqual(missing, set(),
                         f"{self.NAME}: the runtime stage lacks packages {self.BINARY} loads")


class AgentImage(DockerfileChecks, unittest.TestCase):
    NAME, BINARY, BINARY_ENV, ROLE = "Dockerfile.agent", "cap-agent", "CAP_AGENT", "agent"
    HOME_VAR, PORT_VAR, PORTS, HEALTH_PATH = "CAP_HOME", "CAP_WEB_PORT", (8080, 20001), "/.cap/health"

    def test_agent_defaults_match_the_design(self):
        env = self.image.env()
        self.assertEqual(env["CAP_HOME"], "/var/lib/cap")
        self.assertEqual(env["CAP_MGMT_PORT"], "20001")

    def run_env(self):
        return {"CAP_WEB_ADDRESS": "127.0.0.1", "CAP_MGMT_ADDRESS": "127.0.0.1",
                "CAP_MGMT_PORT": str(free_port()), "CAP_LOG_FORMAT": "json"}

    def check_running(self, root, port):
        pass


class ConsoleImage(DockerfileChecks, unittest.TestCase):
    NAME, BINARY, BINARY_ENV, ROLE = "Dockerfile.console", "cap-console", "CAP_CONSOLE", "console"
    HOME_VAR, PORT_VAR, PORTS, HEALTH_PATH = ("CAP_CONSOLE_HOME", "CAP_CONSOLE_PORT", (8000,),
                                              "/api/v1/health")

    def run_env(self):
        return {"CAP_CONSOLE_ADDRESS": "127.0.0.1", "CAP_ADMIN_PASSWORD": "image-test-password"}

    def check_running(self, root, port):
        # The UI the script installed is where the console looks: it serves it at /.
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            served = r.read()
        with open(os.path.join(root, "usr/local/share/cap/console/index.html"), "rb") as f:
            self.assertEqual(served, f.read())
        with open(os.path.join(UI_DIST, "index.html"), "rb") as f:
            self.assertEqual(served, f.read())


class Compose(unittest.TestCase):
    def setUp(self):
        with open(os.path.join(DOCKER, "docker-compose.yml"), encoding="utf-8") as f:
            self.compose = yaml.safe_load(f)
        self.services = self.compose["services"]

    def test_services(self):
        for name in ("console", "agent-1", "agent-2", "postgres", "s3"):
            self.assertIn(name, self.services)

    def test_agents(self):
        names = set()
        for name in ("agent-1", "agent-2"):
            s = self.services[name]
            self.assertEqual(s["build"]["dockerfile"], "deploy/docker/Dockerfile.agent")
            self.assertTrue(os.path.isfile(os.path.join(DOCKER, s["build"]["context"],
                                                        s["build"]["dockerfile"])))
            targets = {p.rsplit(":", 1)[1] for p in s["ports"]}
            self.assertEqual(targets, {"8080", "20001"})
            env = s["environment"]
            for var in ("CAP_MGMT_KEY", "CAP_DB_URL", "AWS_ENDPOINT_URL_S3", "S3_GOLD_MASTER"):
                self.assertIn(var, env, f"{name}: {var}")
            names.add(env["CAP_AGENT_NAME"])
            self.assertEqual([v.split(":")[1] for v in s["volumes"]], ["/var/lib/cap"])
        self.assertEqual(len(names), 2, "each agent has its own name")

    def test_host_ports_are_distinct(self):
        host = [p.split(":")[0] for s in self.services.values() for p in s.get("ports", [])]
        self.assertEqual(len(host), len(set(host)), host)

    def test_console_and_the_files_it_mounts(self):
        c = self.services["console"]
        self.assertEqual(c["build"]["dockerfile"], "deploy/docker/Dockerfile.console")
        self.assertEqual([p.rsplit(":", 1)[1] for p in c["ports"]], ["8000"])
        self.assertTrue(c["environment"]["CAP_CONSOLE_DB"].startswith("postgresql://"))
        for s in self.services.values():
            for v in s.get("volumes", []):
                src = v.split(":")[0]
                if src.startswith("."):
                    self.assertTrue(os.path.exists(os.path.join(DOCKER, src)), v)
                else:
                    self.assertIn(src, self.compose["volumes"], v)


if __name__ == "__main__":
    unittest.main()
