// What the browser tests share: Debian's chromium driven by playwright-core (never a
// browser download), a static server for the built UI with the console's SPA fallback,
// free ports, and where screenshots go.
import { spawn } from 'node:child_process';
import { createReadStream, existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const sourceDir = process.env.CAP_SOURCE_DIR ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const uiDir = process.env.CAP_CONSOLE_UI_DIR ?? path.join(sourceDir, 'web/console/dist');
// playwright-core is a development dependency of the UI: one npm ci installs both.
const require = createRequire(path.join(sourceDir, 'web/console/package.json'));
const { chromium } = require('playwright-core');

export const chromiumPath = process.env.CAP_CHROMIUM ?? '/usr/bin/chromium';
export const outputDir = process.env.CAP_TEST_OUTPUT ?? path.join(sourceDir, 'build/browser-test-output');

/** Starts chromium headless with a fresh profile; returns { browser, close }. */
export async function launchBrowser() {
  if (!existsSync(chromiumPath)) throw new Error(`${chromiumPath} is missing: scripts/install-deps installs chromium`);
  const profile = mkdtempSync(path.join(tmpdir(), 'cap-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    headless: true,
    viewport: { width: 1280, height: 800 },
    acceptDownloads: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-dev-shm-usage',
    ],
  });
  return {
    context,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.json': 'application/json', '.svg': 'image/svg+xml' };

/** Serves `dir` on a free loopback port, answering unknown paths with index.html. */
export async function serveStatic(dir) {
  const server = createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    let file = path.join(dir, path.normalize(decodeURIComponent(url.pathname)).replace(/^(\.\.[/\\])+/, ''));
    if (!file.startsWith(dir) || !existsSync(file) || !statSync(file).isFile()) {
      if (url.pathname.startsWith('/api/')) {
        res.writeHead(404, { 'Content-Type': 'application/json' });
        res.end('{"error": "no console here"}');
        return;
      }
      file = path.join(dir, 'index.html');
    }
    res.writeHead(200, { 'Content-Type': TYPES[path.extname(file)] ?? 'application/octet-stream' });
    createReadStream(file).pipe(res);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${server.address().port}`, close: () => new Promise((r) => server.close(r)) };
}

export function screenshotPath(name) {
  mkdirSync(outputDir, { recursive: true });
  return path.join(outputDir, name);
}

/** Runs a program to its end; resolves { code, stdout, stderr }. */
export function run(cmd, args, opts = {}) {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { ...opts, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/**
 * Retries `check` (which throws while the page is not there yet) until it passes or
 * `timeoutMs` ends; the page updates after events, so assertions on it must wait.
 */
export async function eventually(check, timeoutMs = 10000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (e) {
      if (Date.now() > end) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
