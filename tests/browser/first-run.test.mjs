// First run: a server without an administrator logs a one-time setup link; opening it in a
// browser creates the administrator account, who can then make channels and chat.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Server, browser, setupLink } from './harness.mjs';

test('the setup link from the log creates the administrator in the browser', async () => {
  const server = await Server.start(['--read-access', 'members']);
  const chromium = await browser();
  try {
    const link = await setupLink(server);
    assert.ok(link, `no setup link in:\n${server.logs.join('\n')}`);
    const page = await (await chromium.newContext()).newPage();
    await page.goto(link);
    await page.getByRole('heading', { name: 'Create the administrator account' }).waitFor();
    await page.getByLabel('Username').fill('founder');
    await page.getByLabel(/^Password/).fill('password1');
    await page.getByRole('button', { name: 'Create and log in' }).click();
    await page.getByRole('status').filter({ hasText: 'connected' }).waitFor();
    assert.equal(new URL(page.url()).hash, '');
    const session = await page.evaluate(() => localStorage.getItem('decentd.session'));
    const { user } = await server.api('GET', `/api/sessions/${session}`);
    assert.equal(user.username, 'founder');
    // The administrator can create a channel; the link does not work a second time.
    const made = await server.api('POST', '/api/channels', { name: 'general' }, /** @type {string} */ (session));
    assert.ok(made.channelID, JSON.stringify(made));
    const token = /** @type {string} */ (link).split('#setup=')[1];
    const again = await server.api('POST', '/api/users', { username: 'late', password: 'password1', setupToken: token });
    assert.equal(again.error?.code, 'NOT_ALLOWED');
  } finally {
    await chromium.close();
    await server.close();
  }
});
