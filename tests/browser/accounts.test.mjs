// Account security in the web client, in headless Chromium against the real binary: setting up
// two-factor login with a real TOTP generator (otpauth) and logging in with a code; a lost
// password reset through a link mailed to a real SMTP sink (smtp-server); finding people by
// part of their name.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as OTPAuth from 'otpauth';
import { SMTPServer } from 'smtp-server';
import { simpleParser } from 'mailparser';
import { join } from 'node:path';
import { Server, browser, loggedIn, axe, freePort, ROOT } from './harness.mjs';

/** @type {Server} */
let server;
/** @type {import('playwright-core').Browser} */
let chromium;
/** @type {SMTPServer} */
let smtp;
/** @type {import('mailparser').ParsedMail[]} */
const mails = [];

before(async () => {
  smtp = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    onData(stream, _session, done) {
      simpleParser(stream).then((mail) => { mails.push(mail); done(); }, done);
    },
  });
  const smtpPort = await freePort();
  await new Promise((ok) => smtp.listen(smtpPort, '127.0.0.1', () => ok(undefined)));
  const port = await freePort();
  server = await Server.start(['--smtp-url', `smtp://127.0.0.1:${smtpPort}`,
    '--public-url', `http://127.0.0.1:${port}`], port);
  chromium = await browser();
});

after(async () => {
  await chromium?.close();
  await server?.close();
  await new Promise((ok) => smtp?.close(() => ok(undefined)));
});

/** Waits until at least `seconds` are left of the current 30 s step, so codes stay valid. */
async function freshStep(seconds) {
  const left = 30 - (Math.floor(Date.now() / 1000) % 30);
  if (left < seconds) await new Promise((ok) => setTimeout(ok, (left + 1) * 1000));
}

test('two-factor login: set up with the QR secret, recovery codes shown once, then login asks for a code', async () => {
  await server.user('tess');
  const { context, page, errors } = await loggedIn(chromium, server, 'tess');
  await page.getByRole('button', { name: 'Account: tess' }).click();
  await page.getByRole('button', { name: 'Set up two-factor login' }).click();
  await page.getByLabel('Your password').fill('password1');
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.getByRole('img', { name: 'QR code of the secret' }).waitFor();
  const secret = await page.locator('code.secret').innerText();
  await page.screenshot({ path: join(ROOT, 'docs', 'two-factor.png') });
  const totp = new OTPAuth.TOTP({ secret: OTPAuth.Secret.fromBase32(secret), algorithm: 'SHA1', digits: 6, period: 30 });
  await freshStep(8);
  // The previous step's code confirms (one step of skew), leaving the current one for login.
  await page.getByLabel('The 6-digit code the app shows').fill(totp.generate({ timestamp: Date.now() - 30_000 }));
  await page.getByRole('button', { name: 'Turn on' }).click();
  const codes = page.getByRole('list', { name: 'Recovery codes' }).getByRole('listitem');
  await codes.first().waitFor();
  assert.equal(await codes.count(), 10);
  assert.match(await codes.first().innerText(), /^[0-9a-f]{5}-[0-9a-f]{5}$/);
  assert.deepEqual(await axe(page), []);
  await page.getByRole('button', { name: 'I have saved them' }).click();
  await page.getByText('On. 10 recovery codes left.').waitFor();

  await page.getByRole('button', { name: 'Log out' }).click();
  await page.getByLabel('Username').fill('tess');
  await page.getByLabel('Password').fill('password1');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByText('Enter the code from your authenticator app.').waitFor();
  await page.getByLabel('Two-factor code (or a recovery code)').fill('000000');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByText('that two-factor code is not correct').waitFor();
  await page.getByLabel('Two-factor code (or a recovery code)').fill(totp.generate());
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('status').filter({ hasText: 'connected' }).waitFor();
  assert.deepEqual(errors, []);
  await context.close();
});

test('a lost password is reset through the mailed link, and the new one logs in', async () => {
  const session = await server.user('rita');
  const { users } = await server.api('GET', '/api/users?name=rita');
  await server.api('PATCH', `/api/users/${users[0].id}`, { email: 'rita@example.com' }, session);
  const context = await chromium.newContext();
  const page = await context.newPage();
  await page.goto(server.url);
  await page.getByRole('button', { name: 'Forgot your password?' }).click();
  await page.getByLabel('Email').fill('rita@example.com');
  await page.getByRole('button', { name: 'Send the link' }).click();
  await page.getByText('If an account has that address').waitFor();
  for (let i = 0; i < 200 && !mails.length; i++) await new Promise((ok) => setTimeout(ok, 25));
  const link = /http:\/\/\S+#reset=[\w-]+/.exec(mails[0]?.text ?? '')?.[0];
  assert.ok(link, JSON.stringify(mails[0]?.text));
  assert.equal(mails[0].to && 'text' in mails[0].to ? mails[0].to.text : '', 'rita@example.com');

  await page.goto(link);
  await page.getByRole('heading', { name: 'Choose a new password' }).waitFor();
  assert.deepEqual(await axe(page), []);
  await page.getByLabel('New password (at least 6 characters)').fill('brand-new');
  await page.getByLabel('The same again').fill('brand-new');
  await page.getByRole('button', { name: 'Set the password' }).click();
  await page.getByText('Your password was changed').waitFor();
  // The old session ended with the reset.
  assert.equal((await server.api('GET', '/api/sessions', undefined, session)).error?.code, 'INVALID_SESSION_ID');
  await page.getByLabel('Username').fill('rita');
  await page.getByLabel('Password').fill('brand-new');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('status').filter({ hasText: 'connected' }).waitFor();
  await context.close();
});

test('people are found by any part of their name', async () => {
  for (const name of ['alice', 'malice', 'bob']) await server.user(name);
  const { context, page } = await loggedIn(chromium, server, 'bob');
  await page.getByRole('button', { name: 'People' }).click();
  const search = page.getByRole('searchbox', { name: 'Find people' });
  const list = page.locator('.user-list');
  await search.fill('lic');
  await list.getByRole('button', { name: /(^| )alice$/ }).waitFor();
  await list.getByRole('button', { name: /(^| )malice$/ }).waitFor();
  await search.fill('mal');
  await list.getByRole('button', { name: /(^| )alice$/ }).waitFor({ state: 'detached' });
  assert.deepEqual(await list.getByRole('listitem').allInnerTexts(), ['malice']);
  await search.fill('zzz');
  await list.getByText('Nobody by that name.').waitFor();
  await context.close();
});
