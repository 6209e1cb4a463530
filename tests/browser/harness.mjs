// What the dashboard's browser tests stand on: a private redis-server and jobs-runner on free
// loopback ports, Debian's Chromium driven by playwright-core, and a small API client.
//
// Every process is started here and stopped here, by its PID.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '..', '..');
export const artifacts = path.join(repoRoot, 'tests', 'artifacts');

/** A TCP port nothing listens on right now (the kernel's pick). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns a truthy value, or fails with `what` after `ms`. */
export async function waitFor(what, fn, ms = 15_000, every = 100) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
    await sleep(every);
  }
}

function redisPing(port) {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    let buf = '';
    sock.setTimeout(500);
    sock.on('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d) => {
      buf += d;
      if (buf.includes('\r\n')) {
        sock.destroy();
        resolve(buf.startsWith('+PONG'));
      }
    });
    sock.on('error', () => resolve(false));
    sock.on('timeout', () => {
      sock.destroy();
      resolve(false);
    });
  });
}

/** A child process whose output goes to a log file in the artifacts folder. A variable
 *  set to `null` in `env` is removed from the child's environment. */
function start(name, cmd, args, env) {
  fs.mkdirSync(artifacts, { recursive: true });
  const log = fs.openSync(path.join(artifacts, `${name}.log`), 'w');
  const merged = { ...process.env, ...env };
  for (const [k, v] of Object.entries(merged)) if (v === null) delete merged[k];
  const child = spawn(cmd, args, { env: merged, stdio: ['ignore', log, log] });
  fs.closeSync(log);
  child.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  child.on('error', () => {});
  return child;
}

/** Stops a child by its PID: SIGTERM, then SIGKILL after `graceMs`. */
export async function stop(child, graceMs = 10_000) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(child.pid, 'SIGTERM');
  } catch {
    return;
  }
  const t = setTimeout(() => {
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }, graceMs);
  await child.exited;
  clearTimeout(t);
}

export async function startRedis() {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jobs-dash-redis-'));
  const proc = start('redis', 'redis-server', [
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir,
  ]);
  await waitFor(`redis-server on ${port}`, () => redisPing(port), 10_000);
  return { port, url: `redis://127.0.0.1:${port}`, proc, dir };
}

/** Stops the redis-server of `startRedis` and removes its folder. */
export async function stopRedis(redis) {
  if (!redis) return;
  await stop(redis.proc);
  fs.rmSync(redis.dir, { recursive: true, force: true });
}

export function runnerBinary() {
  const bin = process.env.JOBS_RUNNER || path.join(repoRoot, 'target', 'debug', 'jobs-runner');
  if (!fs.existsSync(bin)) {
    throw new Error(`${bin} not found: build it with \`cargo build -p jobs-tasks --bin jobs-runner\` or set JOBS_RUNNER`);
  }
  return bin;
}

/** Starts `jobs-runner run` on a free port against `redis`; resolves once healthy. */
export async function startRunner(redis, { name = 'runner', namespace, token, extraArgs = [] } = {}) {
  const port = await freePort();
  const env = {
    REDIS_URL: redis.url,
    JOBS_NAMESPACE: namespace,
    JOBS_BIND: `127.0.0.1:${port}`,
    JOBS_SHUTDOWN_GRACE: '2',
    RUST_LOG: process.env.RUST_LOG || 'info',
    NO_COLOR: '1',
  };
  // No token: none inherited either (an empty one is refused at start-up).
  env.JOBS_API_TOKEN = token || null;
  const proc = start(name, runnerBinary(), ['run', '--workers', '1', '--concurrency', '4', ...extraArgs], env);
  const base = `http://127.0.0.1:${port}`;
  await waitFor(`${name} on ${port}`, async () => {
    if (proc.exitCode !== null) throw new Error(`${name} exited with ${proc.exitCode}; see tests/artifacts/${name}.log`);
    const r = await fetch(`${base}/api/v1/jobs/health`);
    return r.ok;
  }, 30_000, 200);
  return { port, base, proc, token };
}

/** Runs the runner binary once (an operator command) and returns its stdout. */
export function runOnce(args, env) {
  return new Promise((resolve, reject) => {
    const child = spawn(runnerBinary(), args, { env: { ...process.env, NO_COLOR: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`jobs-runner ${args.join(' ')} exited ${code}: ${err}`))));
  });
}

/** A tiny client of the runner's API. */
export function client(runner) {
  return async function call(method, p, body) {
    const headers = { Accept: 'application/json' };
    if (runner.token) headers.Authorization = `Bearer ${runner.token}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const r = await fetch(`${runner.base}/api/v1/jobs/${p}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await r.text();
    const data = text ? JSON.parse(text) : null;
    if (!r.ok) {
      const e = new Error(`${method} ${p}: ${r.status} ${text}`);
      e.status = r.status;
      e.body = data;
      throw e;
    }
    return data;
  };
}

/** Debian's Chromium, headless, with a fresh profile and no background traffic. */
export async function launchBrowser() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'jobs-dash-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
    viewport: { width: 1280, height: 900 },
    timezoneId: 'UTC',
    locale: 'en-US',
  });
  return { context, profile };
}

export async function closeBrowser(b) {
  if (!b) return;
  await b.context.close().catch(() => {});
  fs.rmSync(b.profile, { recursive: true, force: true });
}

export async function screenshot(page, name) {
  fs.mkdirSync(artifacts, { recursive: true });
  await page.screenshot({ path: path.join(artifacts, `${name}.png`), fullPage: true });
}
