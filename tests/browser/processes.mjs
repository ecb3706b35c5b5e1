// Real cap-agent and cap-console processes for the browser tests, each on free loopback
// ports with its own temporary home (the ideas of tests/integration/*_harness.py).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sourceDir, uiDir } from './harness.mjs';

function binary(envName, name) {
  return process.env[envName] ?? path.join(sourceDir, 'build/release', name);
}

function cleanEnv() {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CAP_') && k !== 'S3_GOLD_MASTER'));
}

/** Starts a program and resolves once a line of its output matches `ready`. */
function startProcess(bin, env, ready, what) {
  return new Promise((resolve, reject) => {
    const proc = spawn(bin, [], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const lines = [];
    let done = false;
    const timer = setTimeout(() => {
      if (done) return;
      done = true;
      proc.kill('SIGKILL');
      reject(new Error(`${what} did not start:\n${lines.join('\n')}`));
    }, 30000);
    const onData = (d) => {
      for (const line of String(d).split('\n')) {
        if (!line) continue;
        lines.push(line);
        const m = ready.exec(line);
        if (m && !done) {
          done = true;
          clearTimeout(timer);
          resolve({ proc, match: m, lines });
        }
      }
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    proc.on('exit', (code) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      reject(new Error(`${what} exited with ${code}:\n${lines.join('\n')}`));
    });
  });
}

function stopper(proc, home) {
  return async () => {
    if (proc.exitCode === null) {
      const exited = new Promise((r) => proc.on('exit', r));
      proc.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10000))]);
      if (proc.exitCode === null) proc.kill('SIGKILL');
    }
    rmSync(home, { recursive: true, force: true });
  };
}

/** A cap-agent: { webUrl, webPort, mgmtPort, key, lines, stop }. */
export async function startAgent({ key = 'browser-test-key-0123456789', name = 'browser-agent' } = {}) {
  const home = mkdtempSync(path.join(tmpdir(), 'cap-agent-'));
  const env = {
    ...cleanEnv(),
    CAP_HOME: home,
    CAP_WEB_ADDRESS: '127.0.0.1',
    CAP_MGMT_ADDRESS: '127.0.0.1',
    CAP_WEB_PORT: '0',
    CAP_MGMT_PORT: '0',
    CAP_WORKERS: '1',
    CAP_AGENT_NAME: name,
    CAP_MGMT_KEY: key,
  };
  const { proc, match, lines } = await startProcess(binary('CAP_AGENT', 'cap-agent'), env, /serving: web on [^:]+:(\d+), management on [^:]+:(\d+)/, 'cap-agent');
  const webPort = Number(match[1]);
  return { webUrl: `http://127.0.0.1:${webPort}`, webPort, mgmtPort: Number(match[2]), key, lines, stop: stopper(proc, home) };
}

/** A cap-console serving the built UI: { url, adminPassword, lines, stop }. */
export async function startConsole({ adminPassword = 'browser-test-admin-password' } = {}) {
  const home = mkdtempSync(path.join(tmpdir(), 'cap-console-'));
  const env = {
    ...cleanEnv(),
    CAP_CONSOLE_HOME: home,
    CAP_CONSOLE_PORT: '0',
    CAP_CONSOLE_ADDRESS: '127.0.0.1',
    CAP_CONSOLE_POLL_MS: '300',
    CAP_CONSOLE_UI_DIR: uiDir,
    CAP_ADMIN_PASSWORD: adminPassword,
  };
  const { proc, match, lines } = await startProcess(binary('CAP_CONSOLE', 'cap-console'), env, /listening on (https?:\/\/[^ ]+:\d+)/, 'cap-console');
  const port = /:(\d+)$/.exec(match[1])[1];
  return { url: `http://127.0.0.1:${port}`, adminPassword, lines, stop: stopper(proc, home) };
}
