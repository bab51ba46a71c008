// An upstream OAuth provider for writ's tests: node-oidc-provider on loopback, standing in
// for a service such as Slack whose MCP server writ calls with a person's own token.
//
// Environment:
//   UPSTREAM_PORT          the loopback port (required)
//   UPSTREAM_REDIRECT_URI  writ's connection callback, the one redirect URI of its client
//   UPSTREAM_ACCESS_TTL    access token lifetime in seconds (default 3600)
//   UPSTREAM_TOKEN_LOG     a file to which every token issued is appended, as
//                          "access <token>" or "refresh <token>" (tests look for them
//                          in writ's files, where none may be, and introspect them)
//
// PUT /control/revocation-down takes the RFC 7009 revocation endpoint down (503) and
// DELETE /control/revocation-down brings it back.
//
// One confidential client, `writ-app` / `writ-app-secret-0123456789abcdef`
// (client_secret_basic), for authorization code + PKCE and rotating refresh tokens, and
// one resource server client, `mcp-rs` / `mcp-rs-secret-0123456789abcdef`, for the test
// MCP server's RFC 7662 introspection. Interactions complete by themselves: the person is
// the account named by `login_hint`, and consent is given to what was asked, so a test's
// HTTP client (with a cookie store) only follows redirects.
import { appendFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const PORT = +process.env.UPSTREAM_PORT;
const ISSUER = `http://127.0.0.1:${PORT}`;
const ACCESS_TTL = +(process.env.UPSTREAM_ACCESS_TTL || 3600);
const provider = new Provider(ISSUER, {
  clients: [
    {
      client_id: 'writ-app', client_secret: 'writ-app-secret-0123456789abcdef',
      grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'],
      redirect_uris: [process.env.UPSTREAM_REDIRECT_URI],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: 'openid offline_access channels:read chat:write',
    },
    {
      client_id: 'mcp-rs', client_secret: 'mcp-rs-secret-0123456789abcdef',
      grant_types: [], response_types: [], redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  scopes: ['openid', 'offline_access', 'channels:read', 'chat:write'],
  findAccount: (ctx, sub) => ({ accountId: sub, claims: () => ({ sub }) }),
  cookies: { keys: ['upstream-cookie-key-not-secret'] },
  pkce: { required: () => true },
  ttl: { AccessToken: ACCESS_TTL, RefreshToken: 86400, Interaction: 600, Session: 3600, Grant: 86400 },
  rotateRefreshToken: true,
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  features: {
    devInteractions: { enabled: false },
    introspection: { enabled: true },
    revocation: { enabled: true },
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
});

// The person named by login_hint signs in and consents to what the client asked for.
provider.use(async (ctx, next) => {
  const match = ctx.method === 'GET' && ctx.path.match(/^\/interaction\/([^/]+)$/);
  if (!match) return next();
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  const { prompt, params, session } = details;
  if (prompt.name === 'login') {
    const accountId = params.login_hint;
    if (!accountId) {
      ctx.status = 400;
      ctx.body = 'login_hint names the account to sign in as';
      return undefined;
    }
    return provider.interactionFinished(ctx.req, ctx.res, { login: { accountId } },
      { mergeWithLastSubmission: false });
  }
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
  if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
  if (prompt.details.missingResourceScopes) {
    for (const [indicator, scopes] of Object.entries(prompt.details.missingResourceScopes)) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
  }
  const grantId = await grant.save();
  return provider.interactionFinished(ctx.req, ctx.res, { consent: { grantId } },
    { mergeWithLastSubmission: true });
});

// Tests take the revocation endpoint down and bring it back: after PUT
// /control/revocation-down it answers 503, until DELETE /control/revocation-down.
let revocationDown = false;
provider.use(async (ctx, next) => {
  if (ctx.path === '/control/revocation-down') {
    revocationDown = ctx.method === 'PUT';
    ctx.status = 204;
    return undefined;
  }
  if (revocationDown && ctx.path === '/token/revocation') {
    ctx.status = 503;
    ctx.body = { error: 'temporarily_unavailable', error_description: 'down for maintenance' };
    return undefined;
  }
  return next();
});

// Opaque tokens' values are their ids.
const TOKEN_LOG = process.env.UPSTREAM_TOKEN_LOG;
if (TOKEN_LOG) {
  provider.on('access_token.saved', (token) => appendFileSync(TOKEN_LOG, `access ${token.jti}\n`));
  provider.on('refresh_token.saved', (token) => appendFileSync(TOKEN_LOG, `refresh ${token.jti}\n`));
}

provider.proxy = false;
provider.listen(PORT, '127.0.0.1', () => console.log(`upstream ${ISSUER} up`));
