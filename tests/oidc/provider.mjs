// The OpenID provider of the test suite: node-oidc-provider (OpenID certified) over HTTPS on a
// loopback port, configured by the test (tests/oidc_provider.py writes the settings file).
//
//   node provider.mjs SETTINGS.json
//
// Settings: {port, cert, key, jwks: {keys: [private JWKs]}, clients: [...],
//            accounts: {accountId: claims}, resources: {indicator: {audience, ttl, format}}}
// It prints one JSON line {"listening": port, "issuer": ...} once it serves, and reads commands
// on stdin, one JSON line each, answering one JSON line on stdout:
//   {"cmd": "keys", "jwks": {...}}  -> a key rotation: the provider signs with the new keys
//                                      and publishes them at its jwks_uri; tokens issued before
//                                      are no longer valid at the provider (new instance).
// It exits when stdin closes, so a test that dies never leaves it running.
//
// Tokens come from CIBA (OpenID Client-Initiated Backchannel Authentication, poll mode), the
// decoupled flow Pro Santé Connect offers to software: the client names the professional
// (login_hint = the national identifier), the professional approves on their e-CPS app, the
// client polls the token endpoint. Here the "app" approves at once. Access tokens are JWTs
// (RFC 9068) for the resource indicator (RFC 8707) the client asks for, or opaque for a
// resource configured with format "opaque" (validated by introspection, RFC 7662).

import fs from 'node:fs';
import https from 'node:https';
import readline from 'node:readline';

import Provider, { errors } from 'oidc-provider';

const settings = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));

function reply(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

function makeProvider(issuer, jwks) {
  const accounts = settings.accounts;
  const resources = settings.resources;
  let provider;
  const configuration = {
    clients: settings.clients,
    jwks,
    findAccount(ctx, id) {
      const claims = accounts[id];
      if (!claims) return undefined;
      return { accountId: id, claims: () => ({ sub: id, ...claims }) };
    },
    claims: {
      openid: ['sub'],
      profile: ['preferred_username', 'SubjectNameID', 'family_name', 'given_name'],
    },
    // PSC puts the national identifier in its access tokens: carry the account's claims
    // (preferred_username, SubjectNameID...) in the JWT access tokens too.
    async extraTokenClaims(ctx, token) {
      if (token.kind !== 'AccessToken' || !token.accountId) return undefined;
      const { sub, ...claims } = accounts[token.accountId] || {};
      return claims;
    },
    features: {
      devInteractions: { enabled: false },
      introspection: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => undefined,
        useGrantedResource: () => true,
        getResourceServerInfo(ctx, indicator) {
          const rs = resources[indicator];
          if (!rs) throw new errors.InvalidTarget();
          return {
            scope: 'mail',
            audience: rs.audience,
            accessTokenTTL: rs.ttl || 600,
            accessTokenFormat: rs.format || 'jwt',
            jwt: { sign: { alg: rs.alg || 'RS256' } },
          };
        },
      },
      ciba: {
        enabled: true,
        deliveryModes: ['poll'],
        processLoginHint: (ctx, hint) => (accounts[hint] ? hint : undefined),
        validateRequestContext: () => {},
        verifyUserCode: () => {},
        validateBindingMessage: () => {},
        async triggerAuthenticationDevice(ctx, request, account, client) {
          // The professional approves on the authentication device: at once, here.
          const grant = new provider.Grant({ clientId: client.clientId, accountId: account.accountId });
          grant.addOIDCScope(request.scope.split(' ').filter((s) => ['openid', 'profile'].includes(s)).join(' '));
          for (const indicator of [].concat(request.resource || [])) {
            grant.addResourceScope(indicator, 'mail');
          }
          await grant.save();
          await provider.backchannelResult(request, grant);
        },
      },
    },
    scopes: ['openid', 'profile', 'mail'],
  };
  provider = new Provider(issuer, configuration);
  provider.proxy = false;
  return provider;
}

const server = https.createServer({
  cert: fs.readFileSync(settings.cert),
  key: fs.readFileSync(settings.key),
});
let handler = (req, res) => { res.statusCode = 503; res.end(); };
server.on('request', (req, res) => handler(req, res));

server.listen(settings.port || 0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `https://127.0.0.1:${port}`;
  handler = makeProvider(issuer, settings.jwks).callback();
  reply({ listening: port, issuer });

  const lines = readline.createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    let command;
    try {
      command = JSON.parse(line);
      if (command.cmd === 'keys') {
        handler = makeProvider(issuer, command.jwks).callback();
        reply({ ok: 'keys' });
      } else {
        reply({ error: `unknown command ${command.cmd}` });
      }
    } catch (err) {
      reply({ error: String(err) });
    }
  });
  lines.on('close', () => process.exit(0));
});
