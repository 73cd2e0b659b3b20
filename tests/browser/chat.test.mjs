// The web client in headless Chromium against the real binary: two people chatting live,
// history, editing, refusals, an XSS corpus, reconnecting after a restart, accessibility,
// and the client's size and first paint.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Server, browser, loggedIn, axe, ROOT } from './harness.mjs';

/** @type {Server} */
let server;
/** @type {import('playwright-core').Browser} */
let chromium;
let admin = '';
let channel = '';

before(async () => {
  server = await Server.start(['--admin', 'alice', '--read-access', 'public']);
  admin = await server.user('alice');
  await server.user('bob');
  channel = (await server.api('POST', '/api/channels', { name: 'general' }, admin)).channelID;
  await server.api('POST', '/api/channels', { name: 'random' }, admin);
  chromium = await browser();
});

after(async () => {
  await chromium?.close();
  await server?.close();
});

/** The texts of the messages shown. @param {import('playwright-core').Page} page */
const shown = (page) => page.locator('#messages li.message .text').allInnerTexts();

test('two people chat live, edit with the Up arrow, delete, and see refusals', async () => {
  const a = await loggedIn(chromium, server, 'alice');
  const b = await loggedIn(chromium, server, 'bob');
  await a.page.getByRole('textbox', { name: 'Message', exact: true }).fill('hello bob');
  await a.page.getByRole('textbox', { name: 'Message', exact: true }).press('Enter');
  await b.page.locator('#messages li.message', { hasText: 'hello bob' }).waitFor();

  // Up arrow edits the last own message.
  await a.page.getByRole('textbox', { name: 'Message', exact: true }).press('ArrowUp');
  const edit = a.page.getByLabel('Edit message');
  await edit.fill('hello bob, edited');
  await edit.press('Enter');
  await b.page.locator('#messages li.message', { hasText: 'hello bob, edited' }).waitFor();
  await b.page.locator('#messages .edited').first().waitFor();

  // A mention of bob is highlighted for bob.
  const bobId = (await server.api('GET', '/api/users')).users.find((/** @type {any} */ u) => u.username === 'bob').id;
  await a.page.getByRole('textbox', { name: 'Message', exact: true }).fill('@bo');
  await a.page.getByRole('option').getByRole('button', { name: '@bob' }).click();
  assert.equal(await a.page.getByRole('textbox', { name: 'Message', exact: true }).inputValue(), `<@${bobId}> `);
  await a.page.getByRole('textbox', { name: 'Message', exact: true }).press('End');
  await a.page.getByRole('textbox', { name: 'Message', exact: true }).type('look');
  await a.page.getByRole('textbox', { name: 'Message', exact: true }).press('Enter');
  await b.page.locator('#messages li.mentions-me .mention.me', { hasText: '@bob' }).waitFor();

  // Refused: the server's error is shown.
  await b.page.getByRole('textbox', { name: 'Message', exact: true }).fill('x'.repeat(10001));
  await b.page.getByRole('textbox', { name: 'Message', exact: true }).press('Enter');
  await b.page.getByRole('alert').filter({ hasText: 'INVALID_PARAMETER_TYPE' }).waitFor();

  // Delete.
  a.page.once('dialog', (d) => d.accept());
  const mine = a.page.locator('#messages li.message', { hasText: 'hello bob, edited' });
  await mine.hover();
  await mine.getByRole('button', { name: 'Delete' }).click();
  await b.page.locator('#messages li.message', { hasText: 'hello bob, edited' }).waitFor({ state: 'detached' });

  // The session survives a reload.
  await b.page.reload();
  await b.page.getByRole('status').filter({ hasText: 'connected' }).waitFor();
  assert.ok((await shown(b.page)).some((t) => t.includes('look')));
  assert.deepEqual([...a.errors, ...b.errors], []);
  await a.context.close();
  await b.context.close();
});

test('an XSS corpus is shown as inert text', async () => {
  const corpus = [
    '<script>window.__xss = 1</script>',
    '<img src=x onerror="window.__xss = 2">',
    '[click](javascript:window.__xss=3)',
    '[data](data:text/html,<script>parent.__xss=4</script>)',
    '![x](javascript:window.__xss=5)',
    '**[nested *](javascript:window.__xss=6)**',
    '<a href="javascript:window.__xss=7">a</a>',
    '`<b>code</b>` ```\n<svg onload=window.__xss=8>\n```',
    '"><svg/onload=window.__xss=9>',
    ':"><img src=x onerror=window.__xss=10>:',
    'x'.repeat(5000),
  ];
  for (const text of corpus) await server.api('POST', '/api/messages', { channelID: channel, text }, admin);
  const { page, context, errors } = await loggedIn(chromium, server, 'bob');
  await page.locator('#messages li.message', { hasText: 'svg/onload' }).waitFor();
  await page.waitForTimeout(300);
  assert.equal(await page.evaluate(() => /** @type {any} */ (window).__xss), undefined);
  // Every link and image points at http(s), and no element carries an event attribute.
  const unsafe = await page.evaluate(() => {
    const bad = [];
    for (const el of document.querySelectorAll('#messages *')) {
      for (const attr of el.attributes) {
        if (attr.name.startsWith('on')) bad.push(`${el.tagName} ${attr.name}`);
        if ((attr.name === 'href' || attr.name === 'src') && !/^https?:/.test(attr.value)) bad.push(`${el.tagName} ${attr.name}=${attr.value}`);
      }
      if (['SCRIPT', 'SVG', 'IFRAME', 'OBJECT'].includes(el.tagName.toUpperCase())) bad.push(el.tagName);
    }
    return bad;
  });
  assert.deepEqual(unsafe, []);
  const texts = await shown(page);
  assert.ok(texts.includes('<script>window.__xss = 1</script>'), 'shown literally');
  // The long unbroken string wraps inside the page.
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth > document.documentElement.clientWidth);
  assert.equal(overflow, false);
  assert.deepEqual(errors, []);
  await context.close();
});

test('after a server restart the client reconnects and backfills without gaps or duplicates', async () => {
  const { page, context } = await loggedIn(chromium, server, 'bob');
  await server.api('POST', '/api/messages', { channelID: channel, text: 'before restart' }, admin);
  await page.locator('#messages li.message', { hasText: 'before restart' }).waitFor();
  await server.restart();
  const session = (await server.api('POST', '/api/sessions', { username: 'alice', password: 'password1' })).sessionID;
  for (let i = 1; i <= 3; i++) {
    await server.api('POST', '/api/messages', { channelID: channel, text: `missed ${i}` }, session);
  }
  await page.getByRole('status').filter({ hasText: 'connected' }).waitFor({ timeout: 20000 });
  await page.locator('#messages li.message', { hasText: 'missed 3' }).waitFor();
  const texts = (await shown(page)).filter((t) => t.startsWith('missed') || t === 'before restart');
  assert.deepEqual(texts.slice(-4), ['before restart', 'missed 1', 'missed 2', 'missed 3']);
  await context.close();
});

test('accessibility: axe reports no serious or critical violation, in both themes', async () => {
  await server.api('POST', '/api/messages', { channelID: channel, text: 'something to **look at**' }, admin);
  for (const colorScheme of /** @type {const} */ (['light', 'dark'])) {
    const context = await chromium.newContext({ colorScheme });
    const login = await context.newPage();
    await login.goto(server.url);
    await login.getByLabel('Username').waitFor();
    assert.deepEqual(await axe(login), [], `login, ${colorScheme}`);
    await context.close();
    const { page, context: chat } = await loggedIn(chromium, server, 'bob', { colorScheme });
    await page.locator('#messages li.message').first().waitFor();
    assert.deepEqual(await axe(page), [], `chat, ${colorScheme}`);
    for (const panel of ['People', 'Pins', 'Mentions', 'Account: bob']) {
      await page.getByRole('button', { name: panel, exact: true }).click();
      await page.locator('#panel h2').waitFor();
      assert.deepEqual(await axe(page), [], `${panel} panel, ${colorScheme}`);
      await page.getByRole('button', { name: 'Close panel' }).click();
    }
    await chat.close();
  }
});

test('size, first paint and screenshots', async () => {
  const b = await loggedIn(chromium, server, 'bob');
  const figures = await b.page.evaluate(() => {
    const resources = /** @type {PerformanceResourceTiming[]} */ (performance.getEntriesByType('resource'))
      .filter((r) => new URL(r.name).pathname.startsWith('/app/'));
    const nav = /** @type {PerformanceNavigationTiming} */ (performance.getEntriesByType('navigation')[0]);
    const paint = performance.getEntriesByName('first-contentful-paint')[0];
    return {
      bytes: resources.reduce((n, r) => n + r.encodedBodySize, 0) + (nav?.encodedBodySize ?? 0),
      firstPaintMs: paint ? paint.startTime : null,
    };
  });
  console.log(`web client: ${(figures.bytes / 1024).toFixed(1)} KiB gzipped, first contentful paint ${figures.firstPaintMs?.toFixed(0)} ms`);
  assert.ok(figures.bytes < 150 * 1024, `${figures.bytes} bytes`);

  await b.context.close();

  // Screenshots of a fresh server with an ordinary conversation.
  const shots = await Server.start(['--admin', 'ann', '--read-access', 'members']);
  try {
    const ann = await shots.user('ann');
    const ben = await shots.user('ben');
    await shots.api('PATCH', '/api/settings', { name: 'Lakeside Makers' }, ann);
    const lobby = (await shots.api('POST', '/api/channels', { name: 'lobby' }, ann)).channelID;
    for (const name of ['projects', 'help', 'off-topic']) await shots.api('POST', '/api/channels', { name }, ann);
    const benId = (await shots.api('GET', '/api/users')).users.find((/** @type {any} */ u) => u.username === 'ben').id;
    const lines = [
      [ann, 'Welcome to **Lakeside Makers**! Introduce yourself and tell us what you are building.'],
      [ben, 'Hi all, I am Ben. Working on a *solar-powered* weather station this month.'],
      [ann, `<@${benId}> nice! Post the wiring when you have it, \`esp32\` or something else?`],
      [ben, 'ESP32 with a BME280. The sketch so far:\n```\nvoid loop() {\n  read_sensors();\n  deep_sleep(600);\n}\n```'],
      [ann, 'Looks good. Notes from last meetup are at https://example.org/notes ~~tomorrow~~ tonight.'],
    ];
    for (const [session, text] of lines) await shots.api('POST', '/api/messages', { channelID: lobby, text }, session);
    const docs = join(ROOT, 'docs');
    mkdirSync(docs, { recursive: true });
    for (const [file, options] of /** @type {const} */ ([
      ['chat-light.png', { viewport: { width: 1100, height: 640 } }],
      ['chat-dark.png', { colorScheme: 'dark', viewport: { width: 1100, height: 640 } }],
      ['chat-phone.png', { viewport: { width: 360, height: 740 } }],
    ])) {
      const view = await loggedIn(chromium, shots, 'ben', options);
      await view.page.locator('#messages li.message', { hasText: 'meetup' }).waitFor();
      const overflow = await view.page.evaluate(() => document.documentElement.scrollWidth > document.documentElement.clientWidth);
      assert.equal(overflow, false, `no sideways scrolling in ${file}`);
      await view.page.screenshot({ path: join(docs, file) });
      await view.context.close();
    }
  } finally {
    await shots.close();
  }
});
