// A real OpenID Provider (npm oidc-provider) on loopback for the portal's identity tests.
//
// Usage: node server.mjs <config.json>
// The config file names the issuer, port and clients; its `accounts` (claims and acr per
// person) and `token_ttl` (seconds per client) are re-read on every use, so a test changes a
// person's claims by rewriting the file. Signing keys are made fresh at start-up, so two
// providers never share a key. GET /_test/stats counts the requests the portal made.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';

import Provider from 'oidc-provider';

const configPath = process.argv[2];
const readConfig = () => JSON.parse(readFileSync(configPath, 'utf8'));
const config = readConfig();

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), use: 'sig', alg: 'RS256' };

const stats = { discovery: 0, jwks: 0, token: 0, userinfo: 0 };
const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const provider = new Provider(config.issuer, {
  clients: config.clients,
  jwks: { keys: [signingKey] },
  acrValues: config.acr_values_supported ?? [],
  scopes: ['openid', 'email', 'profile', 'organization', 'groups', 'roles', 'offline_access'],
  claims: {
    openid: ['sub', 'acr', 'amr', 'auth_time'],
    email: ['email', 'email_verified'],
    profile: ['name', 'given_name', 'family_name'],
    organization: ['organization'],
    groups: ['groups'],
    roles: ['realm_access', 'resource_access'],
  },
  // Like Keycloak's mappers that add claims to the ID token as well as to userinfo.
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: (ctx) => (ctx.oidc.params.grant_type === 'client_credentials'
        ? config.api_audience : undefined),
      useGrantedResource: () => false,
      getResourceServerInfo: (ctx, resource, client) => ({
        scope: 'api',
        audience: resource,
        accessTokenFormat: 'jwt',
        accessTokenTTL: readConfig().token_ttl?.[client.clientId] ?? 300,
      }),
    },
  },
  findAccount: (ctx, sub) => {
    const account = readConfig().accounts[sub];
    if (!account) return undefined;
    return { accountId: sub, claims: () => ({ sub, ...account.claims }) };
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
});

provider.use(async (ctx, next) => {
  if (ctx.path === '/.well-known/openid-configuration') stats.discovery += 1;
  if (ctx.path === '/jwks') stats.jwks += 1;
  if (ctx.path === '/token') stats.token += 1;
  if (ctx.path === '/me') stats.userinfo += 1;
  await next();
});

function readForm(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => resolve(Object.fromEntries(new URLSearchParams(body))));
    req.on('error', reject);
  });
}

async function interaction(req, res, uid) {
  const details = await provider.interactionDetails(req, res);
  if (req.method === 'GET') {
    res.setHeader('content-type', 'text/html; charset=utf-8');
    res.end(`<!DOCTYPE html><title>Test IdP login</title>
<p id="client">${escape(details.params.client_id)}</p>
<p id="acr-values">${escape(details.params.acr_values ?? '')}</p>
<form method="post" action="/interaction/${escape(uid)}">
<input name="login"><input name="acr"><button type="submit">Sign in</button></form>`);
    return;
  }
  const form = await readForm(req);
  const account = readConfig().accounts[form.login];
  if (!account) {
    res.statusCode = 400;
    res.end('unknown account');
    return;
  }
  const grant = new provider.Grant({ accountId: form.login, clientId: details.params.client_id });
  grant.addOIDCScope(details.params.scope);
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, {
    login: { accountId: form.login, acr: form.acr || account.acr, amr: account.amr },
    consent: { grantId },
  }, { mergeWithLastSubmission: false });
}

const handler = provider.callback();
const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, config.issuer);
  try {
    if (url.pathname === '/_test/stats') {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(stats));
      return;
    }
    const match = url.pathname.match(/^\/interaction\/([^/]+)$/);
    if (match) {
      await interaction(req, res, match[1]);
      return;
    }
    handler(req, res);
  } catch (err) {
    res.statusCode = 500;
    res.end(String(err));
  }
});
server.listen(config.port, '127.0.0.1', () => {
  process.stdout.write(`listening ${config.issuer}\n`);
});
