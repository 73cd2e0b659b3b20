// The web client with a long history and a busy channel: scrolling a channel of 10,000
// messages to its start keeps at most a few hundred message nodes in the DOM, and typing
// while 20 messages a second arrive is measured (key event to handler) and reported.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Server, browser, loggedIn } from './harness.mjs';

const MESSAGES = Number(process.env.SCALE_MESSAGES ?? 10000);

test(`a channel of ${MESSAGES} messages scrolls to its start with a bounded DOM; typing under 20 messages/s`, async () => {
  const server = await Server.start(['--admin', 'alice', '--read-access', 'members']);
  const chromium = await browser();
  try {
    const admin = await server.user('alice');
    await server.user('bob');
    const channel = (await server.api('POST', '/api/channels', { name: 'busy' }, admin)).channelID;
    // The first message alone, so that it is the channel's oldest (32 posts at once arrive in
    // any order); then the rest side by side.
    await server.api('POST', '/api/messages', { channelID: channel, text: 'message number 0' }, admin);
    let next = 1;
    const worker = async () => {
      while (next < MESSAGES) {
        const n = next++;
        await server.api('POST', '/api/messages', { channelID: channel, text: `message number ${n}` }, admin);
      }
    };
    const seeded = Date.now();
    await Promise.all(Array.from({ length: 32 }, worker));
    console.log(`seeded ${MESSAGES} messages in ${((Date.now() - seeded) / 1000).toFixed(1)} s`);

    const { page, context, errors } = await loggedIn(chromium, server, 'bob');
    await page.locator('#messages li.message', { hasText: `message number ${MESSAGES - 1}` }).waitFor();
    const started = Date.now();
    const { steps, most, first } = await page.evaluate(async () => {
      const list = /** @type {HTMLElement} */ (document.getElementById('messages'));
      let most = 0;
      let steps = 0;
      const atStart = () => [...list.querySelectorAll('li.notice')].some((n) => n.textContent?.includes('start of the channel'));
      while (!atStart() && steps < 2000) {
        const top = list.querySelector('li.message')?.id;
        list.scrollTop = 0;
        for (let i = 0; i < 300 && list.querySelector('li.message')?.id === top && !atStart(); i++) {
          await new Promise((ok) => setTimeout(ok, 10));
        }
        most = Math.max(most, list.querySelectorAll('li').length);
        steps += 1;
      }
      return { steps, most, first: list.querySelector('li.message .text')?.textContent };
    });
    console.log(`scrolled to the start in ${steps} pages, ${((Date.now() - started) / 1000).toFixed(1)} s; at most ${most} list items in the DOM`);
    assert.equal(first, 'message number 0');
    assert.ok(most <= 400, `${most} nodes`);

    // Typing while 20 messages a second arrive: how long each key event waits for its handler.
    await page.evaluate(() => {
      /** @type {any} */ (window).__keyDelays = [];
      document.getElementById('composer')?.addEventListener('keydown', (e) => {
        /** @type {any} */ (window).__keyDelays.push(performance.now() - e.timeStamp);
      });
    });
    let posting = true;
    const poster = (async () => {
      for (let n = 0; posting; n++) {
        await server.api('POST', '/api/messages', { channelID: channel, text: `live ${n}` }, admin);
        await new Promise((ok) => setTimeout(ok, 50));
      }
    })();
    await page.getByRole('textbox', { name: 'Message', exact: true }).pressSequentially('typing while the channel is busy', { delay: 60 });
    posting = false;
    await poster;
    const delays = /** @type {number[]} */ (await page.evaluate(() => /** @type {any} */ (window).__keyDelays)).sort((a, b) => a - b);
    console.log(`typing under 20 messages/s: ${delays.length} keys, key event to handler p50 ${delays[Math.floor(delays.length / 2)].toFixed(1)} ms, max ${delays[delays.length - 1].toFixed(1)} ms`);
    assert.equal(await page.getByRole('textbox', { name: 'Message', exact: true }).inputValue(), 'typing while the channel is busy');
    assert.deepEqual(errors, []);
    await context.close();
  } finally {
    await chromium.close();
    await server.close();
  }
});
