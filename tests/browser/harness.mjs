// The one place browser tests start things: the real decentd binary on a free port with its
// own data directory, and headless Chromium (Debian's) driven by playwright-core.
import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';

export const ROOT = resolve(import.meta.dirname, '../..');
/** The self-signed certificate (localhost, 127.0.0.1) and key HTTPS tests serve with. */
export const TLS_ARGS = ['--tls-cert', join(ROOT, 'tests/fixtures/tls/localhost.crt'),
  '--tls-key', join(ROOT, 'tests/fixtures/tls/localhost.key')];
/** The debug binary `cargo test` built (in CARGO_TARGET_DIR when set, as in CI). */
const BINARY = process.env.DECENTD_BIN
  ?? join(resolve(ROOT, process.env.CARGO_TARGET_DIR ?? 'target'), 'debug/decentd');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

/** A free loopback port (so that a restarted server can take the same one). */
export function freePort() {
  return new Promise((ok, fail) => {
    const probe = createServer();
    probe.on('error', fail);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {import('node:net').AddressInfo} */ (probe.address());
      probe.close(() => ok(port));
    });
  });
}

export class Server {
  /** @param {string[]} args @param {number} [port] a port chosen beforehand (`freePort`) */
  static async start(args = [], port) {
    const server = new Server(port ?? await freePort(), mkdtempSync(join(tmpdir(), 'decentd-browser-')), args);
    await server.launch();
    return server;
  }

  /** @param {number} port @param {string} dir @param {string[]} args */
  constructor(port, dir, args) {
    this.port = port;
    this.dir = dir;
    this.args = args;
    // With --tls-cert, HTTPS: Node trusts tests/fixtures/tls/localhost.crt (run.sh sets
    // NODE_EXTRA_CA_CERTS); browser contexts need `ignoreHTTPSErrors`.
    this.url = `${args.includes('--tls-cert') ? 'https' : 'http'}://127.0.0.1:${port}`;
    /** @type {string[]} */
    this.logs = [];
  }

  async launch() {
    // Tests act fast from one address: no rate limits unless a test sets one.
    const unlimited = ['--rate-limit', '--session-rate-limit', '--login-rate-limit', '--upload-rate-limit']
      .filter((flag) => !this.args.includes(flag)).flatMap((flag) => [flag, '0']);
    this.child = spawn(BINARY, ['serve', '--listen', `127.0.0.1:${this.port}`, '--data', join(this.dir, 'data'),
      '--scrypt-log-n', '4', '--log-format', 'json', ...unlimited, ...this.args], { stdio: ['ignore', 'ignore', 'pipe'] });
    await new Promise((ok, fail) => {
      let buffered = '';
      const timer = setTimeout(() => fail(new Error(`decentd did not start:\n${this.logs.join('\n')}`)), 30000);
      this.child?.stderr?.on('data', (chunk) => {
        buffered += chunk;
        const lines = buffered.split('\n');
        buffered = lines.pop() ?? '';
        for (const line of lines) {
          this.logs.push(line);
          if (line.includes('"listening"')) { clearTimeout(timer); ok(undefined); }
        }
      });
      this.child?.on('exit', (code) => fail(new Error(`decentd exited (${code}):\n${this.logs.join('\n')}`)));
    });
  }

  /** Stops the server (SIGTERM) and waits for it. */
  async stop() {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((ok) => child.once('exit', ok));
    child.kill('SIGTERM');
    await exited;
  }

  async restart() {
    await this.stop();
    await this.launch();
  }

  async close() {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /**
   * Calls the API.
   * @param {string} method @param {string} path @param {unknown} [body] @param {string} [session]
   */
  async api(method, path, body, session) {
    /** @type {Record<string, string>} */
    const headers = { 'Content-Type': 'application/json' };
    if (session) headers['X-Session-ID'] = session;
    const res = await fetch(this.url + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    return res.json();
  }

  /** Registers and logs in a user; their session ID. @param {string} name */
  async user(name, password = 'password1') {
    await this.api('POST', '/api/users', { username: name, password });
    const { sessionID } = await this.api('POST', '/api/sessions', { username: name, password });
    return /** @type {string} */ (sessionID);
  }
}

/**
 * The one-time setup link a server without an administrator logs (waits up to 2 s for it).
 * @param {Server} server
 * @returns {Promise<string | undefined>}
 */
export async function setupLink(server) {
  for (let i = 0; i < 40; i++) {
    const link = server.logs.map((l) => /"link":"([^"]+#setup=[0-9a-f]{32})"/.exec(l)?.[1]).find(Boolean);
    if (link) return link;
    await new Promise((ok) => setTimeout(ok, 50));
  }
  return undefined;
}

export async function browser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
}

/**
 * A page logged in through the login form.
 * @param {import('playwright-core').Browser} b @param {Server} server @param {string} name
 * @param {import('playwright-core').BrowserContextOptions} [options]
 */
export async function loggedIn(b, server, name, options = {}) {
  const context = await b.newContext(options);
  const page = await context.newPage();
  /** @type {string[]} */
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(server.url);
  await page.getByLabel('Username').fill(name);
  await page.getByLabel('Password').fill('password1');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('status').filter({ hasText: 'connected' }).waitFor();
  return { context, page, errors };
}

/**
 * Serious and critical axe-core violations on the page as it is, one line each.
 * @param {import('playwright-core').Page} page
 * @returns {Promise<string[]>}
 */
export async function axe(page) {
  // The page's CSP forbids added scripts; evaluating the source is not an added script.
  if (!(await page.evaluate(() => 'axe' in window))) {
    await page.evaluate(readFileSync(join(ROOT, 'tests/browser/node_modules/axe-core/axe.min.js'), 'utf8'));
  }
  return page.evaluate(async () => {
    const result = await /** @type {any} */ (window).axe.run(document, { resultTypes: ['violations'] });
    return result.violations
      .filter((/** @type {any} */ v) => v.impact === 'serious' || v.impact === 'critical')
      .map((/** @type {any} */ v) => `${v.id}: ${v.nodes.map((/** @type {any} */ n) => n.target.join(' ')).join(', ')}`);
  });
}

/**
 * A temporary plugins directory holding the named example plugins, as `plugins/build.sh`
 * (the test command's first step) built them into `plugins/dist/`. Remove it when done.
 * @param {string[]} names
 */
export function examplePlugins(names) {
  const dir = mkdtempSync(join(tmpdir(), 'decentd-plugins-'));
  for (const name of names) {
    cpSync(join(ROOT, 'plugins/dist', name), join(dir, name), { recursive: true });
    // The examples' behaviour is under test, not their deadlines: Chromium, Node and the
    // server share two cores here, and a 5 ms hook or 100 ms command deadline is missed.
    const file = join(dir, name, 'plugin.toml');
    const lines = readFileSync(file, 'utf8').split('\n').filter((l) => !/^(hook|event)-ms\s*=/.test(l));
    const limits = ['hook-ms = 250', 'event-ms = 2000'];
    const at = lines.indexOf('[limits]');
    if (at >= 0) lines.splice(at + 1, 0, ...limits);
    else lines.push('', '[limits]', ...limits, '');
    writeFileSync(file, lines.join('\n'));
  }
  return dir;
}
