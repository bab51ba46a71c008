// writ's interactive flow driven by openid-client (v6), a certified OAuth client that is
// not writ's code: discovery from the issuer alone, dynamic registration, the
// authorization code with PKCE and the RFC 9207 `iss` check, a rotating refresh, and
// introspection and revocation. The person's part (sign-in, consent with one scope
// unticked) is done by ./browser.mjs with plain fetch.
//
//   node openid_client.mjs --issuer=http://127.0.0.1:8080 --email=ada@example.com \
//       --password='...' [--registration-token=...]
// (or WRIT_ISSUER, WRIT_EMAIL, WRIT_PASSWORD, WRIT_REGISTRATION_TOKEN). Exits 0 when every
// step did what the RFCs say, 1 with the failing step otherwise.
//
// The client is confidential (client_secret_basic): writ's introspection and revocation
// endpoints take authenticated clients only (RFC 7662 §2.1, RFC 7009 §2.1), so a public
// client could not do the last two steps.

import * as client from 'openid-client';
import { Browser, check, fail, setting } from './browser.mjs';

const issuer = new URL(setting('issuer', 'WRIT_ISSUER'));
const email = setting('email', 'WRIT_EMAIL');
const password = setting('password', 'WRIT_PASSWORD');
const registrationToken = setting('registration-token', 'WRIT_REGISTRATION_TOKEN', '-');
// Never contacted: the browser reads the redirect's Location instead of following it.
const redirectUri = 'http://127.0.0.1:9/callback';
const scopes = ['files:read', 'files:write'];
// writ speaks RFC 8414, not OpenID Connect discovery; plain http is a loopback test server.
const options = { algorithm: 'oauth2', execute: [client.allowInsecureRequests] };

/** Runs `step`; its failure ends the run naming the step. */
async function step(name, run) {
  try {
    const result = await run();
    console.log(`ok: ${name}`);
    return result;
  } catch (err) {
    const detail = err.cause ? ` (${JSON.stringify(err.cause)})` : '';
    fail(`${name}: ${err.code ?? err.name}: ${err.message}${detail}`);
  }
}

/** Whether openid-client refuses `location` as the authorization response for its `parameter`. */
async function refuses(config, location, checks, parameter) {
  try {
    await client.authorizationCodeGrant(config, new URL(location), checks);
    return false;
  } catch (err) {
    const why = err.cause?.message ?? err.message;
    check(why.includes(`"${parameter}"`), `openid-client refused for another reason: ${why}`);
    return true;
  }
}

const registered = await step('dynamic registration (RFC 7591) after discovery', () =>
  client.dynamicClientRegistration(
    issuer,
    {
      client_name: 'openid-client test',
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: scopes.join(' '),
    },
    client.ClientSecretBasic(),
    { ...options, initialAccessToken: registrationToken === '-' ? undefined : registrationToken },
  ),
);
const { client_id: clientId, client_secret: clientSecret } = registered.clientMetadata();
check(clientId && clientSecret, `registration gave no client_id and client_secret`);

// A fresh configuration from the issuer and the registered credentials, as the
// application would make it on its next start.
const config = await step('discovery (RFC 8414) from the issuer', () =>
  client.discovery(issuer, clientId, clientSecret, client.ClientSecretBasic(), options),
);
const metadata = config.serverMetadata();
check(
  metadata.authorization_response_iss_parameter_supported === true,
  'the metadata does not promise iss in authorization responses',
);
check(config.serverMetadata().supportsPKCE('S256'), 'the metadata does not offer PKCE S256');

const verifier = client.randomPKCECodeVerifier();
const state = client.randomState();
const authorizationUrl = client.buildAuthorizationUrl(config, {
  redirect_uri: redirectUri,
  scope: scopes.join(' '),
  code_challenge: await client.calculatePKCECodeChallenge(verifier),
  code_challenge_method: 'S256',
  state,
});

const browser = new Browser(issuer);
const answered = await step('sign-in and consent, files:write unticked', () =>
  browser.authorize(authorizationUrl, { email, password, keep: (scope) => scope !== 'files:write' }),
);
check(
  JSON.stringify(answered.scopes) === JSON.stringify(scopes),
  `the consent page offered ${answered.scopes}, not ${scopes}`,
);
const callback = new URL(answered.location);
check(callback.href.startsWith(redirectUri), `writ redirected to ${callback}, not ${redirectUri}`);

// The library's own checks, before the code is spent: another state, a forged or
// missing iss are each refused.
const checks = { pkceCodeVerifier: verifier, expectedState: state };
const forged = new URL(callback);
forged.searchParams.set('iss', 'https://attacker.example');
const missing = new URL(callback);
missing.searchParams.delete('iss');
check(
  await refuses(config, callback, { ...checks, expectedState: 'another-state' }, 'state'),
  'openid-client accepted the response for another state',
);
check(await refuses(config, forged, checks, 'iss'), 'openid-client accepted a forged iss');
check(await refuses(config, missing, checks, 'iss'), 'openid-client accepted a response without iss');

const tokens = await step('code exchange with the PKCE verifier, state and iss checked', () =>
  client.authorizationCodeGrant(config, callback, checks),
);
check(tokens.scope === 'files:read', `the code gave scope "${tokens.scope}", not the ticked files:read`);
check(tokens.token_type?.toLowerCase() === 'bearer', `token_type ${tokens.token_type}`);
check(tokens.refresh_token, 'the code exchange gave no refresh token');
check(tokens.expiresIn() > 0, 'the access token has no lifetime');

const refreshed = await step('refresh (rotating)', () =>
  client.refreshTokenGrant(config, tokens.refresh_token),
);
check(refreshed.refresh_token && refreshed.refresh_token !== tokens.refresh_token, 'the refresh token did not rotate');
check(refreshed.access_token !== tokens.access_token, 'the refresh gave the same access token');
check(refreshed.scope === 'files:read', `the refresh gave scope "${refreshed.scope}"`);

const live = await step('introspection (RFC 7662)', () =>
  client.tokenIntrospection(config, refreshed.access_token),
);
check(live.active === true, `the refreshed access token is not active: ${JSON.stringify(live)}`);
check(live.client_id === clientId, `introspection names client ${live.client_id}`);
check(live.scope === 'files:read', `introspection says scope "${live.scope}"`);
check(live.iss === metadata.issuer, `introspection names issuer ${live.iss}`);

await step('revocation (RFC 7009)', () => client.tokenRevocation(config, refreshed.access_token));
const revoked = await step('introspection after revocation', () =>
  client.tokenIntrospection(config, refreshed.access_token),
);
check(revoked.active === false, `the revoked token is still active: ${JSON.stringify(revoked)}`);

// A refresh token is revoked with its family (RFC 7009 §2.1): it refreshes no more.
await step('revocation of the refresh token (RFC 7009)', () =>
  client.tokenRevocation(config, refreshed.refresh_token),
);
let refusedAfterRevocation = null;
try {
  await client.refreshTokenGrant(config, refreshed.refresh_token);
} catch (err) {
  refusedAfterRevocation = err;
}
check(
  refusedAfterRevocation?.error === 'invalid_grant',
  `a revoked refresh token still refreshed, or failed otherwise: ${refusedAfterRevocation}`,
);
console.log('ok: the revoked refresh token is refused (invalid_grant)');

console.log(`openid-client: every step passed for ${clientId}`);
