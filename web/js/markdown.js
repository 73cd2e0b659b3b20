// @ts-check
/**
 * Message text to DOM nodes: Markdown's bold, italic, strikethrough, inline code, code blocks,
 * links and images, plus Decent mentions (`<@id>`) and emotes (`:shortcode:`).
 *
 * Safe by construction: the renderer never produces HTML. It builds elements with `h()`, puts
 * user text in text nodes only, and lets a URL into an `href` or `src` only after `safeUrl`
 * accepted it as http(s). Anything it does not understand stays literal text.
 */
import { h, safeUrl } from './dom.js';

/**
 * @typedef {object} RenderContext
 * @property {(id: string) => string | null} userName the username of a user ID, if known
 * @property {(shortcode: string) => string | null} emoteUrl an emote's image URL, if known
 * @property {string | null} me the viewer's user ID
 */

/** Deepest nesting of inline formatting; deeper markup stays literal. */
const MAX_DEPTH = 6;

const INLINE = new RegExp(
  [
    '(?<code>`+)(?<codeText>[^`]|[^`][\\s\\S]*?[^`])\\k<code>(?!`)',
    '!\\[(?<alt>[^\\]\\n]*)\\]\\((?<src>[^()\\s]+)\\)',
    '\\[(?<label>[^\\]\\n]+)\\]\\((?<href>[^()\\s]+)\\)',
    '\\*\\*(?<bold>[^\\n]+?)\\*\\*',
    '~~(?<strike>[^\\n]+?)~~',
    '\\*(?<em>[^*\\s](?:[^*\\n]*[^*\\s])?)\\*',
    '(?<![\\w])_(?<em2>[^_\\s](?:[^_\\n]*[^_\\s])?)_(?![\\w])',
    '<@(?<mention>\\d{1,20})>',
    ':(?<emote>[a-zA-Z0-9_-]{1,32}):',
    '(?<url>https?://[^\\s<>()\\[\\]]+[^\\s<>()\\[\\].,;:!?\'"])',
  ].join('|'),
  'g',
);

/**
 * Inline Markdown to nodes.
 * @param {string} text
 * @param {RenderContext} ctx
 * @param {number} depth
 * @returns {Node[]}
 */
function inline(text, ctx, depth) {
  /** @type {Node[]} */
  const out = [];
  if (depth > MAX_DEPTH) return [document.createTextNode(text)];
  const re = new RegExp(INLINE.source, 'g');
  let last = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const g = /** @type {Record<string, string | undefined>} */ (m.groups);
    const node = token(g, m[0], ctx, depth);
    if (!node) continue;
    if (m.index > last) out.push(document.createTextNode(text.slice(last, m.index)));
    out.push(node);
    last = m.index + m[0].length;
  }
  if (last < text.length) out.push(document.createTextNode(text.slice(last)));
  return out;
}

/**
 * One matched inline token as a node, or null to leave it as text.
 * @param {Record<string, string | undefined>} g
 * @param {string} whole
 * @param {RenderContext} ctx
 * @param {number} depth
 * @returns {Node | null}
 */
function token(g, whole, ctx, depth) {
  if (g.codeText !== undefined) return h('code', {}, g.codeText);
  if (g.src !== undefined) {
    const src = safeUrl(g.src);
    if (!src) return null;
    return h('a', { href: src, target: '_blank', rel: 'noopener noreferrer nofollow' },
      h('img', { src, alt: g.alt || 'image', loading: 'lazy', class: 'inline-image' }));
  }
  if (g.href !== undefined) {
    const href = safeUrl(g.href);
    if (!href) return null;
    return h('a', { href, target: '_blank', rel: 'noopener noreferrer nofollow' },
      inline(g.label ?? '', ctx, depth + 1));
  }
  if (g.bold !== undefined) return h('strong', {}, inline(g.bold, ctx, depth + 1));
  if (g.strike !== undefined) return h('del', {}, inline(g.strike, ctx, depth + 1));
  if (g.em !== undefined) return h('em', {}, inline(g.em, ctx, depth + 1));
  if (g.em2 !== undefined) return h('em', {}, inline(g.em2, ctx, depth + 1));
  if (g.mention !== undefined) {
    const name = ctx.userName(g.mention);
    const mine = g.mention === ctx.me;
    return h('span', { class: mine ? 'mention me' : 'mention', 'data-user': g.mention },
      `@${name ?? 'unknown user'}`);
  }
  if (g.emote !== undefined) {
    const url = ctx.emoteUrl(g.emote);
    const src = url && safeUrl(url);
    if (!src) return null;
    return h('img', { class: 'emote', src, alt: whole, title: whole });
  }
  if (g.url !== undefined) {
    const href = safeUrl(g.url);
    if (!href) return null;
    return h('a', { href, target: '_blank', rel: 'noopener noreferrer nofollow' }, g.url);
  }
  return null;
}

/**
 * A message's text as block nodes: fenced code blocks, then paragraphs with line breaks.
 * @param {string} text
 * @param {RenderContext} ctx
 * @returns {Node[]}
 */
export function render(text, ctx) {
  /** @type {Node[]} */
  const out = [];
  const parts = text.split(/^```[^\n`]*\n?/m);
  // Odd parts are inside a fence (an unclosed last fence runs to the end).
  parts.forEach((part, i) => {
    if (i % 2 === 1) {
      out.push(h('pre', {}, h('code', {}, part.replace(/\n$/, ''))));
      return;
    }
    const trimmed = part.replace(/^\n+|\n+$/g, '');
    if (!trimmed) return;
    const p = h('p');
    trimmed.split('\n').forEach((line, n) => {
      if (n > 0) p.appendChild(h('br'));
      for (const node of inline(line, ctx, 0)) p.appendChild(node);
    });
    out.push(p);
  });
  return out;
}

/**
 * Whether a text mentions the user.
 * @param {string} text
 * @param {string | null} user
 */
export function mentions(text, user) {
  return user !== null && text.includes(`<@${user}>`);
}
