// Direct messages and search in the web client, in headless Chromium against the real binary:
// a conversation started from a user card, live between two browsers with an unread badge;
// a search whose results open the message in its channel; and a user who never finds what
// they may not read.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Server, browser, loggedIn, axe } from './harness.mjs';

/** @type {Server} */
let server;
/** @type {import('playwright-core').Browser} */
let chromium;
let admin = '';
let general = '';

before(async () => {
  server = await Server.start(['--admin', 'alice', '--read-access', 'members']);
  admin = await server.user('alice');
  await server.user('bob');
  await server.user('carol');
  general = (await server.api('POST', '/api/channels', { name: 'general' }, admin)).channelID;
  chromium = await browser();
});

after(async () => {
  await chromium?.close();
  await server?.close();
});

test('a direct conversation from a user card, live in both browsers with an unread badge', async () => {
  const a = await loggedIn(chromium, server, 'alice');
  const b = await loggedIn(chromium, server, 'bob');
  await a.page.getByRole('button', { name: 'People' }).click();
  await a.page.locator('#panel').getByRole('button', { name: /(^| )bob$/ }).click();
  await a.page.getByRole('button', { name: 'Message bob' }).click();
  await a.page.getByRole('heading', { name: 'Direct: bob' }).waitFor();
  await a.page.getByLabel('Message bob').fill('psst, bob');
  await a.page.getByLabel('Message bob').press('Enter');
  await a.page.getByRole('list', { name: 'Messages with bob' }).getByText('psst, bob').waitFor();

  // Bob sees a badge on Direct, opens the conversation, and answers; alice sees it live.
  await b.page.locator('#dm-button .badge', { hasText: '1' }).waitFor();
  await b.page.getByRole('button', { name: /^Direct/ }).click();
  await b.page.getByRole('list', { name: 'Conversations' }).getByRole('button', { name: /alice/ }).click();
  await b.page.getByRole('list', { name: 'Messages with alice' }).getByText('psst, bob').waitFor();
  await b.page.locator('#dm-button .badge').waitFor({ state: 'detached' });
  assert.deepEqual(await axe(b.page), []);
  await b.page.getByLabel('Message alice').fill('hi alice');
  await b.page.getByRole('button', { name: 'Send' }).last().click();
  await a.page.getByRole('list', { name: 'Messages with bob' }).getByText('hi alice').waitFor();

  // Carol, a third user, has no conversation and sees none of it.
  const c = await loggedIn(chromium, server, 'carol');
  await c.page.getByRole('button', { name: /^Direct/ }).click();
  await c.page.getByText('No conversations yet.').waitFor();
  assert.deepEqual([...a.errors, ...b.errors, ...c.errors], []);
  await Promise.all([a.context.close(), b.context.close(), c.context.close()]);
});

test('search finds messages and opens them in their channel; never what one may not read', async () => {
  await server.api('POST', '/api/messages', { channelID: general, text: 'the quarterly numbers are in' }, admin);
  const hidden = (await server.api('POST', '/api/channels', { name: 'board' }, admin)).channelID;
  await server.api('POST', '/api/messages', { channelID: hidden, text: 'quarterly board minutes' }, admin);
  await server.api('PATCH', `/api/channels/${hidden}/role-permissions`, {
    rolePermissions: { _everyone: { readMessages: false }, _user: { readMessages: false } },
  }, admin);
  const bob = await server.api('POST', '/api/sessions', { username: 'bob', password: 'password1' });
  const { users } = await server.api('GET', '/api/users?name=alice', undefined, bob.sessionID);
  await server.api('POST', `/api/users/${users[0].id}/messages`, { text: 'quarterly gossip for alice' }, bob.sessionID);

  const a = await loggedIn(chromium, server, 'alice');
  await a.page.getByRole('searchbox', { name: 'Search messages' }).fill('QUARTER');
  await a.page.getByRole('searchbox', { name: 'Search messages' }).press('Enter');
  const results = a.page.getByRole('list', { name: 'Search results' });
  // The index commits once a second: search again until both arrive.
  for (let i = 0; i < 50 && (await results.getByRole('listitem').count().catch(() => 0)) < 2; i++) {
    await new Promise((ok) => setTimeout(ok, 200));
    await a.page.getByRole('searchbox', { name: 'Search messages' }).press('Enter');
  }
  await results.getByText('quarterly gossip for alice').waitFor();
  assert.deepEqual(await axe(a.page), []);
  await results.getByRole('button', { name: /# general: the quarterly numbers/ }).click();
  await a.page.locator('#messages .highlight', { hasText: 'the quarterly numbers are in' }).waitFor();

  // Carol finds the channel message but not alice's direct message.
  const c = await loggedIn(chromium, server, 'carol');
  await c.page.getByRole('searchbox', { name: 'Search messages' }).fill('quarterly');
  await c.page.getByRole('searchbox', { name: 'Search messages' }).press('Enter');
  await c.page.getByRole('list', { name: 'Search results' }).getByText('the quarterly numbers are in').waitFor();
  assert.equal(await c.page.getByText('quarterly gossip').count(), 0);
  assert.equal(await c.page.getByText('quarterly board minutes').count(), 0);
  await Promise.all([a.context.close(), c.context.close()]);
});

test('a long conversation shows its latest page and loads older ones', async () => {
  const carol = await server.api('POST', '/api/sessions', { username: 'carol', password: 'password1' });
  const { users } = await server.api('GET', '/api/users?name=bob', undefined, carol.sessionID);
  for (let i = 1; i <= 105; i++) {
    await server.api('POST', `/api/users/${users[0].id}/messages`, { text: `note ${i}` }, carol.sessionID);
  }
  const b = await loggedIn(chromium, server, 'bob');
  await b.page.getByRole('button', { name: /^Direct/ }).click();
  await b.page.getByRole('list', { name: 'Conversations' }).getByRole('button', { name: /carol/ }).click();
  const list = b.page.getByRole('list', { name: 'Messages with carol' });
  await list.getByText('note 105', { exact: true }).waitFor();
  assert.equal(await list.getByRole('listitem').count(), 100);
  assert.equal(await list.getByText('note 1', { exact: true }).count(), 0);
  await b.page.getByRole('button', { name: 'Show older messages' }).click();
  await list.getByText('note 1', { exact: true }).waitFor();
  assert.equal(await list.getByRole('listitem').count(), 105);
  assert.equal(await b.page.getByRole('button', { name: 'Show older messages' }).count(), 0);
  await b.context.close();
});
