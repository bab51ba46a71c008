// The person's browser, for the third-party client tests: plain `fetch` with redirects
// handled by hand and one cookie jar, through writ's sign-in and consent pages, as a
// person would click through them. It reads the pages' forms as HTML, so a change to
// their field names fails these tests, as it would break a real browser's form posts.

/** Stops the run with `message`: each client test exits non-zero on the first failure. */
export function fail(message) {
  console.error(`FAILED: ${message}`);
  process.exit(1);
}

/** Fails with `message` unless `condition` holds. */
export function check(condition, message) {
  if (!condition) fail(message);
}

/** A setting from `--name=value` on the command line, else the environment variable `env`. */
export function setting(name, env, fallback) {
  const flag = process.argv.find((arg) => arg.startsWith(`--${name}=`));
  const value = flag ? flag.slice(name.length + 3) : (process.env[env] ?? fallback);
  if (value === undefined || value === '') fail(`give --${name}=... or ${env}`);
  return value;
}

function unescapeHtml(text) {
  return text
    .replaceAll('&quot;', '"')
    .replaceAll('&#39;', "'")
    .replaceAll('&lt;', '<')
    .replaceAll('&gt;', '>')
    .replaceAll('&amp;', '&');
}

/** The `<input>` tags of `page` named `name`, each as a map of its attributes. */
function inputs(page, name) {
  const found = [];
  for (const [tag] of page.matchAll(/<input\b[^>]*>/g)) {
    const attributes = {};
    for (const [, key, quoted] of tag.matchAll(/([a-zA-Z_-]+)(?:="([^"]*)")?/g)) {
      attributes[key] = quoted === undefined ? '' : unescapeHtml(quoted);
    }
    if (attributes.name === name) found.push(attributes);
  }
  return found;
}

/** A cookie-keeping browser that follows no redirect by itself. */
export class Browser {
  constructor(base) {
    this.base = base;
    this.cookies = new Map();
  }

  async request(url, init = {}) {
    const headers = new Headers(init.headers);
    if (this.cookies.size > 0) {
      headers.set('cookie', [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '));
    }
    const response = await fetch(new URL(url, this.base), { ...init, headers, redirect: 'manual' });
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const at = pair.indexOf('=');
      this.cookies.set(pair.slice(0, at).trim(), pair.slice(at + 1).trim());
    }
    return response;
  }

  async post(url, form) {
    return this.request(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(form),
    });
  }

  /**
   * Opens `authorizationUrl`, signs in as `email`, and answers the consent page with
   * `decision`, keeping ticked the scopes `keep` returns true for. Returns the consent
   * page's scopes and the `Location` writ sent the browser back to.
   */
  async authorize(authorizationUrl, { email, password, decision = 'approve', keep = () => true }) {
    const first = await this.request(authorizationUrl);
    check(first.status === 303, `GET /oauth/authorize answered ${first.status}: ${await first.text()}`);
    const login = first.headers.get('location');
    check(login?.startsWith('/login?'), `the authorization endpoint sent the browser to ${login}, not /login`);

    const form = await this.request(login);
    check(form.status === 200, `GET ${login} answered ${form.status}`);
    const [returnTo] = inputs(await form.text(), 'return_to');
    check(returnTo !== undefined, 'the sign-in page has no hidden return_to field');
    const signedIn = await this.post('/login', { email, password, return_to: returnTo.value });
    check(signedIn.status === 303, `POST /login answered ${signedIn.status}: ${await signedIn.text()}`);
    check(this.cookies.has('writ_session'), 'signing in set no writ_session cookie');
    const back = signedIn.headers.get('location');
    check(back === returnTo.value, `after sign-in writ sent the browser to ${back}, not ${returnTo.value}`);

    const consent = await this.request(back);
    const page = await consent.text();
    check(consent.status === 200, `the consent page answered ${consent.status}: ${page}`);
    const [request] = inputs(page, 'request');
    check(request?.type === 'hidden', 'the consent page has no hidden request field');
    const scopes = inputs(page, 'scope').map((box) => box.value);
    const answer = new URLSearchParams({ request: request.value, decision });
    for (const scope of scopes.filter(keep)) answer.append('scope', scope);

    const answered = await this.request('/oauth/authorize', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: answer,
    });
    check(answered.status === 303, `the consent answer got ${answered.status}: ${await answered.text()}`);
    return { scopes, location: answered.headers.get('location') };
  }
}
