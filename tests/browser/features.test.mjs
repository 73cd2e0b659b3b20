// Each feature of the web client's chat, in headless Chromium against the real binary:
// unread and mention badges, opening at the first unread message, images by button with
// inline display, emotes and the picker, pins, the mentions panel, user cards, account
// settings, and private answers to chat commands.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { Server, browser, loggedIn, examplePlugins } from './harness.mjs';

const plugins = examplePlugins(['dice']);

/** @type {Server} */
let server;
/** @type {import('playwright-core').Browser} */
let chromium;
let admin = '';
let general = '';
let random = '';
let bobId = '';

/** A 1×1 PNG. */
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64');

before(async () => {
  server = await Server.start(['--admin', 'alice', '--read-access', 'members', '--plugins', plugins]);
  admin = await server.user('alice');
  await server.user('bob');
  bobId = (await server.api('GET', '/api/users')).users.find((/** @type {any} */ u) => u.username === 'bob').id;
  general = (await server.api('POST', '/api/channels', { name: 'general' }, admin)).channelID;
  random = (await server.api('POST', '/api/channels', { name: 'random' }, admin)).channelID;
  chromium = await browser();
});

after(async () => {
  await chromium?.close();
  await server?.close();
  rmSync(plugins, { recursive: true, force: true });
});

/** @param {import('playwright-core').Page} page */
const composer = (page) => page.getByRole('textbox', { name: 'Message', exact: true });

test('unread counts, mention badges, and opening a channel at its first unread message', async () => {
  const { page, context } = await loggedIn(chromium, server, 'bob');
  await page.getByRole('heading', { name: '# general' }).waitFor();
  for (const text of ['first unread', 'second', `hey <@${bobId}>`]) {
    await server.api('POST', '/api/messages', { channelID: random, text }, admin);
  }
  const link = page.getByRole('link', { name: /# random/ });
  await link.getByLabel('3 unread').waitFor();
  await link.getByLabel('1 mentions').waitFor();
  await link.click();
  await page.locator('#messages li.first-unread', { hasText: 'first unread' }).waitFor();
  // Read now: the badges go.
  await link.getByLabel('3 unread').waitFor({ state: 'detached' });
  const { channels } = await server.api('GET', '/api/channels', undefined, await server.user('bob'));
  assert.equal(channels.find((/** @type {any} */ c) => c.id === random).unreadMessageCount, 0);
  // The mentions panel lists the mention.
  await page.getByRole('button', { name: 'Mentions' }).click();
  await page.locator('#panel li', { hasText: 'hey' }).waitFor();
  await context.close();
});

test('images by button with progress, shown inline; emotes and the picker', async () => {
  const { page, context, errors } = await loggedIn(chromium, server, 'alice');
  await page.getByLabel('Image file').setInputFiles({ name: 'dot.png', mimeType: 'image/png', buffer: PNG });
  await page.waitForFunction(() => /** @type {HTMLTextAreaElement} */ (document.getElementById('composer')).value.includes('/uploads/'));
  const text = await composer(page).inputValue();
  const url = /\((http[^)]+)\)/.exec(text)?.[1];
  assert.ok(url, text);
  await composer(page).press('Enter');
  const image = page.locator(`#messages img.inline-image[src="${url}"]`);
  await image.waitFor();
  assert.ok(await image.evaluate((img) => /** @type {HTMLImageElement} */ (img).naturalWidth === 1));

  const emote = await server.api('POST', '/api/emotes', { shortcode: 'dot', imageURL: url }, admin);
  assert.ok(!emote.error, JSON.stringify(emote));
  await page.reload();
  await page.getByRole('status').filter({ hasText: 'connected' }).waitFor();
  await page.getByRole('button', { name: 'Emotes' }).click();
  await page.getByRole('button', { name: ':dot:' }).click();
  assert.equal(await composer(page).inputValue(), ':dot:');
  await composer(page).press('Enter');
  await page.locator('#messages img.emote[alt=":dot:"]').waitFor();
  assert.deepEqual(errors, []);
  await context.close();
});

test('images by paste and by drag-and-drop', async () => {
  const { page, context } = await loggedIn(chromium, server, 'alice');
  for (const how of ['paste', 'drop']) {
    await composer(page).fill('');
    await page.evaluate(({ bytes, how }) => {
      const file = new File([new Uint8Array(bytes)], 'dot.png', { type: 'image/png' });
      const data = new DataTransfer();
      data.items.add(file);
      const target = /** @type {HTMLElement} */ (document.getElementById('composer'));
      const event = how === 'paste'
        ? new ClipboardEvent('paste', { clipboardData: data, bubbles: true, cancelable: true })
        : new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true });
      target.dispatchEvent(event);
    }, { bytes: [...PNG], how });
    await page.waitForFunction(() => /** @type {HTMLTextAreaElement} */ (document.getElementById('composer')).value.includes('/uploads/'));
  }
  await context.close();
});

test('pins, user cards, account settings, and private answers to commands', async () => {
  const a = await loggedIn(chromium, server, 'alice');
  const b = await loggedIn(chromium, server, 'bob');
  await composer(a.page).fill('pin me');
  await composer(a.page).press('Enter');
  const message = a.page.locator('#messages li.message', { hasText: 'pin me' });
  await message.hover();
  await message.getByRole('button', { name: 'Pin', exact: true }).click();
  await b.page.locator('#messages li.message', { hasText: 'pin me' }).getByText('pinned').waitFor();
  await b.page.getByRole('button', { name: 'Pins' }).click();
  await b.page.locator('#panel li', { hasText: 'pin me' }).waitFor();
  await message.hover();
  await message.getByRole('button', { name: 'Unpin' }).click();
  await b.page.locator('#messages li.message', { hasText: 'pin me' }).getByText('pinned').waitFor({ state: 'detached' });

  // Account settings: a flair, then seen on the user card.
  await b.page.getByRole('button', { name: 'Account: bob' }).click();
  await b.page.getByLabel('Flair').fill('weather nerd');
  await b.page.getByRole('button', { name: 'Save' }).click();
  await b.page.getByRole('status').filter({ hasText: 'Saved.' }).waitFor();
  await composer(b.page).fill('with flair');
  await composer(b.page).press('Enter');
  await a.page.locator('#messages li.message', { hasText: 'with flair' }).getByRole('button', { name: 'bob' }).click();
  await a.page.locator('#panel .flair', { hasText: 'weather nerd' }).waitFor();

  // A command's answer is private: shown to its sender only, marked as such.
  await composer(b.page).fill('\\chatbox');
  await composer(b.page).press('Enter');
  const note = b.page.locator('#messages li.private', { hasText: 'Usage' });
  await note.waitFor();
  await note.getByText('only you can see this').waitFor();
  await a.page.waitForTimeout(300);
  assert.equal(await a.page.locator('#messages li.private').count(), 0);
  assert.deepEqual([...a.errors, ...b.errors], []);
  await a.context.close();
  await b.context.close();
});

test('a chatbox bot\'s message shows the bot\'s name', async () => {
  const { page, context } = await loggedIn(chromium, server, 'bob');
  const { key } = await server.api('POST', '/api/licenses', { capabilities: ['read', 'say'] }, admin);
  assert.ok(key);
  // The bot speaks the chatbox protocol from a blank page (no CSP there).
  const bot = await context.newPage();
  const answer = await bot.evaluate(async ({ url }) => {
    const ws = new WebSocket(url);
    const packets = /** @type {any[]} */ ([]);
    ws.onmessage = (e) => packets.push(JSON.parse(e.data));
    await new Promise((ok) => { ws.onopen = ok; });
    ws.send(JSON.stringify({ type: 'say', text: 'beep from the bot', name: 'Herald', channel: 'general', id: 7 }));
    for (let i = 0; i < 100 && !packets.some((p) => p.id === 7 && p.type !== 'message_queued'); i++) {
      await new Promise((ok) => setTimeout(ok, 50));
    }
    ws.close();
    return packets.filter((p) => p.id === 7);
  }, { url: `${server.url.replace('http', 'ws')}/v2/${key}` });
  assert.ok(answer.some((p) => p.type === 'success' || p.type === 'message_sent'), JSON.stringify(answer));
  const message = page.locator('#messages li.message', { hasText: 'beep from the bot' });
  await message.getByRole('button', { name: 'Herald' }).waitFor();
  await message.getByText('bot of alice').waitFor();
  await context.close();
});

test('the people list shows who is online; opt-in desktop notifications for mentions', async () => {
  const context = await chromium.newContext();
  // A recording Notification, and a page that can be told it is hidden.
  await context.addInitScript(() => {
    const w = /** @type {any} */ (window);
    w.__notes = [];
    w.Notification = class {
      static permission = 'granted';
      static requestPermission() { return Promise.resolve('granted'); }
      /** @param {string} title @param {{body?: string}} options */
      constructor(title, options) { w.__notes.push({ title, body: options?.body }); }
    };
    Object.defineProperty(document, 'hidden', { get: () => Boolean(w.__hidden) });
  });
  const page = await context.newPage();
  await page.goto(server.url);
  await page.getByLabel('Username').fill('bob');
  await page.getByLabel('Password').fill('password1');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('status').filter({ hasText: 'connected' }).waitFor();
  await page.getByRole('button', { name: 'People' }).click();
  await page.locator('#panel li', { hasText: 'bob' }).getByLabel('online').waitFor();

  await page.getByRole('button', { name: 'Account: bob' }).click();
  await page.getByLabel('Desktop notifications for mentions').check();
  await page.evaluate(() => { /** @type {any} */ (window).__hidden = true; });
  await server.api('POST', '/api/messages', { channelID: general, text: `<@${bobId}> ping` }, admin);
  await page.waitForFunction(() => /** @type {any} */ (window).__notes.length > 0);
  const notes = await page.evaluate(() => /** @type {any} */ (window).__notes);
  assert.equal(notes[0].title, 'alice mentioned you');
  await context.close();
});

test('a plugin command from the message box: \\roll 2d6', async () => {
  const { page, context, errors } = await loggedIn(chromium, server, 'bob');
  await composer(page).fill('\\roll 2d6');
  await composer(page).press('Enter');
  const answer = page.locator('#messages li.message', { hasText: 'rolled 2d6' });
  await answer.waitFor();
  await answer.getByRole('button', { name: 'dice' }).waitFor();
  await answer.getByText('plugin', { exact: true }).waitFor();
  assert.equal(await composer(page).inputValue(), '');
  assert.deepEqual(errors, []);
  await context.close();
});

test('a new password, log out, and log in with it', async () => {
  await server.user('carol');
  const { page, context } = await loggedIn(chromium, server, 'carol');
  await page.getByRole('button', { name: 'Account: carol' }).click();
  await page.getByLabel('Current password').fill('password1');
  await page.getByLabel('New password').fill('another-secret');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByRole('status').filter({ hasText: 'Saved.' }).waitFor();
  const session = await page.evaluate(() => localStorage.getItem('decentd.session'));
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.getByText('You are logged out.').waitFor();
  assert.equal(await page.evaluate(() => localStorage.getItem('decentd.session')), null);
  const gone = await server.api('GET', `/api/sessions/${session}`);
  assert.equal(gone.error?.code, 'INVALID_SESSION_ID');
  await page.getByLabel('Username').fill('carol');
  await page.getByLabel('Password').fill('another-secret');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('status').filter({ hasText: 'connected' }).waitFor();
  await context.close();
});

test('keyboard alone: the message actions are reachable with Tab', async () => {
  const { page, context } = await loggedIn(chromium, server, 'alice');
  await composer(page).fill('keyboard');
  await composer(page).press('Enter');
  const message = page.locator('#messages li.message', { hasText: 'keyboard' });
  await message.waitFor();
  const edit = message.getByRole('button', { name: 'Edit' });
  await edit.focus();
  assert.equal(await edit.evaluate((el) => getComputedStyle(/** @type {HTMLElement} */ (el.parentElement)).opacity), '1');
  await page.keyboard.press('Enter');
  await page.getByLabel('Edit message').waitFor();
  await page.keyboard.press('Escape');
  await context.close();
});

test('a channel hidden by a new override leaves the list at once, and comes back when shown again', async () => {
  // The default preset (members): what a user sees comes with the login of the socket.
  const server = await Server.start(['--admin', 'alice']);
  const chromium = await browser();
  try {
    const admin = await server.user('alice');
    await server.user('bob');
    await server.api('POST', '/api/channels', { name: 'general' }, admin);
    const secret = (await server.api('POST', '/api/channels', { name: 'secret' }, admin)).channelID;
    const { page, errors } = await loggedIn(chromium, server, 'bob');
    const entry = page.locator('#channels a', { hasText: '# secret' });
    await entry.waitFor();
    assert.equal(await page.locator('#channels a').count(), 2, 'each channel once');
    // Hidden from users, not from the Admin role (so that alice can show it again).
    const adminRole = (await server.api('GET', '/api/roles', undefined, admin)).roles[0].id;
    const overrides = `/api/channels/${secret}/role-permissions`;
    await server.api('PATCH', overrides, { rolePermissions: { _user: { readMessages: false }, [adminRole]: { readMessages: true } } }, admin);
    await entry.waitFor({ state: 'detached', timeout: 5000 });
    await server.api('PATCH', overrides, { rolePermissions: { _user: {} } }, admin);
    await entry.waitFor({ timeout: 5000 });
    assert.equal(await page.locator('#channels a').count(), 2, 'each channel once');
    assert.deepEqual(errors, []);
  } finally {
    await chromium.close();
    await server.close();
  }
});
