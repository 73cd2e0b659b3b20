// The SignalR hub at /hub through the official, unmodified @microsoft/signalr client: in Node
// (which sends the session as `Authorization: Bearer`) and in Chromium (which sends it as
// `access_token`), against the real binary.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import * as signalR from '@microsoft/signalr';
import { Server, browser, freePort, loggedIn, ROOT } from './harness.mjs';

/** @type {Server} */
let server;
let alice = '';
let bob = '';
let aliceID = '';
let bobID = '';
let general = '';

/** The user ID of a session. @param {string} session */
async function userID(session) {
  const answer = await server.api('GET', `/api/sessions/${session}`, undefined, session);
  return /** @type {string} */ (answer.user.id);
}

before(async () => {
  server = await Server.start(['--admin', 'alice', '--read-access', 'members'], await freePort());
  alice = await server.user('alice');
  bob = await server.user('bob');
  aliceID = await userID(alice);
  bobID = await userID(bob);
  general = (await server.api('POST', '/api/channels', { name: 'general' }, alice)).channelID;
});

after(async () => {
  await server?.close();
});

/**
 * A hub connection built the way an application builds one.
 * @param {string | undefined} session
 * @param {Partial<import('@microsoft/signalr').IHttpConnectionOptions>} [options]
 */
function hub(session, options = {}) {
  return new signalR.HubConnectionBuilder()
    .withUrl(`${server.url}/hub`, { ...(session ? { accessTokenFactory: () => session } : {}), ...options })
    .withAutomaticReconnect([0, 250, 500, 1000, 1000, 2000, 2000, 2000, 5000])
    .configureLogging(signalR.LogLevel.Error)
    .build();
}

/**
 * Resolves with the first call of a client method whose arguments pass `match`.
 * @param {signalR.HubConnection} connection @param {string} target
 * @param {(...args: any[]) => boolean} match
 * @returns {Promise<any[]>}
 */
function received(connection, target, match = () => true) {
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`no ${target} arrived`)), 10000);
    /** @param {any[]} args */
    const handler = (...args) => {
      if (!match(...args)) return;
      clearTimeout(timer);
      connection.off(target, handler);
      ok(args);
    };
    connection.on(target, handler);
  });
}

test('a session connects; channel and direct messages arrive; SendMessage completes', async () => {
  const connection = hub(alice);
  await connection.start();
  assert.equal(connection.state, signalR.HubConnectionState.Connected);

  // A channel message bob posts over HTTP arrives as ReceiveEvent("message/new", data).
  const channelMessage = received(connection, 'ReceiveEvent',
    (name, data) => name === 'message/new' && data.message.text === 'hello hub');
  await server.api('POST', '/api/messages', { channelID: general, text: 'hello hub' }, bob);
  const [, data] = await channelMessage;
  assert.equal(data.message.channelID, general);
  assert.equal(data.message.authorID, bobID);

  // A direct message arrives as ReceiveEvent("dm/new") and as Resonite's ReceiveMessage.
  const dmEvent = received(connection, 'ReceiveEvent', (name) => name === 'dm/new');
  const dm = received(connection, 'ReceiveMessage', (m) => m.content === 'psst');
  await server.api('POST', `/api/users/${aliceID}/messages`, { text: 'psst' }, bob);
  const [message] = await dm;
  assert.equal(message.senderId, bobID);
  assert.equal(message.recipientId, aliceID);
  assert.equal(message.messageType, 'Text');
  assert.equal((await dmEvent)[1].message.text, 'psst');

  // SendMessage to a channel completes with what the HTTP API answers; the message is stored.
  const sent = await connection.invoke('SendMessage', { channelID: general, text: 'from the hub' });
  const stored = await server.api('GET', `/api/messages/${sent.messageID}`, undefined, bob);
  assert.equal(stored.message.text, 'from the hub');
  assert.equal(stored.message.authorID, aliceID);

  // ... and to a user, as Resonite shapes it; bob's own hub gets it as ReceiveMessage.
  const bobs = hub(bob);
  await bobs.start();
  const toBob = received(bobs, 'ReceiveMessage', (m) => m.content === 'hi bob');
  const direct = await connection.invoke('SendMessage', { recipientId: bobID, content: 'hi bob' });
  assert.equal(direct.message.text, 'hi bob');
  assert.equal((await toBob)[0].id, direct.messageID);

  // MarkMessagesRead sent without an invocation ID (no completion): bob learns it was read.
  const read = received(bobs, 'MessagesRead', (batch) => batch.recipientId === aliceID);
  await connection.send('MarkMessagesRead', { senderId: bobID });
  const [batch] = await read;
  assert.equal(batch.senderId, bobID);
  const conversations = await server.api('GET', `/api/users/${aliceID}/conversations`, undefined, alice);
  assert.equal(conversations.conversations.find((/** @type {any} */ c) => c.userID === bobID)?.unreadCount, 0);

  await Promise.all([connection.stop(), bobs.stop()]);
});

test('forbidden actions and unknown methods answer errors; the connection stays up', async () => {
  const connection = hub(alice);
  await connection.start();
  // Bob accepts direct messages from nobody.
  await server.api('PATCH', `/api/users/${bobID}/direct-message-settings`, { allowFrom: 'nobody' }, bob);
  await assert.rejects(connection.invoke('SendMessage', { recipientId: bobID, content: 'hello?' }),
    /NOT_ALLOWED: bob does not accept direct messages from you/);
  await server.api('PATCH', `/api/users/${bobID}/direct-message-settings`, { allowFrom: 'everyone' }, bob);
  await assert.rejects(connection.invoke('SendMesage', {}), /Unknown hub method 'SendMesage'/);
  await assert.rejects(connection.invoke('SendMessage', { channelID: general }), /INCOMPLETE_PARAMETERS/);

  // A guest reads what guests may (nothing here: members only) and may not post.
  const guest = hub(undefined);
  await guest.start();
  await assert.rejects(guest.invoke('SendMessage', { channelID: general, text: 'hi' }), /NOT_ALLOWED/);
  const statuses = await guest.invoke('RequestStatus');
  assert.ok(statuses.some((/** @type {any} */ s) => s.userID === aliceID && s.status === 'online'));

  assert.equal(connection.state, signalR.HubConnectionState.Connected);
  await Promise.all([connection.stop(), guest.stop()]);
});

test('a bad session is refused at negotiate instead of connecting as a guest', async () => {
  const connection = hub('not-a-session');
  await assert.rejects(connection.start(), /401/);
});

test('presence: statuses broadcast to hub clients as ReceiveStatusUpdate', async () => {
  const a = hub(alice);
  const b = hub(bob);
  await Promise.all([a.start(), b.start()]);
  const away = received(b, 'ReceiveStatusUpdate', (s) => s.userId === aliceID && s.onlineStatus === 'Away');
  const answer = await a.invoke('BroadcastStatus', { onlineStatus: 'Away' });
  assert.deepEqual(answer, { userID: aliceID, status: 'away', shownAs: 'away' });
  await away;
  assert.deepEqual(await b.invoke('RequestStatus', aliceID), { userID: aliceID, status: 'away' });

  const hidden = received(b, 'ReceiveStatusUpdate', (s) => s.userId === aliceID && s.onlineStatus === 'Offline');
  await a.invoke('BroadcastStatus', 'invisible');
  await hidden;
  const user = await server.api('GET', `/api/users/${aliceID}`, undefined, bob);
  assert.equal(user.user.online, false);
  assert.equal(user.user.status, 'offline');
  const back = received(b, 'ReceiveStatusUpdate', (s) => s.userId === aliceID && s.onlineStatus === 'Online');
  await a.invoke('BroadcastStatus', 'online');
  await back;
  await Promise.all([a.stop(), b.stop()]);
});

test('skipping negotiation and connecting straight over WebSockets works', async () => {
  const connection = hub(alice, { skipNegotiation: true, transport: signalR.HttpTransportType.WebSockets });
  await connection.start();
  const sent = await connection.invoke('SendMessage', { channelID: general, text: 'no negotiate' });
  assert.match(sent.messageID, /^\d+$/);
  await connection.stop();
});

test('other transports are refused with a clear error', async () => {
  const connection = hub(alice, { transport: signalR.HttpTransportType.LongPolling });
  await assert.rejects(connection.start(), /Unable to connect|transport/i);
});

test('the client reconnects after a server restart and gets what is posted after it', async () => {
  const connection = hub(alice);
  await connection.start();
  const reconnected = new Promise((ok) => connection.onreconnected(ok));
  const reconnecting = new Promise((ok) => connection.onreconnecting(ok));
  await server.restart();
  await reconnecting;
  await reconnected;
  const after = received(connection, 'ReceiveEvent',
    (name, data) => name === 'message/new' && data.message.text === 'after the restart');
  await server.api('POST', '/api/messages', { channelID: general, text: 'after the restart' }, bob);
  await after;
  await connection.stop();
});

test('in a browser the client sends the session as access_token', async () => {
  const chromium = await browser();
  try {
    const page = await chromium.newPage();
    // The client's browser bundle, evaluated in a page of the server's origin (its CSP
    // forbids added scripts; evaluating the source is not one).
    const bundle = readFileSync(join(ROOT, 'tests/browser/node_modules/@microsoft/signalr/dist/browser/signalr.min.js'), 'utf8');
    /** @type {string[]} */
    const urls = [];
    page.on('websocket', (ws) => urls.push(ws.url()));
    await page.goto(server.url);
    await page.evaluate(bundle);
    const text = await page.evaluate(async ({ session, general }) => {
      const s = /** @type {any} */ (window).signalR;
      const connection = new s.HubConnectionBuilder()
        .withUrl('/hub', { accessTokenFactory: () => session })
        .configureLogging(s.LogLevel.Error)
        .build();
      const got = new Promise((ok) => connection.on('ReceiveEvent', (/** @type {string} */ name, /** @type {any} */ data) => {
        if (name === 'message/new') ok(data.message.text);
      }));
      await connection.start();
      await connection.invoke('SendMessage', { channelID: general, text: 'from a browser' });
      const text = await got;
      await connection.stop();
      return text;
    }, { session: alice, general });
    assert.equal(text, 'from a browser');
    assert.ok(urls.some((u) => u.includes('access_token=')), urls.join(' '));
  } finally {
    await chromium.close();
  }
});

test('a status set through the hub shows in the web client', async () => {
  const chromium = await browser();
  try {
    const b = await loggedIn(chromium, server, 'bob');
    await b.page.getByRole('button', { name: 'People' }).click();
    const connection = hub(alice);
    await connection.start();
    const aliceEntry = b.page.locator('#panel').getByRole('button', { name: /(^| )alice$/ });
    await aliceEntry.locator('.dot.online').waitFor();
    await connection.invoke('BroadcastStatus', 'busy');
    await aliceEntry.locator('.dot.busy[aria-label="busy"]').waitFor();
    await connection.invoke('BroadcastStatus', 'invisible');
    await aliceEntry.locator('.dot[aria-label="offline"]').waitFor();
    await connection.stop();
    assert.deepEqual(b.errors, []);
    await b.context.close();
  } finally {
    await chromium.close();
  }
});

test('a page on another origin uses the hub with the client\'s defaults (credentials, its headers)', async () => {
  // Another origin: a page served by the test on its own port, with the client's bundle.
  const bundle = readFileSync(join(ROOT, 'tests/browser/node_modules/@microsoft/signalr/dist/browser/signalr.min.js'), 'utf8');
  const site = createServer((_, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html' });
    res.end(`<!doctype html><title>elsewhere</title><script>${bundle}</script>`);
  });
  const port = await freePort();
  await new Promise((ok) => site.listen(port, '127.0.0.1', () => ok(undefined)));
  const chromium = await browser();
  try {
    const page = await chromium.newPage();
    await page.goto(`http://127.0.0.1:${port}/`);
    const text = await page.evaluate(async ({ url, session, general }) => {
      const s = /** @type {any} */ (window).signalR;
      const connection = new s.HubConnectionBuilder()
        .withUrl(url, { accessTokenFactory: () => session })
        .configureLogging(s.LogLevel.Error)
        .build();
      await connection.start();
      const sent = await connection.invoke('SendMessage', { channelID: general, text: 'from elsewhere' });
      await connection.stop();
      return sent.message.text;
    }, { url: `${server.url}/hub`, session: alice, general });
    assert.equal(text, 'from elsewhere');
  } finally {
    await chromium.close();
    site.close();
  }
});
