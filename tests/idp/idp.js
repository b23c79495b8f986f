#!/usr/bin/env node
// The test IdP of hpcc's OAuth2 tests: one oauth2-mock-server (an OAuth2/OIDC
// issuer with a JWKS and the password and refresh_token grants) with what the
// mock leaves out and hpcc needs: a real password check, `aud` and `sub` in
// access tokens, refresh tokens that belong to a user and are rotated, a
// configurable token lifetime, and /test/ endpoints that mint the odd tokens
// (expired, wrong audience, unknown or forged key) and rotate keys for the
// scheduler's JWT tests. See README.md beside this file.
//
// The node modules come from scripts/npm-deps.sh (NODE_PATH, or found by
// running that script), never from the source tree.
'use strict';

const http = require('node:http');
const path = require('node:path');
const fs = require('node:fs');
const crypto = require('node:crypto');
const { execFileSync } = require('node:child_process');
const { pathToFileURL } = require('node:url');

function die(msg) {
  process.stderr.write(`idp: ${msg}\n`);
  process.exit(2);
}

function usage() {
  die('usage: idp.js [--port P] [--port-file F] [--issuer URL] [--alg RS256|ES256] ' +
      '[--audience AUD] [--user NAME:PASSWORD]... [--expires-in S]');
}

function parseArgs(argv) {
  const o = { port: 0, portFile: null, issuer: null, alg: 'RS256', audience: null, users: new Map(), expiresIn: 3600 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) usage();
      return argv[++i];
    };
    if (a === '--port') o.port = Number(next());
    else if (a === '--port-file') o.portFile = next();
    else if (a === '--issuer') o.issuer = next();
    else if (a === '--alg') o.alg = next();
    else if (a === '--audience') o.audience = next();
    else if (a === '--user') {
      const v = next();
      const colon = v.indexOf(':');
      if (colon <= 0) die(`--user wants NAME:PASSWORD, not '${v}'`);
      o.users.set(v.slice(0, colon), v.slice(colon + 1));
    } else if (a === '--expires-in') o.expiresIn = Number(next());
    else usage();
  }
  if (!Number.isInteger(o.port) || o.port < 0 || o.port > 65535) die('--port wants 0..65535');
  if (!['RS256', 'ES256'].includes(o.alg)) die('--alg wants RS256 or ES256');
  if (!Number.isInteger(o.expiresIn) || o.expiresIn <= 0) die('--expires-in wants a positive number of seconds');
  return o;
}

// The directories that may hold oauth2-mock-server: NODE_PATH, else the
// cache of scripts/npm-deps.sh (which installs it on first use).
function moduleDirs() {
  const fromEnv = (process.env.NODE_PATH || '').split(path.delimiter).filter(Boolean);
  if (fromEnv.length > 0) return fromEnv;
  const script = path.join(__dirname, '..', '..', 'scripts', 'npm-deps.sh');
  const out = execFileSync(script, [path.join(__dirname)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  return [out.trim()];
}

// The package is ESM only, and ESM resolution ignores NODE_PATH: resolve the
// file by hand, then import it by URL.
async function loadMock() {
  let file;
  try {
    file = require.resolve('oauth2-mock-server', { paths: moduleDirs() });
  } catch (e) {
    die(`cannot find oauth2-mock-server (run scripts/npm-deps.sh and set NODE_PATH to what it prints): ${e.message}`);
  }
  return import(pathToFileURL(file).href);
}

function b64urlFlip(segment) {
  const bytes = Buffer.from(segment, 'base64url');
  bytes[0] ^= 0x01;
  return bytes.toString('base64url');
}

function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-store' });
  res.end(text);
}

function intParam(q, name) {
  const v = q.get(name);
  if (v === null) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n)) throw new Error(`${name} wants an integer`);
  return n;
}

async function main() {
  const major = Number(process.versions.node.split('.')[0]);
  const minor = Number(process.versions.node.split('.')[1]);
  if (major < 20 || (major === 20 && minor < 19)) die(`node ${process.versions.node} is too old: oauth2-mock-server 8 needs >= 20.19`);
  const opts = parseArgs(process.argv.slice(2));
  const { OAuth2Issuer, OAuth2Service } = await loadMock();

  const issuer = new OAuth2Issuer();
  const service = new OAuth2Service(issuer);
  let currentKid = (await issuer.keys.generate(opts.alg)).kid;
  // The mock takes keys round-robin; tokens must use the newest key, so
  // that /test/add-key really changes what the next token is signed with.
  const keysGet = issuer.keys.get.bind(issuer.keys);
  issuer.keys.get = (kid) => keysGet(kid ?? currentKid);

  const stats = { jwks_fetches: 0, token_requests: 0 };
  const refreshTokens = new Map();  // refresh token -> { user, scope } (rotated on use)
  const tokensSigned = new WeakMap();  // request -> tokens signed so far (1st = access token)

  // Access tokens: sub is the user, aud the configured audience (else the
  // audience asked for, else the client), a jti, and our lifetime.
  service.on('beforeTokenSigning', (token, req) => {
    const n = tokensSigned.get(req) || 0;
    tokensSigned.set(req, n + 1);
    if (n !== 0) return;  // the id_token keeps what the mock gives it
    const body = req.body || {};
    let user;
    if (body.grant_type === 'password') user = body.username;
    else if (body.grant_type === 'refresh_token') {
      const grant = refreshTokens.get(body.refresh_token);
      user = grant && grant.user;
      // The mock says "dummy" when a refresh names no scope: keep the grant's.
      if (grant && body.scope === undefined) token.payload.scope = grant.scope;
    }
    if (user !== undefined) token.payload.sub = user;
    const aud = opts.audience || body.audience || body.client_id;
    if (aud !== undefined) token.payload.aud = aud;
    token.payload.jti = crypto.randomUUID();
    token.payload.exp = token.payload.iat + opts.expiresIn;
  });

  service.on('beforeResponse', (response, req) => {
    const body = req.body || {};
    const refuse = (error, description) => {
      response.statusCode = 400;
      response.body = { error, error_description: description };
    };
    if (response.statusCode !== 200) return;
    if (body.grant_type === 'password') {
      if (typeof body.username !== 'string' || typeof body.password !== 'string')
        return refuse('invalid_request', 'username and password are required');
      const want = opts.users.get(body.username);
      // Compared in constant time, as a real IdP would.
      const ok = want !== undefined && want.length === body.password.length &&
        crypto.timingSafeEqual(Buffer.from(want), Buffer.from(body.password));
      if (!ok) return refuse('invalid_grant', 'Invalid username or password');
      refreshTokens.set(response.body.refresh_token, { user: body.username, scope: body.scope });
    } else if (body.grant_type === 'refresh_token') {
      const grant = refreshTokens.get(body.refresh_token);
      if (grant === undefined) return refuse('invalid_grant', 'Invalid or expired refresh token');
      refreshTokens.delete(body.refresh_token);
      refreshTokens.set(response.body.refresh_token, grant);
      if (body.scope === undefined) response.body.scope = grant.scope;
    }
    if (response.body.expires_in !== undefined) response.body.expires_in = opts.expiresIn;
  });

  // A second issuer whose keys are in no JWKS, for kid_mode=unknown.
  const stranger = new OAuth2Issuer();

  async function testToken(q) {
    const now = Math.floor(Date.now() / 1000);
    const expIn = intParam(q, 'exp_in') ?? opts.expiresIn;
    const nbfIn = intParam(q, 'nbf_in');
    const mode = q.get('kid_mode') || 'normal';
    const transform = (_header, payload) => {
      payload.sub = q.get('sub') || 'alice';
      const aud = q.get('aud') ?? opts.audience;
      if (aud) payload.aud = aud;
      if (q.get('iss')) payload.iss = q.get('iss');
      payload.exp = now + expIn;
      if (nbfIn !== undefined) payload.nbf = now + nbfIn;
      payload.jti = crypto.randomUUID();
    };
    if (mode === 'unknown') {
      stranger.url = issuer.url;
      const kid = (await stranger.keys.generate(opts.alg)).kid;
      return stranger.buildToken({ kid, scopesOrTransform: transform });
    }
    const token = await issuer.buildToken({ scopesOrTransform: transform });
    if (mode === 'forged') {
      const parts = token.split('.');
      parts[2] = b64urlFlip(parts[2]);
      return parts.join('.');
    }
    if (mode !== 'normal') throw new Error('kid_mode wants normal, unknown or forged');
    return token;
  }

  async function handleTest(req, res, url) {
    const q = url.searchParams;
    if (url.pathname === '/test/token') return sendJson(res, 200, { access_token: await testToken(q) });
    if (url.pathname === '/test/add-key') {
      currentKid = (await issuer.keys.generate(opts.alg)).kid;
      return sendJson(res, 200, { kid: currentKid });
    }
    if (url.pathname === '/test/stats') return sendJson(res, 200, stats);
    if (url.pathname === '/test/revoke-refresh') {
      const n = refreshTokens.size;
      refreshTokens.clear();
      return sendJson(res, 200, { revoked: n });
    }
    return sendJson(res, 404, { error: 'not_found' });
  }

  const mock = service.requestHandler;
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://idp');
    if (url.pathname.startsWith('/test/') && req.method === 'GET') {
      handleTest(req, res, url).catch((e) => sendJson(res, 400, { error: 'invalid_request', error_description: e.message }));
      return;
    }
    if (url.pathname === '/jwks') stats.jwks_fetches++;
    if (url.pathname === '/token' && req.method === 'POST') stats.token_requests++;
    mock(req, res);
  });
  await new Promise((resolve, reject) => server.listen(opts.port, '127.0.0.1').on('listening', resolve).on('error', reject));
  const port = server.address().port;
  issuer.url = opts.issuer || `http://127.0.0.1:${port}`;
  if (opts.portFile) {
    const tmp = `${opts.portFile}.tmp${process.pid}`;
    fs.writeFileSync(tmp, `${port}\n`);
    fs.renameSync(tmp, opts.portFile);
  }
  process.stdout.write(`idp ready on port ${port}\n`);
  const stop = () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((e) => die(e.stack || String(e)));
