// @ts-check
/**
 * The decentd web client: one page, plain ES modules, served from the binary.
 *
 * State lives in `state`; views are rebuilt from it with `h()` (dom.js), never from HTML
 * strings. The WebSocket (socket.js) feeds events in; after a reconnect the open channel is
 * backfilled with `after=` paging from the newest message shown.
 */
import * as api from './api.js';
import { h, replace, formatTime, safeUrl } from './dom.js';
import { render, mentions } from './markdown.js';
import { EventSocket } from './socket.js';
/** The Server view's module, loaded when first needed (most visits never open it). */
const admin = () => import('./admin.js');

/** Most messages kept in the DOM; older ones are dropped and fetched again when scrolled to. */
const WINDOW = 300;
/** One history page. */
const PAGE = 50;

/**
 * @typedef {{id: string, channelID: string, type: string, text: string, authorID: string | null,
 *   authorUsername: string | null, authorAvatarURL: string | null, dateCreated: number,
 *   dateEdited: number | null, pinned: boolean, mentionedUserIDs: string[],
 *   chatbox?: {name: string}}} Message
 * @typedef {{id: string, name: string, unreadMessageCount?: number,
 *   oldestUnreadMessageID?: string | null}} Channel
 * @typedef {{id: string, username: string, avatarURL: string, flair: string | null,
 *   online: boolean, status?: string, bot?: boolean, roleIDs: string[], email?: string | null}} User
 */

const state = {
  /** @type {User | null} */
  me: null,
  serverName: 'decentd',
  /** @type {Channel[]} */
  channels: [],
  /** @type {Map<string, User>} */
  users: new Map(),
  /** @type {Map<string, string>} shortcode → image URL */
  emotes: new Map(),
  /** @type {Map<string, {name: string}>} */
  roles: new Map(),
  /** @type {Record<string, boolean>} what I may do server-wide */
  granted: {},
  adminOpen: false,
  /** @type {Message[]} mentions of me, newest first */
  mentions: [],
  /** @type {string | null} */
  channelId: null,
  /** @type {Message[]} the loaded window of the open channel, oldest first */
  messages: [],
  /** Whether older / newer messages than the window exist. */
  hasOlder: false,
  hasNewer: false,
  loading: false,
  /** @type {'connecting' | 'open' | 'closed'} */
  connection: 'connecting',
  /** @type {string | null} message being edited */
  editing: null,
  notify: localStorage.getItem('decentd.notify') === 'on',
};

/** @type {EventSocket} */
let socket;
const app = /** @type {HTMLElement} */ (document.getElementById('app'));

const renderContext = () => ({
  userName: (/** @type {string} */ id) => state.users.get(id)?.username ?? null,
  emoteUrl: (/** @type {string} */ code) => state.emotes.get(code) ?? null,
  me: state.me?.id ?? null,
});

/** IDs are time-ordered integers too large for numbers. */
const idLess = (/** @type {string} */ a, /** @type {string} */ b) => BigInt(a) < BigInt(b);

// ---------------------------------------------------------------- status line

/** @param {string} text @param {'error' | 'info'} [kind] */
function toast(text, kind = 'error') {
  const box = document.getElementById('toast');
  if (!box) return;
  const item = h('div', { class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, text);
  box.appendChild(item);
  setTimeout(() => item.remove(), 6000);
}

/** @param {unknown} e */
function showError(e) {
  toast(e instanceof api.ApiError ? `${e.message} (${e.code})` : String(e));
}

// ---------------------------------------------------------------- start

async function start() {
  socket = new EventSocket(() => api.session.get(), onEvent, onConnection);
  try {
    const settings = await api.get('/api/settings');
    state.serverName = settings.settings.name;
    document.title = state.serverName;
  } catch (e) {
    showError(e);
  }
  if (api.session.get()) {
    try {
      const { user } = await api.get(`/api/sessions/${api.session.get()}`);
      state.me = user;
    } catch (e) {
      if (e instanceof api.ApiError && e.code !== 'NETWORK') api.session.set(null);
    }
  }
  const setup = /^#setup=([0-9a-f]{32})$/.exec(location.hash);
  if (setup && !state.me) {
    showSetup(setup[1]);
    return;
  }
  const reset = /^#reset=([\w-]{20,100})$/.exec(location.hash);
  if (reset) {
    showReset(reset[1]);
    return;
  }
  if (!state.me) {
    showLogin();
    return;
  }
  await enterChat();
}

/**
 * First run: the setup link from the server's log creates the administrator account.
 * @param {string} token
 */
function showSetup(token) {
  const error = h('p', { class: 'form-error', role: 'alert' });
  const username = h('input', { id: 'username', name: 'username', autocomplete: 'username', required: true });
  const password = h('input', { id: 'password', name: 'password', type: 'password', autocomplete: 'new-password', required: true });
  const submit = async () => {
    const name = /** @type {HTMLInputElement} */ (username).value.trim();
    const pass = /** @type {HTMLInputElement} */ (password).value;
    try {
      await api.post('/api/users', { username: name, password: pass, setupToken: token });
      const { sessionID } = await api.post('/api/sessions', { username: name, password: pass });
      api.session.set(sessionID);
      state.me = (await api.get(`/api/sessions/${sessionID}`)).user;
      history.replaceState(null, '', location.pathname);
      await enterChat();
    } catch (e) {
      replace(error, e instanceof api.ApiError ? e.message : String(e));
    }
  };
  replace(app, h('form', {
    class: 'login', 'aria-labelledby': 'setup-title',
    onsubmit: (e) => { e.preventDefault(); submit(); },
  },
  h('h1', { id: 'setup-title' }, 'Create the administrator account'),
  h('p', {}, 'This server has no administrator yet. The account you create here gets the Admin role; the link works once.'),
  h('label', { for: 'username' }, 'Username'), username,
  h('label', { for: 'password' }, 'Password (at least 6 characters)'), password,
  error,
  h('button', { type: 'submit' }, 'Create and log in')));
  /** @type {HTMLInputElement} */ (username).focus();
}

// ---------------------------------------------------------------- lost passwords

/** Asks for a reset link by mail. */
function showLostPassword() {
  const error = h('p', { class: 'form-error', role: 'alert' });
  const email = /** @type {HTMLInputElement} */ (h('input', { id: 'lost-email', type: 'email', autocomplete: 'email', required: true }));
  const form = h('form', {
    class: 'login', 'aria-labelledby': 'lost-title',
    onsubmit: async (e) => {
      e.preventDefault();
      try {
        await api.post('/api/users/request-lost-password', { email: email.value.trim() });
        showLogin('If an account has that address, a link to choose a new password is on its way. It works for an hour.');
      } catch (err) {
        replace(error, err instanceof api.ApiError ? err.message : String(err));
      }
    },
  },
  h('h1', { id: 'lost-title' }, 'Forgot your password?'),
  h('p', {}, 'Enter the email address of your account and we will mail you a link to choose a new password.'),
  h('label', { for: 'lost-email' }, 'Email'), email,
  error,
  h('div', { class: 'row' },
    h('button', { type: 'submit' }, 'Send the link'),
    h('button', { type: 'button', class: 'secondary', onclick: () => showLogin() }, 'Back to login')));
  replace(app, form);
  email.focus();
}

/**
 * A reset link (`#reset=TOKEN`): choose a new password.
 * @param {string} token
 */
function showReset(token) {
  const error = h('p', { class: 'form-error', role: 'alert' });
  const password = /** @type {HTMLInputElement} */ (h('input', { id: 'reset-password', type: 'password', autocomplete: 'new-password', required: true }));
  const again = /** @type {HTMLInputElement} */ (h('input', { id: 'reset-again', type: 'password', autocomplete: 'new-password', required: true }));
  const form = h('form', {
    class: 'login', 'aria-labelledby': 'reset-title',
    onsubmit: async (e) => {
      e.preventDefault();
      if (password.value !== again.value) { replace(error, 'The two passwords differ.'); return; }
      try {
        await api.post('/api/users/reset-password', { token, password: password.value });
        history.replaceState(null, '', location.pathname);
        api.session.set(null);
        state.me = null;
        showLogin('Your password was changed and every session ended. Log in with the new password.');
      } catch (err) {
        replace(error, err instanceof api.ApiError ? err.message : String(err));
      }
    },
  },
  h('h1', { id: 'reset-title' }, 'Choose a new password'),
  h('label', { for: 'reset-password' }, 'New password (at least 6 characters)'), password,
  h('label', { for: 'reset-again' }, 'The same again'), again,
  error,
  h('button', { type: 'submit' }, 'Set the password'));
  replace(app, form);
  password.focus();
}

// ---------------------------------------------------------------- login

/** @param {string} [notice] */
function showLogin(notice) {
  const error = h('p', { class: 'form-error', role: 'alert' });
  const username = h('input', { id: 'username', name: 'username', autocomplete: 'username', required: true });
  const password = h('input', { id: 'password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const remember = h('input', { id: 'remember', name: 'remember', type: 'checkbox', checked: true });
  const totp = /** @type {HTMLInputElement} */ (h('input', {
    id: 'totp', name: 'totp', autocomplete: 'one-time-code', inputmode: 'numeric', maxlength: 12,
  }));
  // Shown once the server says this account needs a two-factor code.
  const totpField = h('div', { class: 'stack', hidden: true },
    h('label', { for: 'totp' }, 'Two-factor code (or a recovery code)'), totp);
  /** @param {'login' | 'register'} mode */
  const submit = async (mode) => {
    const name = /** @type {HTMLInputElement} */ (username).value.trim();
    const pass = /** @type {HTMLInputElement} */ (password).value;
    const rememberMe = /** @type {HTMLInputElement} */ (remember).checked;
    try {
      if (mode === 'register') await api.post('/api/users', { username: name, password: pass });
      /** @type {Record<string, unknown>} */
      const body = { username: name, password: pass, rememberMe };
      if (!totpField.hidden && totp.value.trim()) body.totp = totp.value.trim();
      const { sessionID } = await api.post('/api/sessions', body);
      api.session.set(sessionID);
      const { user } = await api.get(`/api/sessions/${sessionID}`);
      state.me = user;
      await enterChat();
    } catch (e) {
      if (e instanceof api.ApiError && e.details.totp) {
        totpField.hidden = false;
        totp.value = '';
        totp.focus();
        replace(error, e.details.totp === 'required' ? 'Enter the code from your authenticator app.' : e.message);
        return;
      }
      replace(error, e instanceof api.ApiError ? e.message : String(e));
    }
  };
  const form = h('form', {
    class: 'login', 'aria-labelledby': 'login-title',
    onsubmit: (e) => { e.preventDefault(); submit('login'); },
  },
  h('h1', { id: 'login-title' }, state.serverName),
  notice ? h('p', { role: 'status' }, notice) : null,
  h('label', { for: 'username' }, 'Username'), username,
  h('label', { for: 'password' }, 'Password'), password,
  totpField,
  h('label', { class: 'check' }, remember, ' Keep me logged in for 30 days'),
  error,
  h('div', { class: 'row' },
    h('button', { type: 'submit' }, 'Log in'),
    h('button', { type: 'button', class: 'secondary', onclick: () => submit('register') }, 'Register')),
  h('button', { type: 'button', class: 'link', onclick: showLostPassword }, 'Forgot your password?'),
  h('p', { class: 'fine' }, 'Guests can read public servers without an account.'),
  h('button', { type: 'button', class: 'link', onclick: () => enterChat() }, 'Continue as guest'));
  replace(app, form);
  /** @type {HTMLInputElement} */ (username).focus();
}

async function logout() {
  const id = api.session.get();
  if (id) await api.del(`/api/sessions/${id}`).catch(() => {});
  api.session.set(null);
  state.me = null;
  socket.stop();
  showLogin('You are logged out.');
}

// ---------------------------------------------------------------- chat shell

async function enterChat() {
  replace(app,
    h('div', { class: 'shell' },
      h('header', { class: 'top' },
        h('button', { class: 'icon menu', 'aria-label': 'Channels', onclick: () => document.body.classList.toggle('show-nav') }, '☰'),
        h('h1', { class: 'server-name' }, state.serverName),
        h('span', { id: 'connection', class: 'connection', role: 'status' }, 'connecting…'),
        h('form', { class: 'search', role: 'search', onsubmit: (e) => { e.preventDefault(); runSearch(); } },
          h('input', { id: 'search', type: 'search', 'aria-label': 'Search messages', placeholder: 'Search' })),
        state.me ? h('button', { class: 'secondary', id: 'dm-button', onclick: () => togglePanel('direct') }, 'Direct') : null,
        h('button', { class: 'secondary', onclick: () => togglePanel('mentions') }, 'Mentions'),
        h('button', { class: 'secondary', onclick: () => togglePanel('pins') }, 'Pins'),
        h('button', { class: 'secondary', onclick: () => togglePanel('users') }, 'People'),
        state.me ? h('button', { class: 'secondary', id: 'admin-button', 'aria-pressed': 'false', onclick: toggleAdmin }, 'Server') : null,
        state.me
          ? h('button', { class: 'secondary', 'aria-label': `Account: ${state.me.username}`, onclick: () => togglePanel('account') }, state.me.username)
          : h('button', { onclick: () => showLogin() }, 'Log in'),
      ),
      h('nav', { id: 'channels', 'aria-label': 'Channels' }),
      h('section', { id: 'admin', class: 'admin', 'aria-label': 'Server administration', hidden: true }),
      h('main', { id: 'chat' },
        h('h2', { id: 'channel-title', class: 'channel-title' }, ''),
        h('ol', { id: 'messages', class: 'messages', 'aria-label': 'Messages', tabindex: '0' }),
        composer()),
      h('aside', { id: 'panel', 'aria-label': 'Side panel', hidden: true }),
    ),
    h('div', { id: 'toast', class: 'toasts' }));
  const list = /** @type {HTMLElement} */ (document.getElementById('messages'));
  list.addEventListener('scroll', onScroll, { passive: true });
  await loadAll();
  socket.start();
  const first = state.channels[0];
  const wanted = location.hash.slice(1);
  if (first) await openChannel(/^\d+$/.test(wanted) ? wanted : first.id);
}

async function loadAll() {
  const tasks = [
    api.get('/api/channels').then((r) => { state.channels = r.channels; }),
    api.get('/api/users').then((r) => { for (const u of r.users) state.users.set(u.id, u); }),
    api.get('/api/emotes').then((r) => { for (const e of r.emotes) state.emotes.set(e.shortcode, e.imageURL); }),
    api.get('/api/roles').then((r) => { for (const role of r.roles) state.roles.set(role.id, role); }),
  ];
  if (state.me) {
    tasks.push(api.get(`/api/users/${state.me.id}/mentions?limit=50`).then((r) => { state.mentions = r.mentions; }));
    tasks.push(loadGranted());
    tasks.push(loadConversations());
  }
  await Promise.all(tasks.map((t) => t.catch(showError)));
  drawChannels();
}

/**
 * @param {'connecting' | 'open' | 'closed'} connection
 * @param {boolean} reconnected
 */
async function onConnection(connection, reconnected) {
  state.connection = connection;
  const el = document.getElementById('connection');
  if (el) {
    el.textContent = { connecting: 'connecting…', open: 'connected', closed: 'offline — reconnecting' }[connection];
    el.dataset.state = connection;
  }
  if (reconnected) {
    // The newest message known before the gap: live events may arrive while loadAll runs,
    // and must not move the point the backfill starts from.
    const since = state.messages.length ? state.messages[state.messages.length - 1].id : null;
    await loadAll();
    await backfill(since);
  }
}

// ---------------------------------------------------------------- administration

async function loadGranted() {
  if (!state.me) return;
  state.granted = (await api.get(`/api/users/${state.me.id}/permissions`)).permissions;
}

function toggleAdmin() {
  state.adminOpen = !state.adminOpen;
  const admin = /** @type {HTMLElement} */ (document.getElementById('admin'));
  const chat = /** @type {HTMLElement} */ (document.getElementById('chat'));
  admin.hidden = !state.adminOpen;
  chat.hidden = state.adminOpen;
  document.getElementById('admin-button')?.setAttribute('aria-pressed', String(state.adminOpen));
  if (state.adminOpen) redrawAdmin();
}

/** @type {ReturnType<typeof setTimeout> | undefined} */
let adminTimer;

/** Whether the admin view redraws once its field loses focus. */
let adminRedrawWaiting = false;

/** Redraws the admin view soon (events come in bursts), with fresh permissions. */
function redrawAdmin() {
  if (!state.adminOpen) return;
  clearTimeout(adminTimer);
  adminTimer = setTimeout(drawAdminNow, 50);
}

/**
 * Redraws the admin view now, unless one of its fields has focus: then the redraw waits for
 * the field to lose it, so that live events never wipe what someone is typing.
 */
async function drawAdminNow() {
  await loadGranted().catch(showError);
  const { drawAdmin, adminBusy } = await admin();
  const view = document.getElementById('admin');
  // An open editing form is redrawn when it is saved or cancelled.
  if (!view || !state.adminOpen || adminBusy()) return;
  const active = document.activeElement;
  if (active && view.contains(active) && active.matches('input, textarea, select')) {
    if (!adminRedrawWaiting) {
      adminRedrawWaiting = true;
      active.addEventListener('blur', () => { adminRedrawWaiting = false; redrawAdmin(); }, { once: true });
    }
    return;
  }
  await drawAdmin(view, adminContext());
}

/** What the admin view needs of the client's state. */
function adminContext() {
  return {
    me: state.me,
    granted: state.granted,
    channels: state.channels,
    users: state.users,
    emotes: state.emotes,
    serverName: state.serverName,
    toast,
  };
}

// ---------------------------------------------------------------- channels

function drawChannels() {
  const nav = document.getElementById('channels');
  if (!nav) return;
  replace(nav, h('ul', {}, state.channels.map((c) => {
    const unread = c.unreadMessageCount ?? 0;
    const mentionCount = mentionsIn(c);
    const current = c.id === state.channelId;
    return h('li', {},
      h('a', {
        href: `#${c.id}`, class: unread ? 'channel unread' : 'channel', 'aria-current': current ? 'page' : null,
        onclick: (e) => { e.preventDefault(); openChannel(c.id); },
      }, `# ${c.name}`,
      mentionCount ? h('span', { class: 'badge mention-badge', 'aria-label': `${mentionCount} mentions` }, `@${mentionCount}`) : null,
      unread ? h('span', { class: 'badge', 'aria-label': `${unread} unread` }, unread >= 200 ? '200+' : String(unread)) : null));
  })));
}

/** Unread mentions of me in a channel. @param {Channel} c */
function mentionsIn(c) {
  const oldest = c.oldestUnreadMessageID;
  if (!oldest) return 0;
  return state.mentions.filter((m) => m.channelID === c.id && !idLess(m.id, oldest)).length;
}

/** @param {string} id */
async function openChannel(id) {
  const channel = state.channels.find((c) => c.id === id) ?? state.channels[0];
  if (!channel) return;
  state.channelId = channel.id;
  state.editing = null;
  history.replaceState(null, '', `#${channel.id}`);
  document.body.classList.remove('show-nav');
  const title = document.getElementById('channel-title');
  if (title) title.textContent = `# ${channel.name}`;
  drawChannels();
  state.messages = [];
  const firstUnread = channel.oldestUnreadMessageID ?? null;
  try {
    const { messages } = await api.get(`/api/channels/${channel.id}/messages?limit=${PAGE}`);
    if (state.channelId !== channel.id) return;
    state.messages = messages;
    state.hasOlder = messages.length === PAGE;
    state.hasNewer = false;
    // Page back to the first unread message (at most 200 are counted unread).
    while (firstUnread && state.hasOlder && state.messages.length < 250
      && !state.messages.some((m) => m.id === firstUnread)) {
      await loadOlder(false);
    }
    drawMessages();
    const target = firstUnread && document.getElementById(`m-${firstUnread}`);
    if (target) {
      target.scrollIntoView({ block: 'center' });
      target.classList.add('first-unread');
    } else {
      scrollToBottom();
    }
    markRead();
  } catch (e) {
    replace(/** @type {HTMLElement} */ (document.getElementById('messages')),
      h('li', { class: 'notice' }, e instanceof api.ApiError ? e.message : String(e)));
  }
}

async function markRead() {
  const channel = state.channels.find((c) => c.id === state.channelId);
  if (!state.me || !channel || !channel.unreadMessageCount || state.hasNewer || document.hidden) return;
  try {
    await api.post(`/api/channels/${channel.id}/mark-read`);
    channel.unreadMessageCount = 0;
    channel.oldestUnreadMessageID = null;
    drawChannels();
  } catch (e) {
    showError(e);
  }
}

// ---------------------------------------------------------------- history

/** @param {boolean} [draw] */
async function loadOlder(draw = true) {
  if (state.loading || !state.hasOlder || !state.messages.length) return;
  state.loading = true;
  const channel = state.channelId;
  try {
    const oldest = state.messages[0].id;
    const { messages } = await api.get(`/api/channels/${channel}/messages?before=${oldest}&limit=${PAGE}`);
    if (channel !== state.channelId) return;
    state.hasOlder = messages.length === PAGE;
    state.messages = [...messages, ...state.messages];
    if (state.messages.length > WINDOW) {
      state.messages = state.messages.slice(0, WINDOW);
      state.hasNewer = true;
    }
    if (draw) keepScroll(() => drawMessages(), 'top');
  } finally {
    state.loading = false;
  }
}

async function loadNewer() {
  if (state.loading || !state.hasNewer || !state.messages.length) return;
  state.loading = true;
  const channel = state.channelId;
  try {
    const newest = state.messages[state.messages.length - 1].id;
    const { messages } = await api.get(`/api/channels/${channel}/messages?after=${newest}&limit=${PAGE}`);
    if (channel !== state.channelId) return;
    state.hasNewer = messages.length === PAGE;
    state.messages = [...state.messages, ...messages];
    if (state.messages.length > WINDOW) {
      state.messages = state.messages.slice(state.messages.length - WINDOW);
      state.hasOlder = true;
    }
    keepScroll(() => drawMessages(), 'bottom');
    if (!state.hasNewer) markRead();
  } finally {
    state.loading = false;
  }
}

/** After a reconnect: everything after the newest message shown, page by page. */
/** @param {string | null} [since] the newest message shown before the connection was lost */
async function backfill(since) {
  if (!state.channelId || state.hasNewer || !state.messages.length) {
    if (state.channelId && !state.messages.length) await openChannel(state.channelId);
    return;
  }
  const atBottom = isAtBottom();
  const channel = state.channelId;
  let after = since ?? state.messages[state.messages.length - 1].id;
  for (let page = 0; page < 20; page++) {
    const { messages } = await api.get(`/api/channels/${channel}/messages?after=${after}&limit=${PAGE}`);
    if (channel !== state.channelId) return;
    const known = new Set(state.messages.map((m) => m.id));
    state.messages.push(...messages.filter((/** @type {Message} */ m) => !known.has(m.id)));
    if (messages.length < PAGE) break;
    after = messages[messages.length - 1].id;
  }
  // Live messages that arrived during the backfill may sit before older ones it found.
  state.messages.sort((a, b) => (idLess(a.id, b.id) ? -1 : idLess(b.id, a.id) ? 1 : 0));
  if (state.messages.length > WINDOW) {
    state.messages = state.messages.slice(state.messages.length - WINDOW);
    state.hasOlder = true;
  }
  drawMessages();
  if (atBottom) scrollToBottom();
}

function onScroll() {
  const list = /** @type {HTMLElement} */ (document.getElementById('messages'));
  if (list.scrollTop < 300) loadOlder();
  if (list.scrollHeight - list.scrollTop - list.clientHeight < 300) {
    if (state.hasNewer) loadNewer();
    else markRead();
  }
}

function isAtBottom() {
  const list = document.getElementById('messages');
  return !list || list.scrollHeight - list.scrollTop - list.clientHeight < 40;
}

function scrollToBottom() {
  const list = document.getElementById('messages');
  if (list) list.scrollTop = list.scrollHeight;
}

/**
 * Redraws while keeping the message at the given edge where it was on screen.
 * @param {() => void} draw
 * @param {'top' | 'bottom'} edge
 */
function keepScroll(draw, edge) {
  const list = /** @type {HTMLElement} */ (document.getElementById('messages'));
  const anchor = edge === 'top' ? list.querySelector('li.message') : list.querySelector('li.message:last-of-type');
  const id = anchor?.id;
  const offset = anchor ? anchor.getBoundingClientRect().top : 0;
  draw();
  const again = id && document.getElementById(id);
  if (again) list.scrollTop += again.getBoundingClientRect().top - offset;
}

// ---------------------------------------------------------------- messages

function drawMessages() {
  const list = document.getElementById('messages');
  if (!list) return;
  replace(list,
    state.hasOlder ? h('li', { class: 'notice' }, 'Loading older messages…') : null,
    !state.hasOlder && state.channelId ? h('li', { class: 'notice' }, 'This is the start of the channel.') : null,
    state.messages.map(messageNode));
}

/** @param {Message} m */
function messageNode(m) {
  const mine = state.me && m.authorID === state.me.id;
  const author = m.authorID ? state.users.get(m.authorID) : null;
  const name = m.chatbox?.name ?? author?.username ?? m.authorUsername ?? 'system';
  const body = h('div', { class: 'text' }, render(m.text, renderContext()));
  const classes = ['message', m.type === 'system' ? 'system' : '',
    mentions(m.text, state.me?.id ?? null) ? 'mentions-me' : ''].filter(Boolean).join(' ');
  const li = h('li', { id: `m-${m.id}`, class: classes },
    h('div', { class: 'meta' },
      h('button', { class: 'author link', onclick: () => m.authorID && showUser(m.authorID) }, name),
      m.chatbox ? h('span', { class: 'tag' }, `bot of ${m.authorUsername}`) : null,
      author?.bot ? h('span', { class: 'tag' }, 'plugin') : null,
      h('time', { datetime: new Date(m.dateCreated * 1000).toISOString() }, formatTime(m.dateCreated)),
      m.dateEdited ? h('span', { class: 'edited' }, '(edited)') : null,
      m.pinned ? h('span', { class: 'tag' }, 'pinned') : null),
    state.editing === m.id ? editor(m) : body,
    h('div', { class: 'actions' },
      mine ? h('button', { class: 'link', onclick: () => startEdit(m.id) }, 'Edit') : null,
      mine ? h('button', { class: 'link', onclick: () => deleteMessage(m) }, 'Delete') : null,
      state.me ? h('button', { class: 'link', onclick: () => togglePin(m) }, m.pinned ? 'Unpin' : 'Pin') : null));
  return li;
}

/** @param {Message} m */
function editor(m) {
  const area = /** @type {HTMLTextAreaElement} */ (h('textarea', { class: 'edit', 'aria-label': 'Edit message', rows: 2 }));
  area.value = m.text;
  const save = async () => {
    try {
      await api.patch(`/api/messages/${m.id}`, { text: area.value });
      state.editing = null;
      drawMessages();
    } catch (e) {
      showError(e);
    }
  };
  area.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); save(); }
    if (e.key === 'Escape') { state.editing = null; drawMessages(); focusComposer(); }
  });
  setTimeout(() => area.focus());
  return h('div', { class: 'editor' }, area, h('p', { class: 'fine' }, 'Enter to save, Escape to cancel'));
}

/** @param {string} id */
function startEdit(id) {
  state.editing = id;
  keepScroll(drawMessages, 'bottom');
}

/** @param {Message} m */
async function deleteMessage(m) {
  if (!confirm('Delete this message?')) return;
  try {
    await api.del(`/api/messages/${m.id}`);
  } catch (e) {
    showError(e);
  }
}

/** @param {Message} m */
async function togglePin(m) {
  try {
    if (m.pinned) await api.del(`/api/channels/${m.channelID}/pins/${m.id}`);
    else await api.post(`/api/channels/${m.channelID}/pins`, { messageID: m.id });
  } catch (e) {
    showError(e);
  }
}

// ---------------------------------------------------------------- composer

function composer() {
  const input = /** @type {HTMLTextAreaElement} */ (h('textarea', {
    id: 'composer', rows: 1, 'aria-label': 'Message', placeholder: 'Message',
  }));
  const suggestions = h('ul', { id: 'suggestions', class: 'suggestions', role: 'listbox', hidden: true });
  const progress = h('progress', { id: 'upload-progress', max: 1, value: 0, hidden: true, 'aria-label': 'Upload progress' });
  const file = /** @type {HTMLInputElement} */ (h('input', { type: 'file', accept: 'image/*', hidden: true, 'aria-label': 'Image file' }));
  file.addEventListener('change', () => { if (file.files?.[0]) upload(file.files[0]); file.value = ''; });
  input.addEventListener('keydown', (e) => {
    if (!suggestions.hidden && (e.key === 'Enter' || e.key === 'Tab')) {
      const first = suggestions.querySelector('button');
      if (first) { e.preventDefault(); first.click(); return; }
    }
    if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); send(); }
    if (e.key === 'ArrowUp' && !input.value && state.me) {
      const last = [...state.messages].reverse().find((m) => m.authorID === state.me?.id);
      if (last) { e.preventDefault(); startEdit(last.id); }
    }
    if (e.key === 'Escape') suggestions.hidden = true;
  });
  input.addEventListener('input', () => suggest(input, suggestions));
  input.addEventListener('paste', (e) => {
    const item = [...(e.clipboardData?.files ?? [])].find((f) => f.type.startsWith('image/'));
    if (item) { e.preventDefault(); upload(item); }
  });
  const form = h('form', { class: 'composer', onsubmit: (e) => { e.preventDefault(); send(); } },
    suggestions,
    h('button', { type: 'button', class: 'icon', 'aria-label': 'Upload an image', onclick: () => file.click() }, '+'),
    file, input,
    h('button', { type: 'button', class: 'icon', 'aria-label': 'Emotes', onclick: () => togglePanel('emotes') }, '☺'),
    h('button', { type: 'submit' }, 'Send'),
    progress);
  form.addEventListener('dragover', (e) => e.preventDefault());
  form.addEventListener('drop', (e) => {
    const dropped = [...(/** @type {DragEvent} */ (e).dataTransfer?.files ?? [])].find((f) => f.type.startsWith('image/'));
    if (dropped) { e.preventDefault(); upload(dropped); }
  });
  return form;
}

function focusComposer() {
  document.getElementById('composer')?.focus();
}

async function send() {
  const input = /** @type {HTMLTextAreaElement} */ (document.getElementById('composer'));
  const text = input.value;
  if (!text.trim() || !state.channelId) return;
  if (!state.me) { toast('Log in to send messages.'); return; }
  try {
    // A command's private answer arrives as a `plugin/tell` event, shown by `onEvent`.
    await api.post('/api/messages', { channelID: state.channelId, text });
    input.value = '';
    if (state.hasNewer) await openChannel(state.channelId);
  } catch (e) {
    showError(e);
  }
}

/** @param {File | Blob} fileToSend */
async function upload(fileToSend) {
  const progress = /** @type {HTMLProgressElement} */ (document.getElementById('upload-progress'));
  progress.hidden = false;
  try {
    const path = await api.uploadImage(fileToSend, (f) => { progress.value = f; });
    const input = /** @type {HTMLTextAreaElement} */ (document.getElementById('composer'));
    input.value += `${input.value ? ' ' : ''}![image](${new URL(path, location.href).href})`;
    input.focus();
  } catch (e) {
    showError(e);
  } finally {
    progress.hidden = true;
    progress.value = 0;
  }
}

/**
 * `@` autocomplete: users whose name starts with what follows the `@`.
 * @param {HTMLTextAreaElement} input
 * @param {HTMLElement} box
 */
function suggest(input, box) {
  const before = input.value.slice(0, input.selectionStart ?? input.value.length);
  const match = /(^|\s)@([\w-]{0,32})$/.exec(before);
  if (!match) { box.hidden = true; return; }
  const prefix = match[2].toLowerCase();
  const found = [...state.users.values()].filter((u) => u.username.toLowerCase().startsWith(prefix)).slice(0, 8);
  if (!found.length) { box.hidden = true; return; }
  replace(box, found.map((u) => h('li', { role: 'option' }, h('button', {
    type: 'button',
    onclick: () => {
      const start = before.length - match[2].length - 1;
      input.value = `${input.value.slice(0, start)}<@${u.id}> ${input.value.slice(before.length)}`;
      box.hidden = true;
      input.focus();
    },
  }, `@${u.username}`))));
  box.hidden = false;
}

/**
 * A private answer (plugin/tell, chatbox/tell, a \chatbox reply), shown only here.
 * @param {string} from
 * @param {string} text
 */
function privateNote(from, text) {
  const list = document.getElementById('messages');
  if (!list) return;
  const atBottom = isAtBottom();
  list.appendChild(h('li', { class: 'message private', role: 'note' },
    h('div', { class: 'meta' }, h('strong', {}, from), h('span', { class: 'tag' }, 'only you can see this')),
    h('div', { class: 'text' }, render(text, renderContext()))));
  if (atBottom) scrollToBottom();
}

// ---------------------------------------------------------------- panels

/** @type {string | null} */
let openPanel = null;

/** What the People panel's search box holds. */
let peopleQuery = '';

/** @param {string} name */
function togglePanel(name) {
  const panel = /** @type {HTMLElement} */ (document.getElementById('panel'));
  if (openPanel === name) {
    openPanel = null;
    panel.hidden = true;
    return;
  }
  openPanel = name;
  panel.hidden = false;
  drawPanel();
}

async function drawPanel() {
  const panel = document.getElementById('panel');
  if (!panel || !openPanel) return;
  const close = h('button', { class: 'icon close', 'aria-label': 'Close panel', onclick: () => togglePanel(/** @type {string} */ (openPanel)) }, '×');
  if (openPanel === 'users') {
    const list = h('ul', { class: 'user-list', 'aria-live': 'polite' });
    const search = /** @type {HTMLInputElement} */ (h('input', {
      id: 'user-search', type: 'search', 'aria-label': 'Find people', placeholder: 'Find people', value: peopleQuery,
    }));
    const fill = async () => {
      const query = peopleQuery.trim();
      /** @type {User[]} */
      let shown;
      if (query) {
        try {
          shown = (await api.get(`/api/users?name=${encodeURIComponent(query)}&limit=50`)).users;
        } catch (e) {
          replace(list, h('li', {}, e instanceof Error ? e.message : String(e)));
          return;
        }
        if (query !== peopleQuery.trim()) return;
      } else {
        shown = [...state.users.values()].sort((a, b) => Number(b.online) - Number(a.online) || a.username.localeCompare(b.username));
      }
      replace(list, shown.length ? shown.map((u) =>
        h('li', {}, h('button', { class: 'link', onclick: () => showUser(u.id) },
          h('span', { class: `dot ${presence(u)}`, 'aria-label': presence(u) }),
          u.username))) : h('li', {}, 'Nobody by that name.'));
    };
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    let timer;
    search.addEventListener('input', () => {
      peopleQuery = search.value;
      clearTimeout(timer);
      timer = setTimeout(fill, 200);
    });
    replace(panel, close, h('h2', {}, 'People'), search, list);
    await fill();
  } else if (openPanel === 'pins') {
    replace(panel, close, h('h2', {}, 'Pinned'), h('p', {}, 'Loading…'));
    try {
      const { pins } = await api.get(`/api/channels/${state.channelId}/pins`);
      replace(panel, close, h('h2', {}, 'Pinned'),
        pins.length ? h('ol', { class: 'messages compact' }, pins.map(messageNode)) : h('p', {}, 'No pinned messages.'));
    } catch (e) {
      replace(panel, close, h('h2', {}, 'Pinned'), h('p', {}, String(e instanceof Error ? e.message : e)));
    }
  } else if (openPanel === 'mentions') {
    replace(panel, close, h('h2', {}, 'Mentions'),
      state.mentions.length
        ? h('ol', { class: 'messages compact' }, state.mentions.map((m) => h('li', { class: 'message' },
          h('div', { class: 'meta' }, h('a', { href: `#${m.channelID}`, onclick: (e) => { e.preventDefault(); openChannel(m.channelID); } },
            `# ${state.channels.find((c) => c.id === m.channelID)?.name ?? 'channel'}`), ` ${m.authorUsername ?? ''} `,
          h('time', {}, formatTime(m.dateCreated))),
          h('div', { class: 'text' }, render(m.text, renderContext())))))
        : h('p', {}, state.me ? 'Nobody has mentioned you yet.' : 'Log in to see your mentions.'));
  } else if (openPanel === 'emotes') {
    replace(panel, close, h('h2', {}, 'Emotes'),
      state.emotes.size
        ? h('ul', { class: 'emote-grid' }, [...state.emotes].map(([code, url]) => h('li', {},
          h('button', { class: 'icon', 'aria-label': `:${code}:`, title: `:${code}:`, onclick: () => insert(`:${code}:`) },
            h('img', { src: safeUrl(url) ?? '', alt: '' })))))
        : h('p', {}, 'This server has no emotes yet.'));
  } else if (openPanel === 'direct') {
    replace(panel, close, ...directPanel());
    if (dm.open) scrollDm();
  } else if (openPanel === 'search') {
    replace(panel, close, h('h2', {}, 'Search'), searchResults());
  } else if (openPanel === 'account') {
    replace(panel, close, accountPanel());
  }
}

/** @param {string} text */
function insert(text) {
  const input = /** @type {HTMLTextAreaElement} */ (document.getElementById('composer'));
  input.value += text;
  input.focus();
}

function accountPanel() {
  const me = /** @type {User} */ (state.me);
  const email = h('input', { id: 'acc-email', type: 'email', value: me.email ?? '', autocomplete: 'email' });
  const flair = h('input', { id: 'acc-flair', value: me.flair ?? '', maxlength: 50 });
  const oldPass = h('input', { id: 'acc-old', type: 'password', autocomplete: 'current-password' });
  const newPass = h('input', { id: 'acc-new', type: 'password', autocomplete: 'new-password' });
  const value = (/** @type {HTMLElement} */ el) => /** @type {HTMLInputElement} */ (el).value;
  const save = async () => {
    /** @type {Record<string, unknown>} */
    const body = { email: value(email) || null, flair: value(flair) || null };
    if (value(newPass)) body.password = { old: value(oldPass), new: value(newPass) };
    try {
      await api.patch(`/api/users/${me.id}`, body);
      toast('Saved.', 'info');
    } catch (e) {
      showError(e);
    }
  };
  const notifications = h('input', { id: 'acc-notify', type: 'checkbox', checked: state.notify });
  notifications.addEventListener('change', async () => {
    const on = /** @type {HTMLInputElement} */ (notifications).checked;
    if (on && 'Notification' in window && Notification.permission !== 'granted') {
      await Notification.requestPermission();
    }
    state.notify = on;
    localStorage.setItem('decentd.notify', on ? 'on' : 'off');
  });
  const form = h('form', { class: 'account', onsubmit: (e) => { e.preventDefault(); save(); } },
    h('h2', {}, 'Account'),
    h('label', { for: 'acc-email' }, 'Email (for your avatar)'), email,
    h('label', { for: 'acc-flair' }, 'Flair'), flair,
    h('label', { for: 'acc-old' }, 'Current password'), oldPass,
    h('label', { for: 'acc-new' }, 'New password'), newPass,
    h('label', { class: 'check' }, notifications, ' Desktop notifications for mentions'),
    h('div', { class: 'row' }, h('button', { type: 'submit' }, 'Save'),
      h('button', { type: 'button', class: 'secondary', onclick: logout }, 'Log out')));
  // Outside the profile form: Enter in a two-factor field must not save the profile.
  return h('div', {}, form, twoFactorSection(me));
}

/**
 * Two-factor login in the account panel: set it up (password, QR code, first code, recovery
 * codes), replace the recovery codes, or turn it off.
 * @param {User} me
 */
function twoFactorSection(me) {
  // Its heading from the start: the label must name something before the first answer.
  const section = h('section', { class: 'two-factor', 'aria-labelledby': 'tf-title' },
    h('h3', { id: 'tf-title' }, 'Two-factor login'), h('p', {}, 'Loading…'));
  const path = `/api/users/${me.id}/two-factor`;
  const error = h('p', { class: 'form-error', role: 'alert' });
  const input = (/** @type {string} */ id, /** @type {string} */ label, /** @type {Record<string, string>} */ attrs = {}) => {
    const el = /** @type {HTMLInputElement} */ (h('input', { id, ...attrs }));
    return { el, nodes: [h('label', { for: id }, label), el] };
  };
  /** @param {unknown} e */
  const fail = (e) => replace(error, e instanceof api.ApiError ? e.message : String(e));
  /** @param {string[]} codes @param {string} intro */
  const showCodes = (codes, intro) => replace(section,
    h('h3', { id: 'tf-title' }, 'Recovery codes'),
    h('p', {}, intro),
    h('ol', { class: 'recovery-codes', 'aria-label': 'Recovery codes' }, codes.map((c) => h('li', {}, h('code', {}, c)))),
    h('button', { type: 'button', onclick: () => navigator.clipboard?.writeText(codes.join('\n')).then(() => toast('Copied.', 'info')) }, 'Copy them'),
    h('button', { type: 'button', class: 'secondary', onclick: draw }, 'I have saved them'));
  const enroll = () => {
    const pass = input('tf-password', 'Your password', { type: 'password', autocomplete: 'current-password' });
    replace(section, h('h3', { id: 'tf-title' }, 'Set up two-factor login'),
      h('p', {}, 'Confirm your password to create a secret for your authenticator app.'),
      ...pass.nodes, error,
      h('div', { class: 'row' },
        h('button', { type: 'button', onclick: async () => {
          try {
            const { enrollment } = await api.post(path, { password: pass.el.value });
            scan(enrollment);
          } catch (e) { fail(e); }
        } }, 'Continue'),
        h('button', { type: 'button', class: 'secondary', onclick: draw }, 'Cancel')));
    pass.el.focus();
  };
  /** @param {{secret: string, uri: string, qrSVG: string}} enrollment */
  const scan = (enrollment) => {
    const code = input('tf-code', 'The 6-digit code the app shows', { autocomplete: 'one-time-code', inputmode: 'numeric', maxlength: '6' });
    // The SVG comes from the server; shown as an image, never as markup.
    const qr = h('img', { class: 'qr', alt: 'QR code of the secret', src: `data:image/svg+xml;base64,${btoa(enrollment.qrSVG)}` });
    replace(section, h('h3', { id: 'tf-title' }, 'Scan the code'),
      h('p', {}, 'Scan it with an authenticator app, or type the secret in.'),
      qr, h('p', {}, 'Secret: ', h('code', { class: 'secret' }, enrollment.secret)),
      ...code.nodes, error,
      h('div', { class: 'row' },
        h('button', { type: 'button', onclick: async () => {
          try {
            const { recoveryCodes } = await api.post(`${path}/confirm`, { code: code.el.value.trim() });
            toast('Two-factor login is on.', 'info');
            showCodes(recoveryCodes, 'Two-factor login is on. Keep these codes somewhere safe: each logs you in once if you lose your device. They are shown only now.');
          } catch (e) { fail(e); }
        } }, 'Turn on'),
        h('button', { type: 'button', class: 'secondary', onclick: draw }, 'Cancel')));
    code.el.focus();
  };
  /** @param {'disable' | 'recovery-codes'} action */
  const confirmAction = (action) => {
    const pass = input('tf-password', 'Your password', { type: 'password', autocomplete: 'current-password' });
    const code = input('tf-code', 'A current code or a recovery code', { autocomplete: 'one-time-code' });
    replace(section, h('h3', { id: 'tf-title' }, action === 'disable' ? 'Turn off two-factor login' : 'New recovery codes'),
      ...pass.nodes, ...code.nodes, error,
      h('div', { class: 'row' },
        h('button', { type: 'button', onclick: async () => {
          try {
            const answer = await api.post(`${path}/${action}`, { password: pass.el.value, code: code.el.value.trim() });
            if (action === 'disable') { toast('Two-factor login is off.', 'info'); draw(); } else showCodes(answer.recoveryCodes, 'Your old recovery codes no longer work. Keep these somewhere safe.');
          } catch (e) { fail(e); }
        } }, action === 'disable' ? 'Turn off' : 'Replace the codes'),
        h('button', { type: 'button', class: 'secondary', onclick: draw }, 'Cancel')));
    pass.el.focus();
  };
  async function draw() {
    replace(error);
    try {
      const { twoFactor } = await api.get(path);
      replace(section, h('h3', { id: 'tf-title' }, 'Two-factor login'),
        twoFactor.enabled
          ? [h('p', {}, `On. ${twoFactor.recoveryCodesLeft} recovery codes left.`),
            h('div', { class: 'row' },
              h('button', { type: 'button', class: 'secondary', onclick: () => confirmAction('recovery-codes') }, 'New recovery codes'),
              h('button', { type: 'button', class: 'secondary', onclick: () => confirmAction('disable') }, 'Turn off'))]
          : [h('p', {}, 'Off. With it on, logging in also needs a code from an app on your phone.'),
            h('button', { type: 'button', onclick: enroll }, 'Set up two-factor login')]);
    } catch (e) {
      replace(section, h('h3', { id: 'tf-title' }, 'Two-factor login'), h('p', {}, e instanceof Error ? e.message : String(e)));
    }
  }
  draw();
  return section;
}

/** What a user shows: online, away, busy or offline (servers without statuses: online or offline). @param {User} u */
function presence(u) {
  return u.online ? (u.status && u.status !== 'offline' ? u.status : 'online') : 'offline';
}

/** @param {string} id */
async function showUser(id) {
  const panel = /** @type {HTMLElement} */ (document.getElementById('panel'));
  openPanel = 'user';
  shownUser = id;
  panel.hidden = false;
  try {
    const [{ user }, { roles }] = await Promise.all([api.get(`/api/users/${id}`), api.get('/api/roles')]);
    const ordinary = roles.filter((/** @type {{id: string}} */ r) => !r.id.startsWith('_'));
    const avatar = safeUrl(user.avatarURL);
    replace(panel,
      h('button', { class: 'icon close', 'aria-label': 'Close panel', onclick: () => togglePanel('user') }, '×'),
      h('div', { class: 'card' },
        avatar ? h('img', { class: 'avatar', src: avatar, alt: '' }) : null,
        h('h2', {}, user.username),
        state.me && user.id !== state.me.id
          ? h('button', { type: 'button', onclick: () => openConversation(user.id) }, `Message ${user.username}`) : null,
        user.flair ? h('p', { class: 'flair' }, user.flair) : null,
        h('p', {}, presence(user)),
        state.me && (state.granted.grantRoles || state.granted.manageRoles)
          ? (await admin()).roleControls(user, ordinary, adminContext(), () => showUser(id))
          : h('ul', { class: 'roles', 'aria-label': 'Roles' },
            user.roleIDs.map((/** @type {string} */ r) => h('li', {}, state.roles.get(r)?.name ?? r)))));
  } catch (e) {
    showError(e);
  }
}

/** The user card on show, redrawn when that user changes. @type {string | null} */
let shownUser = null;

// ---------------------------------------------------------------- direct messages

/**
 * @typedef {{id: string, type: 'direct', authorID: string, recipientID: string, text: string,
 *   dateCreated: number, dateEdited: number | null}} DirectMessage
 * @typedef {{userID: string, lastMessage: DirectMessage | null, unreadCount: number}} Conversation
 */

/** Direct messages: the conversations, and the one open in the panel. */
const dm = {
  /** @type {Conversation[]} */
  conversations: [],
  /** The other user of the open conversation. @type {string | null} */
  open: null,
  /** Its messages, oldest first. @type {DirectMessage[]} */
  messages: [],
  /** Whether older messages than those shown exist. */
  hasOlder: false,
};

/** Messages fetched per page of a conversation. */
const DM_PAGE = 100;

async function loadConversations() {
  if (!state.me) return;
  dm.conversations = (await api.get(`/api/users/${state.me.id}/conversations`)).conversations;
  drawDmBadge();
}

function drawDmBadge() {
  const button = document.getElementById('dm-button');
  if (!button) return;
  const unread = dm.conversations.reduce((n, c) => n + c.unreadCount, 0);
  replace(button, 'Direct', unread ? h('span', { class: 'badge', 'aria-label': `${unread} unread` }, String(unread)) : null);
}

/** @param {string} id */
function userName(id) {
  return state.users.get(id)?.username ?? 'someone';
}

/** @param {string} userId */
async function openConversation(userId) {
  dm.open = userId;
  dm.messages = [];
  if (openPanel !== 'direct') togglePanel('direct');
  try {
    const { messages } = await api.get(`/api/users/${userId}/messages?maxItems=${DM_PAGE}`);
    if (dm.open !== userId) return;
    dm.messages = messages.reverse();
    dm.hasOlder = messages.length === DM_PAGE;
    drawPanel();
    await markDmRead(userId);
  } catch (e) {
    showError(e);
  }
}

/** Loads the page of the open conversation before the oldest message shown. */
async function olderDms() {
  const other = dm.open;
  const oldest = dm.messages[0];
  if (!other || !oldest) return;
  try {
    const { messages } = await api.get(`/api/users/${other}/messages?maxItems=${DM_PAGE}&before=${oldest.id}`);
    if (dm.open !== other) return;
    dm.messages = [...messages.reverse(), ...dm.messages];
    dm.hasOlder = messages.length === DM_PAGE;
    const list = document.getElementById('dm-messages');
    const keep = list ? list.scrollHeight - list.scrollTop : 0;
    drawPanel();
    const redrawn = document.getElementById('dm-messages');
    if (redrawn) redrawn.scrollTop = redrawn.scrollHeight - keep;
  } catch (e) {
    showError(e);
  }
}

/** @param {string} userId */
async function markDmRead(userId) {
  const c = dm.conversations.find((x) => x.userID === userId);
  if (c && !c.unreadCount) return;
  await api.post(`/api/users/${userId}/messages/mark-read`, {}).catch(showError);
}

function scrollDm() {
  const list = document.getElementById('dm-messages');
  if (list) list.scrollTop = list.scrollHeight;
}

/** @param {DirectMessage} m */
function dmNode(m) {
  const mine = m.authorID === state.me?.id;
  return h('li', { id: `dm-${m.id}`, class: mine ? 'message dm mine' : 'message dm' },
    h('div', { class: 'meta' },
      h('span', { class: 'author' }, userName(m.authorID)),
      h('time', { datetime: new Date(m.dateCreated * 1000).toISOString() }, formatTime(m.dateCreated)),
      m.dateEdited ? h('span', { class: 'edited' }, '(edited)') : null),
    h('div', { class: 'text' }, render(m.text, renderContext())),
    mine ? h('div', { class: 'actions' },
      h('button', { class: 'link', onclick: () => editDm(m) }, 'Edit'),
      h('button', { class: 'link', onclick: () => confirm('Delete this message?') && api.del(`/api/direct-messages/${m.id}`).catch(showError) }, 'Delete')) : null);
}

/** @param {DirectMessage} m */
function editDm(m) {
  const text = prompt('Edit your message', m.text);
  if (text !== null && text.trim() && text !== m.text) {
    api.patch(`/api/direct-messages/${m.id}`, { text }).catch(showError);
  }
}

/** The Direct panel: the open conversation, or the list of conversations. */
function directPanel() {
  if (dm.open) {
    const other = dm.open;
    const input = /** @type {HTMLTextAreaElement} */ (h('textarea', { id: 'dm-text', rows: 2, 'aria-label': `Message ${userName(other)}` }));
    const send = async () => {
      const text = input.value;
      if (!text.trim()) return;
      try {
        await api.post(`/api/users/${other}/messages`, { text });
        input.value = '';
      } catch (e) { showError(e); }
    };
    input.addEventListener('keydown', (e) => { if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); send(); } });
    return [
      h('h2', {}, `Direct: ${userName(other)}`),
      h('button', { type: 'button', class: 'link', onclick: () => { dm.open = null; loadConversations().then(drawPanel, showError); } }, '← All conversations'),
      dm.hasOlder ? h('button', { type: 'button', class: 'secondary', onclick: olderDms }, 'Show older messages') : null,
      h('ol', { id: 'dm-messages', class: 'messages compact', 'aria-label': `Messages with ${userName(other)}` }, dm.messages.map(dmNode)),
      h('form', { class: 'dm-composer', onsubmit: (e) => { e.preventDefault(); send(); } }, input, h('button', { type: 'submit' }, 'Send')),
    ];
  }
  return [
    h('h2', {}, 'Direct messages'),
    dm.conversations.length
      ? h('ul', { class: 'user-list', 'aria-label': 'Conversations' }, dm.conversations.map((c) =>
        h('li', {}, h('button', { class: 'link', onclick: () => openConversation(c.userID) },
          userName(c.userID),
          c.unreadCount ? h('span', { class: 'badge', 'aria-label': `${c.unreadCount} unread` }, String(c.unreadCount)) : null),
        c.lastMessage ? h('p', { class: 'fine' }, c.lastMessage.text.slice(0, 80)) : null)))
      : h('p', {}, 'No conversations yet. Open someone\'s card in People to message them.'),
  ];
}

/**
 * A direct-message event: the open conversation and the badges follow it live.
 * @param {string} evt @param {any} data
 */
function onDirect(evt, data) {
  const me = state.me?.id;
  if (evt === 'dm/read') { loadConversations().catch(showError); return; }
  const m = /** @type {DirectMessage | undefined} */ (data.message);
  const other = m ? (m.authorID === me ? m.recipientID : m.authorID) : (data.authorID === me ? data.recipientID : data.authorID);
  const showing = openPanel === 'direct' && dm.open === other;
  if (evt === 'dm/new' && m) {
    if (showing) {
      dm.messages.push(m);
      document.getElementById('dm-messages')?.append(dmNode(m));
      scrollDm();
      if (m.authorID !== me) markDmRead(other);
    } else if (m.authorID !== me) {
      toast(`${userName(m.authorID)}: ${m.text.slice(0, 80)}`, 'info');
    }
  } else if (evt === 'dm/edit' && m && showing) {
    dm.messages = dm.messages.map((x) => (x.id === m.id ? m : x));
    document.getElementById(`dm-${m.id}`)?.replaceWith(dmNode(m));
  } else if (evt === 'dm/delete' && showing) {
    dm.messages = dm.messages.filter((x) => x.id !== data.messageID);
    document.getElementById(`dm-${data.messageID}`)?.remove();
  }
  loadConversations().then(() => { if (openPanel === 'direct' && !dm.open) drawPanel(); }, showError);
}

// ---------------------------------------------------------------- search

/** The last search's results. @type {{query: string, messages: any[], error: string | null}} */
const found = { query: '', messages: [], error: null };

async function runSearch() {
  const input = /** @type {HTMLInputElement | null} */ (document.getElementById('search'));
  const query = input?.value.trim() ?? '';
  if (!query) return;
  found.query = query;
  try {
    found.messages = (await api.get(`/api/search?q=${encodeURIComponent(query)}&limit=50`)).messages;
    found.error = null;
  } catch (e) {
    found.messages = [];
    found.error = e instanceof Error ? e.message : String(e);
  }
  if (openPanel === 'search') drawPanel(); else togglePanel('search');
}

function searchResults() {
  if (found.error) return h('p', { role: 'alert' }, found.error);
  if (!found.messages.length) return h('p', {}, `Nothing found for “${found.query}”.`);
  return h('ol', { class: 'messages compact', 'aria-label': 'Search results' }, found.messages.map((m) => {
    const where = m.type === 'direct'
      ? `Direct: ${userName(m.authorID === state.me?.id ? m.recipientID : m.authorID)}`
      : `# ${state.channels.find((c) => c.id === m.channelID)?.name ?? 'channel'}`;
    return h('li', { class: 'message result' },
      h('button', {
        class: 'link', 'aria-label': `Open in ${where}: ${m.text.slice(0, 60)}`,
        onclick: () => openResult(m),
      },
      h('div', { class: 'meta' },
        h('span', { class: 'where' }, where),
        h('span', { class: 'author' }, m.type === 'direct' ? userName(m.authorID) : (m.authorUsername ?? 'system')),
        h('time', { datetime: new Date(m.dateCreated * 1000).toISOString() }, formatTime(m.dateCreated))),
      h('div', { class: 'text' }, m.text)));
  }));
}

/** Opens a search result where it was written, and shows it. @param {any} m */
async function openResult(m) {
  if (m.type === 'direct') {
    await openConversation(m.authorID === state.me?.id ? m.recipientID : m.authorID);
    document.getElementById(`dm-${m.id}`)?.classList.add('highlight');
    return;
  }
  if (state.channelId !== m.channelID) await openChannel(m.channelID);
  const node = document.getElementById(`m-${m.id}`);
  if (node) {
    node.scrollIntoView({ block: 'center' });
    node.classList.add('highlight');
  } else {
    toast('That message is further back in the channel: scroll up to it.', 'info');
  }
}

// ---------------------------------------------------------------- events

/** Events that change what the admin view shows. */
const ADMIN_EVENTS = new Set(['role/new', 'role/update', 'role/delete', 'channel/new', 'channel/update', 'channel/delete',
  'user/new', 'user/update', 'user/delete', 'emote/new', 'emote/delete', 'server-settings/update']);

/** @param {{evt: string, data: any}} event */
function onEvent(event) {
  handle(event);
  if (ADMIN_EVENTS.has(event.evt)) redrawAdmin();
}

/** @param {{evt: string, data: any}} event */
function handle({ evt, data }) {
  switch (evt) {
    case 'message/new': return onNewMessage(data.message);
    case 'dm/new': case 'dm/edit': case 'dm/delete': case 'dm/read': return onDirect(evt, data);
    case 'message/edit':
    case 'channel/pins/add': return replaceMessage(data.message);
    case 'channel/pins/remove': {
      const known = state.messages.find((m) => m.id === data.messageID);
      return replaceMessage(known ? { ...known, pinned: false } : null);
    }
    case 'message/delete': {
      state.messages = state.messages.filter((m) => m.id !== data.messageID);
      document.getElementById(`m-${data.messageID}`)?.remove();
      return;
    }
    case 'channel/new': {
      // Also sent when a channel becomes readable (a login, a new role): it may be listed.
      const i = state.channels.findIndex((c) => c.id === data.channel.id);
      if (i >= 0) state.channels[i] = { ...state.channels[i], ...data.channel };
      else state.channels.push(data.channel);
      return drawChannels();
    }
    case 'channel/update': {
      const i = state.channels.findIndex((c) => c.id === data.channel.id);
      if (i >= 0) state.channels[i] = { ...state.channels[i], ...data.channel };
      return drawChannels();
    }
    case 'channel/delete': {
      state.channels = state.channels.filter((c) => c.id !== data.channelID);
      drawChannels();
      if (state.channelId === data.channelID && state.channels[0]) openChannel(state.channels[0].id);
      return;
    }
    case 'user/new':
    case 'user/update': {
      state.users.set(data.user.id, data.user);
      if (openPanel === 'user' && shownUser === data.user.id) showUser(data.user.id);
      if (data.user.id === state.me?.id) loadGranted().catch(showError);
      return;
    }
    case 'user/delete': state.users.delete(data.userID); return;
    case 'user/online':
    case 'user/offline':
    case 'user/status': {
      const u = state.users.get(data.userID);
      if (u) {
        u.online = evt !== 'user/offline';
        u.status = evt === 'user/status' ? data.status : evt === 'user/online' ? 'online' : 'offline';
      }
      if (openPanel === 'users') drawPanel();
      return;
    }
    case 'user/mentions/add': {
      state.mentions.unshift(data.message);
      drawChannels();
      if (state.notify && document.hidden && 'Notification' in window && Notification.permission === 'granted') {
        new Notification(`${data.message.authorUsername} mentioned you`, { body: data.message.text.slice(0, 200) });
      }
      return;
    }
    case 'user/mentions/remove':
      state.mentions = state.mentions.filter((m) => m.id !== data.messageID);
      return drawChannels();
    case 'emote/new': state.emotes.set(data.emote.shortcode, data.emote.imageURL); return;
    case 'emote/delete': state.emotes.delete(data.shortcode); return;
    case 'role/new':
    case 'role/update': state.roles.set(data.role.id, data.role); return;
    case 'role/delete': state.roles.delete(data.roleID); return;
    case 'server-settings/update': {
      state.serverName = data.settings.name;
      document.title = state.serverName;
      const el = document.querySelector('.server-name');
      if (el) el.textContent = state.serverName;
      return;
    }
    case 'plugin/tell': return privateNote(data.name ?? data.plugin, data.text);
    case 'chatbox/tell': return privateNote(data.name, data.text);
    default:
  }
}

/** @param {Message} m */
function onNewMessage(m) {
  if (m.channelID !== state.channelId) {
    const c = state.channels.find((ch) => ch.id === m.channelID);
    if (c && m.authorID !== state.me?.id) {
      c.unreadMessageCount = (c.unreadMessageCount ?? 0) + 1;
      c.oldestUnreadMessageID ??= m.id;
      drawChannels();
    }
    return;
  }
  if (state.hasNewer || state.messages.some((x) => x.id === m.id)) return;
  const atBottom = isAtBottom();
  state.messages.push(m);
  const list = document.getElementById('messages');
  list?.appendChild(messageNode(m));
  if (state.messages.length > WINDOW) {
    const dropped = state.messages.shift();
    if (dropped) document.getElementById(`m-${dropped.id}`)?.remove();
    state.hasOlder = true;
  }
  if (atBottom || m.authorID === state.me?.id) scrollToBottom();
  if (atBottom && !document.hidden) {
    const c = state.channels.find((ch) => ch.id === m.channelID);
    if (c && m.authorID !== state.me?.id) {
      c.unreadMessageCount = 1;
      markRead();
    }
  }
}

/**
 * An edited or (un)pinned message replaces its copy.
 * @param {Message | null} m
 */
function replaceMessage(m) {
  if (!m) return;
  const i = state.messages.findIndex((x) => x.id === m.id);
  if (i < 0) return;
  state.messages[i] = { ...state.messages[i], ...m };
  const old = document.getElementById(`m-${m.id}`);
  old?.replaceWith(messageNode(state.messages[i]));
  if (openPanel === 'pins') drawPanel();
}

document.addEventListener('visibilitychange', () => { if (!document.hidden && isAtBottom()) markRead(); });
window.addEventListener('hashchange', () => {
  const id = location.hash.slice(1);
  const reset = /^reset=([\w-]{20,100})$/.exec(id);
  if (reset) { showReset(reset[1]); return; }
  if (id && !id.startsWith('setup=') && id !== state.channelId && document.getElementById('messages')) openChannel(id);
});

start();
