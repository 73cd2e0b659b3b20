// HTTPS: decentd serving TLS itself (--tls-cert/--tls-key). The setup link it logs is an
// https:// one; the web client opened from it creates the administrator, connects its
// WebSocket over wss:// and chats; GET /api says useSecureProtocol.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Server, TLS_ARGS, browser, setupLink } from './harness.mjs';

test('the web client works over HTTPS from the setup link to a message', async () => {
  const server = await Server.start(['--read-access', 'members', ...TLS_ARGS]);
  const chromium = await browser();
  try {
    const link = await setupLink(server);
    assert.ok(link?.startsWith('https://'), `no https setup link in:\n${server.logs.join('\n')}`);
    const api = await server.api('GET', '/api');
    assert.equal(api.useSecureProtocol, true);

    // The fixture certificate is self-signed: this browser context accepts it.
    const context = await chromium.newContext({ ignoreHTTPSErrors: true });
    const page = await context.newPage();
    /** @type {string[]} */
    const sockets = [];
    page.on('websocket', (ws) => sockets.push(ws.url()));
    await page.goto(/** @type {string} */ (link));
    await page.getByLabel('Username').fill('founder');
    await page.getByLabel(/^Password/).fill('password1');
    await page.getByRole('button', { name: 'Create and log in' }).click();
    await page.getByRole('status').filter({ hasText: 'connected' }).waitFor();
    assert.ok(sockets.length > 0 && sockets.every((u) => u.startsWith('wss://')), sockets.join(', '));

    // A message posted elsewhere arrives over the wss:// socket.
    const session = /** @type {string} */ (await page.evaluate(() => localStorage.getItem('decentd.session')));
    const { channelID } = await server.api('POST', '/api/channels', { name: 'general' }, session);
    await page.getByRole('link', { name: /# general/ }).click();
    await server.api('POST', '/api/messages', { channelID, text: 'hello over TLS' }, session);
    await page.getByText('hello over TLS').waitFor();
  } finally {
    await chromium.close();
    await server.close();
  }
});
