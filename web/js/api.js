// @ts-check
/**
 * The Decent HTTP API, as the server answers it: JSON in, JSON out, errors as
 * `{"error": {"code", "message", ...}}`. The session ID travels in `X-Session-ID`.
 */

/** An error the server answered (or a network failure, code `NETWORK`). */
export class ApiError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {Record<string, unknown>} [details]
   */
  constructor(code, message, details = {}) {
    super(message);
    this.code = code;
    this.details = details;
  }
}

const SESSION_KEY = 'decentd.session';

export const session = {
  /** @returns {string | null} */
  get() {
    return localStorage.getItem(SESSION_KEY);
  },
  /** @param {string | null} id */
  set(id) {
    if (id) localStorage.setItem(SESSION_KEY, id);
    else localStorage.removeItem(SESSION_KEY);
  },
};

/**
 * Calls the API.
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body]
 * @returns {Promise<any>}
 */
export async function call(method, path, body) {
  /** @type {Record<string, string>} */
  const headers = {};
  const id = session.get();
  if (id) headers['X-Session-ID'] = id;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError('NETWORK', 'The server cannot be reached.');
  }
  let data;
  try {
    data = await response.json();
  } catch {
    throw new ApiError('FAILED', `The server answered ${response.status} without JSON.`);
  }
  if (data && data.error) {
    const { code, message, ...details } = data.error;
    throw new ApiError(code ?? 'FAILED', message ?? code ?? 'Refused', details);
  }
  return data;
}

export const get = (/** @type {string} */ path) => call('GET', path);
export const post = (/** @type {string} */ path, /** @type {unknown} */ body = {}) =>
  call('POST', path, body);
export const patch = (/** @type {string} */ path, /** @type {unknown} */ body) =>
  call('PATCH', path, body);
export const del = (/** @type {string} */ path) => call('DELETE', path);

/**
 * Uploads an image with progress; resolves to its path.
 * @param {File | Blob} file
 * @param {(fraction: number) => void} progress
 * @returns {Promise<string>}
 */
export function uploadImage(file, progress) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    form.append('image', file, file instanceof File ? file.name : 'pasted.png');
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/api/upload-image');
    const id = session.get();
    if (id) xhr.setRequestHeader('X-Session-ID', id);
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) progress(e.loaded / e.total);
    };
    xhr.onerror = () => reject(new ApiError('NETWORK', 'The upload failed.'));
    xhr.onload = () => {
      try {
        const data = JSON.parse(xhr.responseText);
        if (data.error) reject(new ApiError(data.error.code, data.error.message ?? 'Refused'));
        else resolve(data.path);
      } catch {
        reject(new ApiError('FAILED', `The server answered ${xhr.status}.`));
      }
    };
    xhr.send(form);
  });
}
