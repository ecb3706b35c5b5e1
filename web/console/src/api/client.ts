// The console's REST API (/api/v1/, DESIGN §7). The UI is authenticated by the session
// cookie the console sets at login; every request that changes something carries the
// CSRF token from the login answer in X-CSRF-Token. Errors come back as ApiError with the
// console's {"error", "details"}.

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly details: unknown[] = [],
  ) {
    super(message);
  }
  /** The message and each detail, one a line, for an error box. */
  get lines(): string[] {
    return [this.message, ...this.details.map((d) => (typeof d === 'string' ? d : JSON.stringify(d)))];
  }
}

const CSRF_KEY = 'cap.csrf';
let onUnauthorized: (() => void) | undefined;

/** Called when a request answers 401 (the session ended): the app goes to the login page. */
export function setUnauthorizedHandler(f: () => void): void {
  onUnauthorized = f;
}

export function setCsrf(token: string): void {
  if (token) sessionStorage.setItem(CSRF_KEY, token);
  else sessionStorage.removeItem(CSRF_KEY);
}

function headersFor(method: string, extra: Record<string, string> = {}): Record<string, string> {
  const h: Record<string, string> = { Accept: 'application/json', ...extra };
  const csrf = sessionStorage.getItem(CSRF_KEY);
  if (method !== 'GET' && method !== 'HEAD' && csrf) h['X-CSRF-Token'] = csrf;
  return h;
}

async function errorFrom(res: Response): Promise<ApiError> {
  let message = `${res.status} ${res.statusText}`;
  let details: unknown[] = [];
  try {
    const body = await res.json();
    if (body && typeof body.error === 'string') message = body.error;
    if (body && Array.isArray(body.details)) details = body.details;
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(res.status, message, details);
}

/** Sends a request to /api/v1`path`; JSON bodies for objects, raw bytes for Uint8Array/Blob. */
export async function request(
  method: string,
  path: string,
  body?: unknown,
  contentType?: string,
): Promise<Response> {
  let payload: BodyInit | undefined;
  const extra: Record<string, string> = {};
  if (body instanceof Uint8Array || body instanceof Blob || body instanceof ArrayBuffer) {
    payload = body as BodyInit;
    extra['Content-Type'] = contentType ?? 'application/octet-stream';
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    extra['Content-Type'] = 'application/json';
  }
  let res: Response;
  try {
    res = await fetch(`/api/v1${path}`, {
      method,
      body: payload,
      headers: headersFor(method, extra),
      credentials: 'same-origin',
    });
  } catch (e) {
    throw new ApiError(0, `the console did not answer: ${(e as Error).message}`);
  }
  if (!res.ok) {
    const err = await errorFrom(res);
    if (res.status === 401 && !path.startsWith('/auth/')) onUnauthorized?.();
    throw err;
  }
  return res;
}

export async function getJson<T>(path: string): Promise<T> {
  return (await request('GET', path)).json() as Promise<T>;
}

export async function sendJson<T>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await request(method, path, body);
  const text = await res.text();
  return (text ? JSON.parse(text) : {}) as T;
}

/**
 * Uploads bytes with progress (fetch cannot report upload progress). `onProgress` gets
 * the fraction sent, 0..1.
 */
export function upload<T>(
  method: string,
  path: string,
  body: Blob,
  contentType: string,
  onProgress: (fraction: number) => void,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, `/api/v1${path}`);
    for (const [k, v] of Object.entries(headersFor(method, { 'Content-Type': contentType }))) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onerror = () => reject(new ApiError(0, 'the console did not answer'));
    xhr.onload = () => {
      let body: { error?: string; details?: unknown[] } = {};
      try {
        body = JSON.parse(xhr.responseText || '{}');
      } catch {
        // keep {}
      }
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(1);
        resolve(body as T);
      } else {
        if (xhr.status === 401) onUnauthorized?.();
        reject(new ApiError(xhr.status, body.error ?? `${xhr.status} ${xhr.statusText}`, body.details ?? []));
      }
    };
    xhr.send(body);
  });
}

/** Percent-encodes each path segment. */
export function seg(...parts: string[]): string {
  return parts.map((p) => '/' + encodeURIComponent(p)).join('');
}
