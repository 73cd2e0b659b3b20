// Running the server from the web client, in headless Chromium against the real binary: each
// section once as a user who holds the needed permission (it works, and other browsers see
// the change live) and once as one who does not (the control is absent, and the API refuses
// the request if it is sent anyway). Screenshots of the admin views go to docs/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Server, browser, loggedIn, axe, examplePlugins, ROOT } from './harness.mjs';

const plugins = examplePlugins(['dice']);
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64');

/** @type {Server} */
let server;
/** @type {import('playwright-core').Browser} */
let chromium;
let admin = '';
let bob = '';
let bobId = '';
let general = '';

before(async () => {
  server = await Server.start(['--admin', 'alice', '--read-access', 'members', '--plugins', plugins]);
  admin = await server.user('alice');
  bob = await server.user('bob');
  bobId = (await server.api('GET', '/api/users')).users.find((/** @type {any} */ u) => u.username === 'bob').id;
  general = (await server.api('POST', '/api/channels', { name: 'general' }, admin)).channelID;
  chromium = await browser();
});

after(async () => {
  await chromium?.close();
  await server?.close();
  rmSync(plugins, { recursive: true, force: true });
});

/**
 * Opens the Server view and a section.
 * @param {import('playwright-core').Page} page @param {string} [tab]
 */
async function open(page, tab) {
  if ((await page.getByRole('button', { name: 'Server' }).getAttribute('aria-pressed')) !== 'true') {
    await page.getByRole('button', { name: 'Server' }).click();
  }
  await page.getByRole('tablist', { name: 'Server sections' }).waitFor();
  if (tab) await page.getByRole('tab', { name: tab }).click();
}

/** The tabs a page offers. @param {import('playwright-core').Page} page */
async function tabs(page) {
  await open(page);
  return page.getByRole('tab').allInnerTexts();
}

/** @param {any} answer @param {string} code */
function refused(answer, code = 'NOT_ALLOWED') {
  assert.equal(answer.error?.code, code, JSON.stringify(answer));
}

test('without permissions, only Users, Bots and Permissions are offered, and the API refuses the rest', async () => {
  const { page, context } = await loggedIn(chromium, server, 'bob');
  assert.deepEqual(await tabs(page), ['Users', 'Bots', 'Permissions']);
  refused(await server.api('PATCH', '/api/settings', { name: 'Mine' }, bob));
  refused(await server.api('POST', '/api/roles', { name: 'x', permissions: {} }, bob));
  refused(await server.api('POST', '/api/channels', { name: 'mine' }, bob));
  refused(await server.api('POST', '/api/emotes', { shortcode: 'x', imageURL: 'https://example.org/x.png' }, bob));
  refused(await server.api('GET', '/api/plugins', undefined, bob));
  refused(await server.api('GET', '/api/licenses?all=true', undefined, bob));
  await open(page, 'Users');
  assert.equal(await page.getByRole('button', { name: /^Delete / }).count(), 0);
  assert.equal(await page.getByRole('button', { name: /^Give role/ }).count(), 0);
  await context.close();
});

test('settings: name, uploaded icon and read access, live for everyone', async () => {
  const a = await loggedIn(chromium, server, 'alice');
  const b = await loggedIn(chromium, server, 'bob');
  await open(a.page, 'Settings');
  await a.page.getByLabel('Server name').fill('Harbour');
  await a.page.getByLabel('Upload an icon').setInputFiles({ name: 'icon.png', mimeType: 'image/png', buffer: PNG });
  await a.page.waitForFunction(() => /** @type {HTMLInputElement} */ (document.getElementById('set-icon')).value.includes('/uploads/'));
  await a.page.getByLabel('Everyone, guests too').check();
  await a.page.getByRole('button', { name: 'Save settings' }).click();
  await b.page.locator('.server-name', { hasText: 'Harbour' }).waitFor();
  const { settings } = await server.api('GET', '/api/settings');
  assert.equal(settings.readAccess, 'public');
  assert.match(settings.iconURL, /\/uploads\//);
  await a.context.close();
  await b.context.close();
});

test('roles: create with tri-state permissions, reorder by keyboard, give on a user card, take, delete', async () => {
  const a = await loggedIn(chromium, server, 'alice');
  const b = await loggedIn(chromium, server, 'bob');
  await open(a.page, 'Roles');
  for (const name of ['Mods', 'Helpers']) {
    await a.page.getByRole('button', { name: 'New role' }).click();
    await a.page.getByLabel('Role name').fill(name);
    await a.page.getByLabel('manageChannels: allow').check();
    await a.page.getByLabel('deleteMessages: deny').check();
    await a.page.getByRole('button', { name: 'Save role' }).click();
    await a.page.locator('.role-name', { hasText: name }).waitFor();
  }
  const order = async () => (await server.api('GET', '/api/roles')).roles.filter((/** @type {any} */ r) => !r.id.startsWith('_')).map((/** @type {any} */ r) => r.name);
  assert.deepEqual(await order(), ['Admin', 'Helpers', 'Mods']);
  // The Admin role is alice's own top role: it cannot be moved or edited from here.
  assert.equal(await a.page.getByRole('button', { name: 'Edit Admin' }).count(), 0);
  await a.page.getByRole('button', { name: 'Move Mods up' }).focus();
  await a.page.keyboard.press('Enter');
  await a.page.waitForFunction(() => document.querySelector('.role-list li:nth-child(2) .role-name')?.textContent === 'Mods');
  assert.deepEqual(await order(), ['Admin', 'Mods', 'Helpers']);
  // Drag and drop: Helpers back above Mods.
  await a.page.locator('li.role', { hasText: 'Helpers' }).dragTo(a.page.locator('li.role', { hasText: 'Mods' }));
  await a.page.waitForFunction(() => document.querySelector('.role-list li:nth-child(2) .role-name')?.textContent === 'Helpers');
  const mods = (await server.api('GET', '/api/roles')).roles.find((/** @type {any} */ r) => r.name === 'Mods');
  assert.deepEqual(mods.permissions, { manageChannels: true, deleteMessages: false });
  // Rename through the editor; inherit takes a key out.
  await a.page.getByRole('button', { name: 'Edit Helpers' }).click();
  await a.page.getByLabel('Role name').fill('Greeters');
  await a.page.getByLabel('deleteMessages: inherit').check();
  await a.page.getByRole('button', { name: 'Save role' }).click();
  await a.page.locator('.role-name', { hasText: 'Greeters' }).waitFor();
  const greeters = (await server.api('GET', '/api/roles')).roles.find((/** @type {any} */ r) => r.name === 'Greeters');
  assert.deepEqual(greeters.permissions, { manageChannels: true });

  // Give Mods to bob: his page offers Channels at once (user/update reaches him).
  await open(a.page, 'Users');
  await a.page.getByLabel('Search users').fill('bo');
  await a.page.getByLabel('Role to give bob').selectOption({ label: 'Mods' });
  await a.page.getByRole('button', { name: 'Give role to bob' }).click();
  await open(b.page);
  await b.page.getByRole('tab', { name: 'Channels' }).waitFor();
  // bob cannot give roles (no grantRoles), and the API says so.
  refused(await server.api('POST', `/api/users/${bobId}/roles`, { roleID: mods.id }, bob));
  await a.page.getByRole('button', { name: 'Take Mods from bob' }).click();
  await b.page.getByRole('tab', { name: 'Channels' }).waitFor({ state: 'detached' });

  // The same on bob's user card in the chat; bob's card shows no such controls to bob.
  await a.page.getByRole('button', { name: 'Server' }).click();
  await a.page.getByRole('button', { name: 'People' }).click();
  await a.page.locator('#panel').getByRole('button', { name: 'bob' }).click();
  const card = a.page.locator('#panel');
  await card.getByLabel('Role to give bob').selectOption({ label: 'Mods' });
  await card.getByRole('button', { name: 'Give role to bob' }).click();
  await card.getByRole('button', { name: 'Take Mods from bob' }).click();
  await card.getByRole('button', { name: 'Give role to bob' }).waitFor();
  await b.page.getByRole('button', { name: 'Server' }).click();
  await b.page.getByRole('button', { name: 'People' }).click();
  await b.page.locator('#panel').getByRole('button', { name: 'alice' }).click();
  await b.page.locator('#panel h2', { hasText: 'alice' }).waitFor();
  assert.equal(await b.page.locator('#panel').getByRole('button', { name: /^Give role|^Take / }).count(), 0);

  await open(a.page, 'Roles');
  a.page.once('dialog', (d) => { assert.match(d.message(), /Greeters/); d.accept(); });
  await a.page.getByRole('button', { name: 'Delete Greeters' }).click();
  await a.page.locator('.role-name', { hasText: 'Greeters' }).waitFor({ state: 'detached' });
  await a.context.close();
  await b.context.close();
});

test('channels: create, rename, overrides with a readers preview, explained permissions, delete with confirmation', async () => {
  const a = await loggedIn(chromium, server, 'alice');
  await open(a.page, 'Channels');
  await a.page.getByLabel('New channel name').fill('staff');
  await a.page.getByRole('button', { name: 'Create channel' }).click();
  await a.page.getByRole('button', { name: 'Delete #staff' }).waitFor();
  await a.page.getByLabel('Rename #staff').fill('staffroom');
  await a.page.locator('li', { has: a.page.getByLabel('Rename #staff') }).getByRole('button', { name: 'Rename' }).click();
  await a.page.getByRole('button', { name: 'Permissions of #staffroom' }).click();
  const staff = (await server.api('GET', '/api/channels', undefined, admin)).channels.find((/** @type {any} */ c) => c.name === 'staffroom');
  // _everyone offers only readMessages; roles and _user the five channel keys.
  const everyone = a.page.locator('fieldset', { has: a.page.locator('legend', { hasText: /^Everyone$/ }) });
  await everyone.waitFor();
  assert.equal(await everyone.locator('tbody tr').count(), 1);
  const admins = a.page.locator('fieldset', { has: a.page.locator('legend', { hasText: /^Admin$/ }) });
  assert.equal(await admins.locator('tbody tr').count(), 5);
  await everyone.getByLabel('readMessages: deny').check();
  await a.page.locator('.preview', { hasText: 'no user' }).waitFor();
  await admins.getByLabel('readMessages: allow').check();
  await a.page.locator('.preview', { hasText: 'afterwards: alice' }).waitFor();
  await a.page.getByRole('button', { name: 'Save permissions' }).click();
  await a.page.getByRole('button', { name: 'Delete #staffroom' }).waitFor();
  const { rolePermissions } = await server.api('GET', `/api/channels/${staff.id}/role-permissions`);
  assert.deepEqual(rolePermissions._everyone, { readMessages: false });
  refused(await server.api('GET', `/api/channels/${staff.id}/messages`, undefined, bob));

  // Where bob's readMessages comes from in that channel.
  await open(a.page, 'Permissions');
  await a.page.getByLabel('User', { exact: true }).selectOption({ label: 'bob' });
  await a.page.getByLabel('Channel', { exact: true }).selectOption({ label: '#staffroom' });
  await a.page.locator('tr', { hasText: 'readMessages' }).getByText('denied by channel override for _everyone').waitFor();

  await open(a.page, 'Channels');
  a.page.once('dialog', (d) => { assert.match(d.message(), /#staffroom/); d.accept(); });
  await a.page.getByRole('button', { name: 'Delete #staffroom' }).click();
  await a.page.getByRole('button', { name: 'Delete #staffroom' }).waitFor({ state: 'detached' });
  await a.context.close();
});

test('emotes: add by upload and shortcode, delete', async () => {
  const a = await loggedIn(chromium, server, 'alice');
  await open(a.page, 'Emotes');
  await a.page.getByLabel('Shortcode').fill('wave');
  await a.page.getByLabel('Emote image').setInputFiles({ name: 'wave.png', mimeType: 'image/png', buffer: PNG });
  await a.page.getByRole('button', { name: 'Add emote' }).click();
  await a.page.getByRole('button', { name: 'Delete :wave:' }).waitFor();
  assert.ok((await server.api('GET', '/api/emotes')).emotes.some((/** @type {any} */ e) => e.shortcode === 'wave'));
  a.page.once('dialog', (d) => d.accept());
  await a.page.getByRole('button', { name: 'Delete :wave:' }).click();
  await a.page.getByRole('button', { name: 'Delete :wave:' }).waitFor({ state: 'detached' });
  await a.context.close();
});

test('users and sessions: search, delete with confirmation, log out everywhere else', async () => {
  await server.user('temporary');
  const other = (await server.api('POST', '/api/sessions', { username: 'alice', password: 'password1' })).sessionID;
  const a = await loggedIn(chromium, server, 'alice');
  await open(a.page, 'Users');
  await a.page.getByLabel('Search users').fill('tempo');
  assert.equal(await a.page.getByRole('list', { name: 'Users' }).locator(':scope > li').count(), 1);
  a.page.once('dialog', (d) => { assert.match(d.message(), /temporary/); d.accept(); });
  await a.page.getByRole('button', { name: 'Delete temporary' }).click();
  await a.page.getByRole('button', { name: 'Delete temporary' }).waitFor({ state: 'detached' });
  refused(await server.api('DELETE', `/api/users/${bobId}`, undefined, bob));
  const mine = a.page.getByRole('list', { name: 'Your sessions' });
  await mine.locator('li', { hasText: 'This browser' }).getByText(/HeadlessChrome|Chrome/).waitFor();
  await mine.locator('li', { hasText: 'Another session' }).getByText(/ago|just now/).first().waitFor();
  await a.page.getByRole('button', { name: 'Log out everywhere else' }).click();
  await a.page.getByRole('status').filter({ hasText: 'Logged out everywhere else.' }).waitFor();
  refused(await server.api('GET', `/api/sessions/${other}`), 'INVALID_SESSION_ID');
  refused(await server.api('GET', `/api/sessions/${admin}`), 'INVALID_SESSION_ID');
  admin = await server.user('alice');
  await a.context.close();
});

test('login without "keep me logged in" makes a session that lasts while used', async () => {
  const context = await chromium.newContext();
  const page = await context.newPage();
  await page.goto(server.url);
  await page.getByLabel('Username').fill('alice');
  await page.getByLabel('Password').fill('password1');
  await page.getByLabel('Keep me logged in for 30 days').uncheck();
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('status').filter({ hasText: 'connected' }).waitFor();
  await open(page, 'Users');
  const mine = page.getByRole('list', { name: 'Your sessions' });
  await mine.locator('li', { hasText: 'This browser' }).getByText(/unless used/).waitFor();
  const session = await page.evaluate(() => localStorage.getItem('decentd.session'));
  const { sessions } = await server.api('GET', '/api/sessions', undefined, session ?? '');
  const current = sessions.find((/** @type {{current: boolean}} */ s) => s.current);
  assert.equal(current.sliding, true);
  assert.ok(current.expires - Date.now() / 1000 < 86_400 + 60);
  await context.close();
});

test('plugins: state, stats and capabilities; disable, enable, reload', async () => {
  const a = await loggedIn(chromium, server, 'alice');
  await open(a.page, 'Plugins');
  await a.page.getByText('capabilities: commands, say, tell').waitFor();
  await a.page.getByRole('button', { name: 'Disable dice' }).click();
  await a.page.getByRole('button', { name: 'Enable dice' }).click();
  await a.page.getByRole('button', { name: 'Disable dice' }).waitFor();
  await a.page.getByRole('button', { name: 'Reload dice' }).click();
  await a.page.getByRole('status').filter({ hasText: 'dice reloaded.' }).waitFor();
  refused(await server.api('POST', '/api/plugins/dice/disable', undefined, bob));
  await a.context.close();
});

test('bots: a license with chosen capabilities, its key shown once, revoked; everyone\'s for manageServer', async () => {
  const b = await loggedIn(chromium, server, 'bob');
  await open(b.page, 'Bots');
  await b.page.getByLabel('Label').fill('weather bot');
  await b.page.getByLabel('tell').uncheck();
  await b.page.getByRole('button', { name: 'Create license' }).click();
  const key = await b.page.getByLabel('The new key (shown once)').inputValue();
  assert.match(key, /^[0-9a-f]{32,}$/);
  await b.page.getByRole('button', { name: 'Copy key' }).waitFor();
  const { licenses } = await server.api('GET', '/api/licenses', undefined, bob);
  assert.deepEqual(licenses[0].capabilities, ['read', 'command', 'say']);
  // Without manageServer: no list of other people's licenses.
  assert.equal(await b.page.getByRole('heading', { name: 'Everyone else\'s licenses' }).count(), 0);

  // A bot connects: the count follows within the refresh.
  const botPage = await b.context.newPage();
  await botPage.evaluate((url) => { /** @type {any} */ (window).bot = new WebSocket(url); }, `${server.url.replace('http', 'ws')}/v2/${key}`);
  await b.page.locator('li', { hasText: 'weather bot' }).getByText('1 connected').waitFor({ timeout: 15000 });
  await botPage.close();

  const a = await loggedIn(chromium, server, 'alice');
  await open(a.page, 'Bots');
  await a.page.getByRole('heading', { name: 'Everyone else\'s licenses' }).waitFor();
  const row = a.page.locator('li', { hasText: 'weather bot (bob)' });
  await row.getByRole('button', { name: 'Disable' }).click();
  await a.page.locator('li', { hasText: 'weather bot (bob)' }).getByText(/disabled/).waitFor();

  // Accessibility of every section.
  for (const tab of ['Settings', 'Roles', 'Channels', 'Emotes', 'Users', 'Plugins', 'Bots', 'Permissions']) {
    await open(a.page, tab);
    await a.page.getByRole('tabpanel').locator('*').first().waitFor();
    assert.deepEqual(await axe(a.page), [], tab);
  }

  // Screenshots of the admin views.
  const docs = join(ROOT, 'docs');
  mkdirSync(docs, { recursive: true });
  await a.page.setViewportSize({ width: 1100, height: 700 });
  for (const [tab, file] of [['Roles', 'admin-roles.png'], ['Channels', 'admin-channels.png'], ['Plugins', 'admin-plugins.png']]) {
    await open(a.page, tab);
    await a.page.getByRole('tabpanel').locator('*').first().waitFor();
    await a.page.screenshot({ path: join(docs, file) });
  }
  await a.context.close();

  b.page.once('dialog', (d) => d.accept());
  await open(b.page, 'Bots');
  await b.page.getByRole('button', { name: 'Revoke' }).click();
  await b.page.getByText('None yet.').waitFor();
  await b.context.close();
});
