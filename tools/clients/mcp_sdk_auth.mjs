// writ's gateway as an MCP client finds and uses it, driven by the MCP TypeScript SDK's
// own client auth (`auth()` from @modelcontextprotocol/sdk/client/auth.js), not writ's
// code: the gateway's 401 names its RFC 9728 metadata, which names writ as the
// authorization server; the SDK discovers writ (RFC 8414), registers a public client
// (RFC 7591), sends the person to the authorization endpoint with PKCE and the resource
// indicator (RFC 8707), and redeems the code; a second `auth()` refreshes. The person's
// part is ./browser.mjs. Then one tool call through the gateway with the token.
//
//   node mcp_sdk_auth.mjs --writ=http://127.0.0.1:8080 --server-id=srv_... \
//       --email=ada@example.com --password='...' [--admin-token=...]
// (or WRIT_ISSUER, WRIT_SERVER_ID, WRIT_EMAIL, WRIT_PASSWORD, WRIT_ADMIN_TOKEN). With the
// admin token, the operator's review of the new agent is done too (its policy set put),
// so the tool call goes through; without it the call must be refused by policy (403).
// Exits 0 when every step did what it should, 1 with the failing step otherwise.
//
// The client is public (token_endpoint_auth_method none), as MCP clients on a person's
// machine are (RFC 8252): the SDK registers without an initial access token, so writ must
// run with `--registration open` for it.

import { auth, extractWWWAuthenticateParams } from '@modelcontextprotocol/sdk/client/auth.js';
import { Browser, check, fail, setting } from './browser.mjs';

const writ = setting('writ', 'WRIT_ISSUER');
const serverId = setting('server-id', 'WRIT_SERVER_ID');
const email = setting('email', 'WRIT_EMAIL');
const password = setting('password', 'WRIT_PASSWORD');
const adminToken = setting('admin-token', 'WRIT_ADMIN_TOKEN', '-');
const serverUrl = new URL(`/api/v1/proxy/${serverId}/tools`, writ);
const redirectUrl = 'http://127.0.0.1:9/callback';

/** An in-memory OAuthClientProvider whose "browser" is ./browser.mjs. */
class TestProvider {
  constructor() {
    this.stored = {};
    this.browser = new Browser(writ);
  }
  get redirectUrl() {
    return redirectUrl;
  }
  get clientMetadata() {
    return {
      client_name: 'MCP SDK test',
      redirect_uris: [redirectUrl],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      scope: 'tools:call',
    };
  }
  state() {
    this.stored.state = crypto.randomUUID();
    return this.stored.state;
  }
  clientInformation() {
    return this.stored.client;
  }
  saveClientInformation(client) {
    this.stored.client = client;
  }
  tokens() {
    return this.stored.tokens;
  }
  saveTokens(tokens) {
    this.stored.tokens = tokens;
  }
  saveCodeVerifier(verifier) {
    this.stored.verifier = verifier;
  }
  codeVerifier() {
    return this.stored.verifier;
  }
  saveDiscoveryState(state) {
    this.stored.discovery = state;
  }
  discoveryState() {
    return this.stored.discovery;
  }
  /** The person signs in and approves; the callback's code is kept, as an app's redirect handler would. */
  async redirectToAuthorization(url) {
    this.stored.authorizationUrl = url;
    const { location } = await this.browser.authorize(url, { email, password });
    const back = new URL(location);
    // The SDK leaves the callback to the application: the state and RFC 9207's iss are
    // checked here, as its redirect handler must.
    check(back.href.startsWith(redirectUrl), `writ redirected to ${back}`);
    check(back.searchParams.get('state') === this.stored.state, 'the callback carries another state');
    const iss = back.searchParams.get('iss');
    const issuer = this.stored.discovery?.authorizationServerMetadata?.issuer;
    check(iss && iss === issuer, `the callback's iss ${iss} is not the issuer ${issuer}`);
    const error = back.searchParams.get('error');
    check(!error, `writ answered ${error}: ${back.searchParams.get('error_description')}`);
    this.stored.code = back.searchParams.get('code');
  }
}

async function step(name, run) {
  try {
    const result = await run();
    console.log(`ok: ${name}`);
    return result;
  } catch (err) {
    fail(`${name}: ${err.name}: ${err.message}`);
  }
}

function callTool(token) {
  const headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  return fetch(serverUrl, {
    method: 'POST',
    headers,
    body: JSON.stringify({ tool_name: 'echo', arguments: { text: 'hello from the MCP SDK' } }),
  });
}

// As the SDK's transports do: the resource's 401 names where its metadata is.
const refused = await callTool();
check(refused.status === 401, `the gateway answered ${refused.status} without a token`);
const { resourceMetadataUrl } = extractWWWAuthenticateParams(refused);
check(resourceMetadataUrl, `no resource_metadata in ${refused.headers.get('www-authenticate')}`);

const provider = new TestProvider();
const started = await step('auth(): discovery, registration, authorization request', () =>
  auth(provider, { serverUrl, resourceMetadataUrl }),
);
check(started === 'REDIRECT', `auth() answered ${started}, not REDIRECT`);
const asked = provider.stored.authorizationUrl;
const resource = provider.stored.discovery?.resourceMetadata?.resource;
check(resource === new URL('/api/v1/proxy', writ).href, `the protected resource is ${resource}`);
check(asked.searchParams.get('resource') === resource, `the SDK asked for resource ${asked.searchParams.get('resource')}`);
check(asked.searchParams.get('code_challenge_method') === 'S256', 'the SDK did not use PKCE S256');
check(provider.stored.client?.client_id, 'the SDK registered no client');
check(provider.stored.code, 'the callback carried no code');

const redeemed = await step('auth() with the authorization code', () =>
  auth(provider, { serverUrl, resourceMetadataUrl, authorizationCode: provider.stored.code }),
);
check(redeemed === 'AUTHORIZED', `auth() answered ${redeemed}, not AUTHORIZED`);
const first = provider.tokens();
check(first?.access_token && first.refresh_token, `auth() saved ${JSON.stringify(first)}`);
check(first.scope === 'tools:call', `the token's scope is ${first.scope}`);

const refreshed = await step('auth() again: the refresh token rotates', () =>
  auth(provider, { serverUrl, resourceMetadataUrl }),
);
check(refreshed === 'AUTHORIZED', `the refresh answered ${refreshed}`);
const second = provider.tokens();
check(second.refresh_token !== first.refresh_token, 'the refresh token did not rotate');
check(second.access_token !== first.access_token, 'the refresh gave the same access token');

const clientId = provider.stored.client.client_id;
if (adminToken === '-') {
  const denied = await callTool(second.access_token);
  check(denied.status === 403, `a call before the agent's review answered ${denied.status}: ${await denied.text()}`);
  console.log('ok: the tool call is refused by policy until the operator reviews the agent');
} else {
  // The operator's review of the agent that registered itself: a policy set for it.
  const review = await fetch(new URL(`/api/v1/agents/${clientId}/policy-set`, writ), {
    method: 'PUT',
    headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ policies: '@id("mcp-sdk-test") permit(principal, action, resource);' }),
  });
  check(review.status === 204, `putting the agent's policy set answered ${review.status}: ${await review.text()}`);
  const called = await callTool(second.access_token);
  const answer = await called.json().catch(() => null);
  check(called.status === 200, `the tool call answered ${called.status}: ${JSON.stringify(answer)}`);
  const text = answer?.result?.content?.[0]?.text;
  check(text === 'hello from the MCP SDK', `the tool answered ${JSON.stringify(answer)}`);
  console.log('ok: one tool call through the gateway with the SDK\'s token');
}
console.log(`MCP SDK: every step passed for ${clientId}`);
