// @ts-check
/**
 * Running the server from the web client: settings, roles, channels and their overrides,
 * emotes, users and sessions, plugins, bots. Each section and control is shown only to those
 * whose permissions allow it, following the server's rules, so the page never offers what the
 * server would refuse; when the server refuses anyway, its message is shown.
 */
import * as api from './api.js';
import { h, replace, formatTime, safeUrl } from './dom.js';

/** Every permission key, in the API doc's order. */
export const PERMISSIONS = [
  'manageServer', 'manageUsers', 'manageRoles', 'grantRoles', 'manageChannels', 'managePins',
  'manageEmotes', 'readMessages', 'sendMessages', 'deleteMessages', 'sendSystemMessages',
  'uploadImages', 'allowNonUnique',
];
/** The keys a channel may override for roles and `_user`; `_everyone` only `readMessages`. */
export const CHANNEL_PERMISSIONS = ['manageChannels', 'readMessages', 'sendMessages', 'deleteMessages', 'sendSystemMessages'];

/**
 * @typedef {Record<string, boolean>} PermissionObject
 * @typedef {{id: string, name: string, permissions: PermissionObject}} Role
 * @typedef {{
 *   me: {id: string, username: string} | null,
 *   granted: PermissionObject,
 *   channels: {id: string, name: string}[],
 *   users: Map<string, {id: string, username: string, roleIDs: string[], online: boolean}>,
 *   emotes: Map<string, string>,
 *   serverName: string,
 *   toast: (text: string, kind?: 'error' | 'info') => void,
 * }} AdminContext
 */

/** @type {string} */
let section = 'settings';
/** Whether an editing form (a role, a channel's overrides) is open: live redraws wait. */
let editing = false;

/** @type {ReturnType<typeof setTimeout> | undefined} */
let poll;
/** Counts calls of `drawAdmin`. */
let generation = 0;

/** Whether live events should leave the view alone for now. */
export function adminBusy() {
  return editing;
}
/** @type {AdminContext | null} */
let current = null;

/** @param {unknown} e */
const message = (e) => (e instanceof api.ApiError ? `${e.message} (${e.code})` : String(e));

/**
 * The sections a user may open.
 * @param {AdminContext} ctx
 */
function sections(ctx) {
  const g = ctx.granted;
  return /** @type {[string, string, boolean][]} */ ([
    ['settings', 'Settings', !!g.manageServer],
    ['roles', 'Roles', !!(g.manageRoles || g.grantRoles)],
    ['channels', 'Channels', !!g.manageChannels],
    ['emotes', 'Emotes', !!g.manageEmotes],
    ['users', 'Users', !!ctx.me],
    ['plugins', 'Plugins', !!g.manageServer],
    ['bots', 'Bots', !!ctx.me],
    ['explain', 'Permissions', true],
  ]).filter(([, , allowed]) => allowed);
}

/**
 * Draws the admin view into `root`.
 * @param {HTMLElement} root
 * @param {AdminContext} ctx
 */
export async function drawAdmin(root, ctx) {
  current = ctx;
  editing = false;
  clearTimeout(poll);
  // Draws can overlap (an event arrives while an action's redraw fetches): only the one
  // started last is shown, so an older fetch can never replace a newer view.
  const mine = ++generation;
  const open = sections(ctx);
  if (!open.some(([id]) => id === section)) section = open[0]?.[0] ?? 'users';
  // The new view is built aside and swapped in at once, so that no key press or click can
  // land in a half-drawn view while its data is being fetched.
  const body = h('div', { class: 'admin-body' });
  const view = [
    h('h2', { class: 'channel-title' }, 'Server'),
    h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'Server sections' }, open.map(([id, label]) =>
      h('button', {
        role: 'tab', id: `tab-${id}`, 'aria-selected': String(id === section), class: id === section ? 'tab current' : 'tab',
        onclick: () => { section = id; drawAdmin(root, ctx); },
      }, label))),
    h('div', { role: 'tabpanel', 'aria-labelledby': `tab-${section}`, class: 'admin-panel' }, body),
  ];
  try {
    const draw = { settings, roles, channels, emotes, users, plugins, bots, explain }[section];
    await draw?.(body, ctx, () => drawAdmin(root, ctx));
  } catch (e) {
    replace(body, h('p', { role: 'alert' }, message(e)));
  }
  if (mine !== generation) return;
  // Focus survives the redraw: the control with the same name gets it back, so keyboard users
  // can press "Move up" again and again.
  const focused = document.activeElement;
  const focusKey = focused && root.contains(focused) ? controlKey(focused) : null;
  replace(root, ...view);
  if (focusKey) {
    const again = [...root.querySelectorAll('button, input, select')].find((el) => controlKey(el) === focusKey);
    /** @type {HTMLElement | undefined} */ (again)?.focus();
  }
}

/**
 * What names a control across redraws: its id, else its accessible label, else its text.
 * @param {Element} el
 */
function controlKey(el) {
  return el.id || el.getAttribute('aria-label') || el.textContent || '';
}

/**
 * Runs an action; shows the server's message when it refuses; redraws after.
 * @param {() => Promise<unknown>} action
 * @param {() => void} [after]
 */
async function attempt(action, after) {
  try {
    await action();
    after?.();
    return true;
  } catch (e) {
    current?.toast(message(e));
    return false;
  }
}

/** @param {string} id @param {string} label @param {Record<string, any>} [attrs] */
function field(id, label, attrs = {}) {
  const input = h('input', { id, ...attrs });
  return { input: /** @type {HTMLInputElement} */ (input), nodes: [h('label', { for: id }, label), input] };
}

// ------------------------------------------------------------------ settings

/** @param {HTMLElement} body @param {AdminContext} ctx @param {() => void} redraw */
async function settings(body, ctx, redraw) {
  const { settings: s } = await api.get('/api/settings');
  const name = field('set-name', 'Server name', { value: s.name, maxlength: 100 });
  const icon = field('set-icon', 'Icon URL', { value: s.iconURL ?? '' });
  const file = /** @type {HTMLInputElement} */ (h('input', { id: 'set-icon-file', type: 'file', accept: 'image/*' }));
  file.addEventListener('change', async () => {
    const chosen = file.files?.[0];
    if (!chosen) return;
    await attempt(async () => {
      const path = await api.uploadImage(chosen, () => {});
      icon.input.value = new URL(path, location.href).href;
    });
  });
  const access = h('fieldset', {},
    h('legend', {}, 'Who may read without a role'),
    [['spec', 'Nobody (the spec\'s table)'], ['members', 'Logged-in users'], ['public', 'Everyone, guests too']].map(([value, label]) =>
      h('label', { class: 'check' }, h('input', { type: 'radio', name: 'readAccess', value, checked: s.readAccess === value }), ` ${label}`)));
  replace(body, h('form', {
    class: 'stack',
    onsubmit: async (e) => {
      e.preventDefault();
      const chosen = /** @type {HTMLInputElement | null} */ (access.querySelector('input:checked'));
      await attempt(() => api.patch('/api/settings', {
        name: name.input.value, iconURL: icon.input.value, readAccess: chosen?.value,
      }), () => { ctx.toast('Settings saved.', 'info'); redraw(); });
    },
  }, name.nodes, icon.nodes, h('label', { for: 'set-icon-file' }, 'Upload an icon'), file,
  safeUrl(s.iconURL ?? '') ? h('img', { class: 'icon-preview', src: safeUrl(s.iconURL) ?? '', alt: 'Current icon' }) : null,
  access, h('button', { type: 'submit' }, 'Save settings')));
}

// ------------------------------------------------------------------ roles

/**
 * What the requester may do with roles, by the server's rules: change, delete, grant or take
 * a role only below their own most prioritized role, and only if they hold every permission
 * it mentions.
 * @param {AdminContext} ctx
 * @param {Role[]} ordinary roles in priority order
 */
function roleRules(ctx, ordinary) {
  const mine = new Set(ctx.me ? ctx.users.get(ctx.me.id)?.roleIDs ?? [] : []);
  const top = ordinary.findIndex((r) => mine.has(r.id));
  const holdsAll = (/** @type {PermissionObject} */ p) => Object.keys(p).every((k) => ctx.granted[k]);
  const below = (/** @type {Role} */ r) => top >= 0 && ordinary.indexOf(r) > top;
  return {
    top,
    canEdit: (/** @type {Role} */ r) => !!ctx.granted.manageRoles && below(r) && holdsAll(r.permissions),
    canGrant: (/** @type {Role} */ r) => !!ctx.granted.grantRoles && below(r) && holdsAll(r.permissions),
    canMove: (/** @type {Role} */ r) => !!ctx.granted.manageRoles && below(r),
    holds: (/** @type {string} */ key) => !!ctx.granted[key],
  };
}

/**
 * A tri-state permission editor (allow / deny / inherit per key). Keys the requester does not
 * hold are shown but cannot be changed.
 * @param {string} idPrefix
 * @param {string[]} keys
 * @param {PermissionObject} value
 * @param {(key: string) => boolean} editable
 */
function triState(idPrefix, keys, value, editable) {
  const result = { ...value };
  const table = h('table', { class: 'perms' },
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Permission'), h('th', { scope: 'col' }, 'Allow'), h('th', { scope: 'col' }, 'Deny'), h('th', { scope: 'col' }, 'Inherit'))),
    h('tbody', {}, keys.map((key) => {
      const state = key in value ? (value[key] ? 'allow' : 'deny') : 'inherit';
      return h('tr', {}, h('th', { scope: 'row' }, key), ['allow', 'deny', 'inherit'].map((choice) => h('td', {},
        h('input', {
          type: 'radio', name: `${idPrefix}-${key}`, value: choice, checked: state === choice, disabled: !editable(key),
          'aria-label': `${key}: ${choice}`,
          onchange: () => {
            if (choice === 'inherit') delete result[key];
            else result[key] = choice === 'allow';
          },
        }))));
    })));
  return { table, value: () => result };
}

/** @param {HTMLElement} body @param {AdminContext} ctx @param {() => void} redraw */
async function roles(body, ctx, redraw) {
  const { roles: all } = await api.get('/api/roles');
  const ordinary = /** @type {Role[]} */ (all.filter((/** @type {Role} */ r) => !r.id.startsWith('_')));
  const rules = roleRules(ctx, ordinary);
  const list = h('ol', { class: 'role-list', 'aria-label': 'Roles, most prioritized first' });
  /** @type {string | null} */
  let dragged = null;
  const move = async (/** @type {Role} */ role, /** @type {number} */ to) => {
    const ids = ordinary.map((r) => r.id).filter((id) => id !== role.id);
    ids.splice(to, 0, role.id);
    await attempt(() => api.patch('/api/roles/order', { roleIDs: ids }), redraw);
  };
  for (const [i, role] of ordinary.entries()) {
    const editable = rules.canEdit(role);
    const movable = rules.canMove(role);
    const min = rules.top + 1;
    list.appendChild(h('li', {
      class: 'role', draggable: movable ? 'true' : null, 'data-role': role.id,
      ondragstart: () => { dragged = role.id; },
      ondragover: (e) => { if (dragged && movable) e.preventDefault(); },
      ondrop: (e) => {
        e.preventDefault();
        const source = ordinary.find((r) => r.id === dragged);
        if (source && source.id !== role.id) move(source, i);
        dragged = null;
      },
    },
    h('span', { class: 'role-name' }, role.name),
    movable && i > min ? h('button', { class: 'icon', 'aria-label': `Move ${role.name} up`, onclick: () => move(role, i - 1) }, '↑') : null,
    movable && i < ordinary.length - 1 ? h('button', { class: 'icon', 'aria-label': `Move ${role.name} down`, onclick: () => move(role, i + 1) }, '↓') : null,
    editable ? h('button', { class: 'secondary', onclick: () => editRole(body, ctx, role, rules, redraw) }, `Edit ${role.name}`) : null,
    editable ? h('button', {
      class: 'secondary danger',
      onclick: () => confirm(`Delete the role ${role.name}?`) && attempt(() => api.del(`/api/roles/${role.id}`), redraw),
    }, `Delete ${role.name}`) : null));
  }
  const internal = all.filter((/** @type {Role} */ r) => r.id.startsWith('_'));
  replace(body,
    ctx.granted.manageRoles ? h('button', { onclick: () => editRole(body, ctx, null, rules, redraw) }, 'New role') : null,
    ordinary.length ? list : h('p', {}, 'No roles yet.'),
    h('h3', {}, 'Internal roles'),
    h('ul', {}, internal.map((/** @type {Role} */ r) => h('li', {}, `${r.id}: `,
      Object.entries(r.permissions).map(([k, v]) => `${k} ${v ? 'allowed' : 'denied'}`).join(', ') || 'nothing set'))),
    h('p', { class: 'fine' }, 'Change what the internal roles allow with the read-access setting, or per channel.'));
}

/**
 * @param {HTMLElement} body @param {AdminContext} ctx @param {Role | null} role
 * @param {ReturnType<typeof roleRules>} rules @param {() => void} redraw
 */
function editRole(body, ctx, role, rules, redraw) {
  editing = true;
  generation++; // a draw still fetching must not replace this form
  const name = field('role-name', 'Role name', { value: role?.name ?? '', maxlength: 32, required: true });
  const perms = triState('role', PERMISSIONS, role?.permissions ?? {}, rules.holds);
  replace(body, h('form', {
    class: 'stack',
    onsubmit: async (e) => {
      e.preventDefault();
      const payload = { name: name.input.value, permissions: perms.value() };
      await attempt(() => (role ? api.patch(`/api/roles/${role.id}`, payload) : api.post('/api/roles', payload)), redraw);
    },
  }, h('h3', {}, role ? `Edit ${role.name}` : 'New role'), name.nodes, perms.table,
  h('div', { class: 'row' }, h('button', { type: 'submit' }, 'Save role'), h('button', { type: 'button', class: 'secondary', onclick: redraw }, 'Cancel'))));
}

// ------------------------------------------------------------------ channels

/** @param {HTMLElement} body @param {AdminContext} ctx @param {() => void} redraw */
async function channels(body, ctx, redraw) {
  const name = field('new-channel', 'New channel name', { maxlength: 32 });
  replace(body,
    h('form', {
      class: 'row', onsubmit: (e) => {
        e.preventDefault();
        attempt(() => api.post('/api/channels', { name: name.input.value }), redraw);
      },
    }, name.nodes, h('button', { type: 'submit' }, 'Create channel')),
    h('ul', { class: 'admin-list' }, ctx.channels.map((c) => {
      const rename = field(`rename-${c.id}`, `Rename #${c.name}`, { value: c.name, maxlength: 32 });
      return h('li', {},
        h('form', {
          class: 'row', onsubmit: (e) => {
            e.preventDefault();
            attempt(() => api.patch(`/api/channels/${c.id}`, { name: rename.input.value }), redraw);
          },
        }, rename.nodes, h('button', { type: 'submit', class: 'secondary' }, 'Rename')),
        h('div', { class: 'row' },
          h('button', { class: 'secondary', onclick: () => overrides(body, ctx, c, redraw) }, `Permissions of #${c.name}`),
          h('button', {
            class: 'secondary danger',
            onclick: () => confirm(`Delete the channel #${c.name} and all its messages?`) && attempt(() => api.del(`/api/channels/${c.id}`), redraw),
          }, `Delete #${c.name}`)));
    })));
}

/**
 * The per-channel overrides editor, with a preview of who can read the channel afterwards.
 * @param {HTMLElement} body @param {AdminContext} ctx @param {{id: string, name: string}} channel
 * @param {() => void} redraw
 */
async function overrides(body, ctx, channel, redraw) {
  editing = true;
  generation++; // a draw still fetching must not replace this form
  const [{ rolePermissions }, { roles: all }] = await Promise.all([
    api.get(`/api/channels/${channel.id}/role-permissions`), api.get('/api/roles'),
  ]);
  const editors = /** @type {Role[]} */ (all).map((role) => {
    const keys = role.id === '_everyone' ? ['readMessages'] : CHANNEL_PERMISSIONS;
    const editor = triState(`ov-${role.id}`, keys, rolePermissions[role.id] ?? {}, (k) => !!ctx.granted[k]);
    return { role, editor };
  });
  const preview = h('p', { role: 'status', class: 'preview' });
  const update = () => {
    /** @type {Record<string, PermissionObject>} */
    const next = {};
    for (const { role, editor } of editors) next[role.id] = editor.value();
    replace(preview, `Who can read #${channel.name} afterwards: ${readers(all, next, ctx)}`);
  };
  body.addEventListener('change', update);
  replace(body, h('form', {
    class: 'stack',
    onsubmit: async (e) => {
      e.preventDefault();
      /** @type {Record<string, PermissionObject>} */
      const payload = {};
      for (const { role, editor } of editors) payload[role.id] = editor.value();
      await attempt(() => api.patch(`/api/channels/${channel.id}/role-permissions`, { rolePermissions: payload }), redraw);
    },
  }, h('h3', {}, `Permissions of #${channel.name}`),
  editors.map(({ role, editor }) => h('fieldset', {}, h('legend', {}, role.name ?? role.id), editor.table)),
  preview,
  h('div', { class: 'row' }, h('button', { type: 'submit' }, 'Save permissions'), h('button', { type: 'button', class: 'secondary', onclick: redraw }, 'Cancel'))));
  update();
}

/**
 * Who may read a channel with the given overrides: the cascade of spec 2.5 for
 * `readMessages`, per user and for guests.
 * @param {Role[]} all roles as `GET /api/roles` lists them (ordinary in order, then internal)
 * @param {Record<string, PermissionObject>} channelOverrides
 * @param {AdminContext} ctx
 */
function readers(all, channelOverrides, ctx) {
  const names = [];
  for (const user of ctx.users.values()) {
    if (explainKey('readMessages', all, user.roleIDs, true, channelOverrides).allowed) names.push(user.username);
  }
  const guests = explainKey('readMessages', all, [], false, channelOverrides).allowed;
  const shown = names.length > 12 ? `${names.slice(0, 12).join(', ')} and ${names.length - 12} more` : names.join(', ');
  return `${shown || 'no user'}${guests ? '; guests too' : ''}`;
}

/**
 * The cascade of spec 2.5 for one key, with the permission object that decided it.
 * @param {string} key
 * @param {Role[]} all roles as listed by the API
 * @param {string[]} roleIds the user's roles
 * @param {boolean} loggedIn
 * @param {Record<string, PermissionObject> | null} channel the channel's overrides, or null
 * @returns {{allowed: boolean, source: string}}
 */
export function explainKey(key, all, roleIds, loggedIn, channel) {
  const mine = all.filter((r) => !r.id.startsWith('_') && roleIds.includes(r.id));
  const byId = new Map(all.map((r) => [r.id, r]));
  /** @type {[string, PermissionObject | undefined][]} */
  const list = [];
  if (channel) {
    for (const r of mine) list.push([`channel override for role ${r.name}`, channel[r.id]]);
    if (loggedIn) list.push(['channel override for _user', channel._user]);
    list.push(['channel override for _everyone', channel._everyone]);
  }
  for (const r of mine) list.push([`role ${r.name}`, r.permissions]);
  if (loggedIn) list.push(['role _user', byId.get('_user')?.permissions]);
  list.push(['role _everyone', byId.get('_everyone')?.permissions]);
  for (const [source, object] of list) {
    if (object && key in object) return { allowed: object[key], source };
  }
  return { allowed: false, source: 'no permission object sets it' };
}

// ------------------------------------------------------------------ explain

/** @param {HTMLElement} body @param {AdminContext} ctx */
async function explain(body, ctx) {
  const userSelect = /** @type {HTMLSelectElement} */ (h('select', { id: 'explain-user' },
    [...ctx.users.values()].map((u) => h('option', { value: u.id, selected: u.id === ctx.me?.id }, u.username))));
  const channelSelect = /** @type {HTMLSelectElement} */ (h('select', { id: 'explain-channel' },
    h('option', { value: '' }, 'server-wide'), ctx.channels.map((c) => h('option', { value: c.id }, `#${c.name}`))));
  const out = h('div', { 'aria-live': 'polite' });
  const show = async () => {
    const userId = userSelect.value;
    const channelId = channelSelect.value;
    try {
      const [{ roles: all }, { user }, overrides, effective] = await Promise.all([
        api.get('/api/roles'), api.get(`/api/users/${userId}`),
        channelId ? api.get(`/api/channels/${channelId}/role-permissions`) : Promise.resolve(null),
        api.get(channelId ? `/api/users/${userId}/channel-permissions/${channelId}` : `/api/users/${userId}/permissions`),
      ]);
      replace(out, h('table', { class: 'perms' },
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Permission'), h('th', { scope: 'col' }, 'Effective'), h('th', { scope: 'col' }, 'Decided by'))),
        h('tbody', {}, PERMISSIONS.map((key) => {
          const why = explainKey(key, all, user.roleIDs, true, overrides?.rolePermissions ?? null);
          const server = !!effective.permissions[key];
          return h('tr', {}, h('th', { scope: 'row' }, key), h('td', {}, server ? 'allowed' : 'denied'),
            h('td', {}, why.allowed === server ? `${server ? 'allowed' : 'denied'} by ${why.source}` : 'changed meanwhile: reload'));
        }))));
    } catch (e) {
      replace(out, h('p', { role: 'alert' }, message(e)));
    }
  };
  userSelect.addEventListener('change', show);
  channelSelect.addEventListener('change', show);
  replace(body, h('div', { class: 'row' }, h('label', { for: 'explain-user' }, 'User'), userSelect,
    h('label', { for: 'explain-channel' }, 'Channel'), channelSelect), out);
  await show();
}

// ------------------------------------------------------------------ emotes

/** @param {HTMLElement} body @param {AdminContext} ctx @param {() => void} redraw */
async function emotes(body, ctx, redraw) {
  const code = field('emote-code', 'Shortcode', { maxlength: 32, pattern: '[a-zA-Z0-9_-]+', required: true });
  const file = /** @type {HTMLInputElement} */ (h('input', { id: 'emote-file', type: 'file', accept: 'image/*', required: true }));
  const { emotes: list } = await api.get('/api/emotes');
  replace(body,
    h('form', {
      class: 'stack',
      onsubmit: async (e) => {
        e.preventDefault();
        const chosen = file.files?.[0];
        if (!chosen) return;
        await attempt(async () => {
          const path = await api.uploadImage(chosen, () => {});
          await api.post('/api/emotes', { shortcode: code.input.value, imageURL: new URL(path, location.href).href });
        }, redraw);
      },
    }, code.nodes, h('label', { for: 'emote-file' }, 'Emote image'), file, h('button', { type: 'submit' }, 'Add emote')),
    h('ul', { class: 'admin-list' }, list.map((/** @type {{shortcode: string, imageURL: string}} */ e) => h('li', { class: 'row' },
      h('img', { class: 'emote', src: safeUrl(e.imageURL) ?? '', alt: '' }), `:${e.shortcode}:`,
      h('button', {
        class: 'secondary danger',
        onclick: () => confirm(`Delete the emote :${e.shortcode}:?`) && attempt(() => api.del(`/api/emotes/${e.shortcode}`), redraw),
      }, `Delete :${e.shortcode}:`)))));
}

// ------------------------------------------------------------------ users and sessions

/** @param {HTMLElement} body @param {AdminContext} ctx @param {() => void} redraw */
async function users(body, ctx, redraw) {
  const [{ roles: all }, { sessions }] = await Promise.all([api.get('/api/roles'), api.get('/api/sessions')]);
  const ordinary = /** @type {Role[]} */ (all.filter((/** @type {Role} */ r) => !r.id.startsWith('_')));
  const search = field('user-search', 'Search users', { type: 'search' });
  const list = h('ul', { class: 'admin-list', 'aria-label': 'Users' });
  const draw = () => {
    const q = search.input.value.trim().toLowerCase();
    replace(list, [...ctx.users.values()].filter((u) => u.username.toLowerCase().includes(q)).slice(0, 100).map((u) => {
      return h('li', { class: 'user-row' },
        h('strong', {}, u.username), u.online ? ' (online)' : '',
        roleControls(u, ordinary, ctx, redraw),
        ctx.granted.manageUsers && u.id !== ctx.me?.id ? h('button', {
          class: 'secondary danger',
          onclick: () => confirm(`Delete the user ${u.username}? Their messages stay, without an author.`) && attempt(() => api.del(`/api/users/${u.id}`), redraw),
        }, `Delete ${u.username}`) : null);
    }));
  };
  search.input.addEventListener('input', draw);
  const others = sessions.filter((/** @type {{current: boolean}} */ s) => !s.current);
  replace(body, search.nodes, list,
    h('h3', {}, 'Your sessions'),
    h('ul', { class: 'admin-list', 'aria-label': 'Your sessions' }, sessions.map((/** @type {{id: string, dateCreated: number, current: boolean, device: string | null, lastUsed: number, expires: number, sliding: boolean}} */ s) =>
      h('li', {}, h('strong', {}, s.current ? 'This browser' : 'Another session'),
        `: ${s.device ?? 'unknown device'}; logged in ${formatTime(s.dateCreated)} (${age(s.dateCreated)}); last used ${age(s.lastUsed)}; `,
        s.sliding ? `ends ${formatTime(s.expires)} unless used` : `ends ${formatTime(s.expires)}`))),
    others.length ? h('button', {
      class: 'secondary',
      onclick: () => attempt(async () => {
        for (const s of others) await api.del(`/api/sessions/${s.id}`);
      }, () => { ctx.toast('Logged out everywhere else.', 'info'); redraw(); }),
    }, 'Log out everywhere else') : null);
  draw();
}

/**
 * A user's roles, with "take" on each role the requester may take and "give" for the ones
 * they may give (the grantRoles rules). Used in the Users section and on user cards.
 * @param {{id: string, username: string, roleIDs: string[]}} u
 * @param {Role[]} ordinary roles in priority order
 * @param {AdminContext} ctx
 * @param {() => void} redraw
 */
export function roleControls(u, ordinary, ctx, redraw) {
  current = ctx;
  const rules = roleRules(ctx, ordinary);
  const grantable = ordinary.filter((r) => rules.canGrant(r) && !u.roleIDs.includes(r.id));
  const select = /** @type {HTMLSelectElement} */ (h('select', { 'aria-label': `Role to give ${u.username}` },
    grantable.map((r) => h('option', { value: r.id }, r.name))));
  return h('span', { class: 'role-controls' },
    h('ul', { class: 'roles', 'aria-label': `Roles of ${u.username}` }, u.roleIDs.map((id) => {
      const role = ordinary.find((r) => r.id === id);
      return h('li', {}, role?.name ?? id, role && rules.canGrant(role)
        ? h('button', { class: 'icon', 'aria-label': `Take ${role.name} from ${u.username}`, onclick: () => attempt(() => api.del(`/api/users/${u.id}/roles/${id}`), redraw) }, '×')
        : null);
    })),
    grantable.length ? h('span', { class: 'row' }, select,
      h('button', { class: 'secondary', onclick: () => attempt(() => api.post(`/api/users/${u.id}/roles`, { roleID: select.value }), redraw) }, `Give role to ${u.username}`)) : null);
}

/**
 * How long ago a time was, in words.
 * @param {number} seconds Unix seconds
 */
function age(seconds) {
  const minutes = Math.max(0, Math.round((Date.now() / 1000 - seconds) / 60));
  if (minutes < 1) return 'just now';
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.round(minutes / 60);
  return hours < 48 ? `${hours} h ago` : `${Math.round(hours / 24)} days ago`;
}

// ------------------------------------------------------------------ plugins

/** @param {HTMLElement} body @param {AdminContext} ctx @param {() => void} redraw */
async function plugins(body, ctx, redraw) {
  const { plugins: list } = await api.get('/api/plugins');
  replace(body, list.length ? h('ul', { class: 'admin-list' }, list.map((/** @type {any} */ p) => h('li', { class: 'stack' },
    h('strong', {}, `${p.name} ${p.version}`), p.description ? h('span', {}, p.description) : null,
    h('span', {}, p.enabled ? 'enabled' : `disabled${p.disabledReason ? `: ${p.disabledReason}` : ''}`),
    p.lastError ? h('span', { class: 'fine' }, `last error (${p.lastError.call}, ${formatTime(p.lastError.date)}): ${p.lastError.error}`) : null,
    h('span', { class: 'fine' }, `capabilities: ${p.capabilities.join(', ') || 'none'}; calls ${p.stats.calls}, failures ${p.stats.failures}, refused actions ${p.stats.refusedActions}, dropped events ${p.stats.droppedEvents}`),
    h('div', { class: 'row' },
      h('button', { class: 'secondary', onclick: () => attempt(() => api.post(`/api/plugins/${p.name}/${p.enabled ? 'disable' : 'enable'}`), redraw) }, `${p.enabled ? 'Disable' : 'Enable'} ${p.name}`),
      h('button', { class: 'secondary', onclick: () => attempt(() => api.post(`/api/plugins/${p.name}/reload`), () => { ctx.toast(`${p.name} reloaded.`, 'info'); redraw(); }) }, `Reload ${p.name}`)))))
    : h('p', {}, 'No plugins are installed. Put plugin directories in the server\'s plugins directory, then reload them here.'));
}

// ------------------------------------------------------------------ bots

const CAPABILITIES = ['read', 'command', 'say', 'tell'];

/** @param {HTMLElement} body @param {AdminContext} ctx */
async function bots(body, ctx) {
  const label = field('bot-label', 'Label', { maxlength: 64 });
  const boxes = CAPABILITIES.map((c) => h('label', { class: 'check' }, h('input', { type: 'checkbox', value: c, checked: true }), ` ${c}`));
  const keyBox = h('div', { 'aria-live': 'polite' });
  const lists = h('div');
  // The lists redraw on their own, so that a new key stays on show (it is shown once).
  const drawLists = async () => {
    const own = (await api.get('/api/licenses')).licenses;
    const everyone = ctx.granted.manageServer
      ? (await api.get('/api/licenses?all=true')).licenses.filter((/** @type {any} */ l) => l.ownerID !== ctx.me?.id)
      : [];
    /** @param {any} l @param {boolean} admin */
    const row = (l, admin) => h('li', { class: 'row' },
      h('span', {}, `${l.label || 'unnamed'}${admin ? ` (${ctx.users.get(l.ownerID)?.username ?? l.ownerID})` : ''}: ${l.capabilities.join(', ')}; `,
        h('span', { 'data-connections': l.id }, `${l.connections} connected`), l.disabled ? '; disabled' : ''),
      admin ? h('button', { class: 'secondary', onclick: () => attempt(() => api.post(`/api/licenses/${l.id}/${l.disabled ? 'enable' : 'disable'}`), drawLists) }, l.disabled ? 'Enable' : 'Disable') : null,
      h('button', { class: 'secondary danger', onclick: () => confirm('Revoke this license? Its bots are disconnected.') && attempt(() => api.del(`/api/licenses/${l.id}`), drawLists) }, 'Revoke'));
    replace(lists,
      h('h3', {}, 'Your licenses'),
      own.length ? h('ul', { class: 'admin-list' }, own.map((/** @type {any} */ l) => row(l, false))) : h('p', {}, 'None yet.'),
      ctx.granted.manageServer ? [h('h3', {}, 'Everyone else\'s licenses'),
        everyone.length ? h('ul', { class: 'admin-list' }, everyone.map((/** @type {any} */ l) => row(l, true))) : h('p', {}, 'None.')] : null);
  };
  await drawLists();
  // Connection counts have no event: they are fetched again every 5 s and updated in place.
  const refresh = async () => {
    if (!body.isConnected || section !== 'bots') return;
    try {
      const fresh = [...(await api.get('/api/licenses')).licenses,
        ...(ctx.granted.manageServer ? (await api.get('/api/licenses?all=true')).licenses : [])];
      for (const l of fresh) {
        const count = body.querySelector(`[data-connections="${l.id}"]`);
        if (count) count.textContent = `${l.connections} connected`;
      }
    } catch {
      // The next refresh tries again.
    }
    poll = setTimeout(refresh, 5000);
  };
  poll = setTimeout(refresh, 5000);
  replace(body,
    h('form', {
      class: 'stack',
      onsubmit: async (e) => {
        e.preventDefault();
        const capabilities = boxes.map((b) => /** @type {HTMLInputElement} */ (b.querySelector('input'))).filter((i) => i.checked).map((i) => i.value);
        await attempt(async () => {
          const { key } = await api.post('/api/licenses', { label: label.input.value, capabilities });
          const input = /** @type {HTMLInputElement} */ (h('input', { id: 'new-key', readonly: true, value: key }));
          replace(keyBox, h('label', { for: 'new-key' }, 'The new key (shown once)'), input,
            h('button', { type: 'button', class: 'secondary', onclick: async () => {
              await navigator.clipboard?.writeText(key).catch(() => input.select());
              ctx.toast('Key copied.', 'info');
            } }, 'Copy key'));
          await drawLists();
        });
      },
    }, h('h3', {}, 'New chatbox license'), label.nodes, h('fieldset', {}, h('legend', {}, 'Capabilities'), boxes),
    h('button', { type: 'submit' }, 'Create license')),
    keyBox,
    lists);
}
