#!/usr/bin/env node
// The test S3 server of hpcc's S3 client tests: s3rver 3.7 (an S3 emulator
// on the local file system) runs in-process on an internal loopback port;
// a front HTTP server verifies AWS Signature Version 4 on every request
// (s3rver does not: a wrong secret passes it) and only then proxies the
// request to s3rver. The front server also has /__test/ endpoints that
// inject failures and delays, corrupt stored objects and count requests.
// See README.md beside this file.
//
// The node modules come from scripts/npm-deps.sh (NODE_PATH, or found by
// running that script), never from the source tree.
'use strict';

const http = require('node:http');
const path = require('node:path');
const fs = require('node:fs');
const crypto = require('node:crypto');
const { execFileSync } = require('node:child_process');

function die(msg) {
  process.stderr.write(`s3: ${msg}\n`);
  process.exit(2);
}

function usage() {
  die('usage: s3.js --dir D [--port P] [--port-file F] [--bucket NAME]... ' +
      '[--access-key AK --secret-key SK]... [--region R] [--verbose]');
}

function parseArgs(argv) {
  // keys: access key -> secret; several pairs may be given (--access-key
  // then its --secret-key), so that tests can tell clients apart in stats.
  const o = { port: 0, portFile: null, dir: null, buckets: [], keys: null, lastKey: null, region: 'us-east-1', verbose: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) usage();
      return argv[++i];
    };
    if (a === '--port') o.port = Number(next());
    else if (a === '--port-file') o.portFile = next();
    else if (a === '--dir') o.dir = next();
    else if (a === '--bucket') o.buckets.push(next());
    else if (a === '--access-key') {
      o.keys = o.keys || {};
      o.lastKey = next();
      o.keys[o.lastKey] = o.keys[o.lastKey] || 'S3RVER';
    } else if (a === '--secret-key') {
      o.keys = o.keys || {};
      if (o.lastKey === null) o.lastKey = 'S3RVER';
      o.keys[o.lastKey] = next();
    }
    else if (a === '--region') o.region = next();
    else if (a === '--verbose') o.verbose = true;
    else usage();
  }
  if (!o.dir) die('--dir is required');
  if (!o.keys) o.keys = { S3RVER: 'S3RVER' };
  if (!Number.isInteger(o.port) || o.port < 0 || o.port > 65535) die('--port wants 0..65535');
  for (const b of o.buckets) {
    if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(b)) die(`bad bucket name '${b}'`);
  }
  return o;
}

// The directories that may hold s3rver: NODE_PATH, else the cache of
// scripts/npm-deps.sh (which installs it on first use).
function moduleDirs() {
  const fromEnv = (process.env.NODE_PATH || '').split(path.delimiter).filter(Boolean);
  if (fromEnv.length > 0) return fromEnv;
  const script = path.join(__dirname, '..', '..', 'scripts', 'npm-deps.sh');
  const out = execFileSync(script, [path.join(__dirname)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  return [out.trim()];
}

function loadS3rver() {
  try {
    return require(require.resolve('s3rver', { paths: moduleDirs() }));
  } catch (e) {
    return die(`cannot find s3rver (run scripts/npm-deps.sh tests/s3 and set NODE_PATH to what it prints): ${e.message}`);
  }
}

// ---- SigV4 -----------------------------------------------------------------

// RFC 3986 encoding as SigV4 wants it: everything but A-Z a-z 0-9 - . _ ~
// is %XX with upper-case hex; '/' kept in paths.
function uriEncode(s, keepSlash) {
  let out = '';
  for (const byte of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(byte);
    if (/[A-Za-z0-9\-._~]/.test(c) || (keepSlash && c === '/')) out += c;
    else out += '%' + byte.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

class S3Err extends Error {
  constructor(status, code, message, extra) {
    super(message);
    this.status = status;
    this.code = code;
    this.extra = extra || {};
  }
}

function pctDecode(s) {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new S3Err(400, 'InvalidURI', 'Could not parse the specified URI.');
  }
}

// The canonical URI: S3 does not normalise the path (no '.'/'..' or '//'
// removal) and encodes it once: the path as sent, decoded, re-encoded.
// A well-encoded path (upper-case hex) is thus taken exactly as sent.
function canonicalUri(rawPath) {
  return uriEncode(pctDecode(rawPath), true) || '/';
}

// The canonical query: every name=value pair decoded and re-encoded, sorted
// by name then value; an empty or missing value is `name=`.
function canonicalQuery(rawQuery, skip) {
  if (!rawQuery) return '';
  const pairs = [];
  for (const part of rawQuery.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const name = uriEncode(pctDecode(eq < 0 ? part : part.slice(0, eq)), false);
    const value = uriEncode(pctDecode(eq < 0 ? '' : part.slice(eq + 1)), false);
    if (skip && skip(name)) continue;
    pairs.push([name, value]);
  }
  pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
  return pairs.map(([n, v]) => `${n}=${v}`).join('&');
}

// Header values by lower-cased name from the raw headers (node would join
// repeated headers its own way): repeated ones joined with ',', each value
// trimmed with inner runs of spaces collapsed.
function rawHeaderMap(rawHeaders) {
  const m = new Map();
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i].toLowerCase();
    const value = rawHeaders[i + 1].trim().replace(/\s+/g, ' ');
    m.set(name, m.has(name) ? `${m.get(name)},${value}` : value);
  }
  return m;
}

function hmac(key, data) {
  return crypto.createHmac('sha256', key).update(data, 'utf8').digest();
}

function sha256hex(data) {
  return crypto.createHash('sha256').update(data).digest('hex');
}

function parseAmzDate(s) {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(s || '');
  if (!m) return null;
  return Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]);
}

// Verifies the request's SigV4 signature (Authorization header, or a
// presigned URL's X-Amz-* query). Throws S3Err when it does not hold.
// Returns the payload hash the body must match, or null.
function verifySigV4(opts, req, rawPath, rawQuery) {
  const headers = rawHeaderMap(req.rawHeaders);
  const auth = headers.get('authorization');
  const q = new URLSearchParams(rawQuery || '');
  let credential, signedHeaders, signature, amzDate, payloadHash, presigned = false;

  if (auth !== undefined) {
    const m = /^AWS4-HMAC-SHA256 (.*)$/.exec(auth);
    if (!m) {
      if (auth.startsWith('AWS ')) throw new S3Err(400, 'InvalidRequest', 'Please use AWS4-HMAC-SHA256 (signature version 2 is not accepted here).');
      throw new S3Err(400, 'InvalidArgument', 'Unsupported Authorization Type');
    }
    const fields = {};
    for (const f of m[1].split(',')) {
      const eq = f.indexOf('=');
      if (eq > 0) fields[f.slice(0, eq).trim()] = f.slice(eq + 1).trim();
    }
    ({ Credential: credential, SignedHeaders: signedHeaders, Signature: signature } = fields);
    if (!credential || !signedHeaders || !signature) {
      throw new S3Err(400, 'AuthorizationHeaderMalformed', 'The authorization header is malformed; it wants Credential, SignedHeaders and Signature.');
    }
    amzDate = headers.get('x-amz-date');
    if (amzDate === undefined) throw new S3Err(403, 'AccessDenied', 'AWS authentication requires a valid Date or x-amz-date header');
    payloadHash = headers.get('x-amz-content-sha256');
    if (payloadHash === undefined) throw new S3Err(400, 'InvalidRequest', 'Missing required header for this request: x-amz-content-sha256');
  } else if (q.has('X-Amz-Algorithm') || q.has('X-Amz-Signature') || q.has('X-Amz-Credential')) {
    presigned = true;
    if (q.get('X-Amz-Algorithm') !== 'AWS4-HMAC-SHA256') throw new S3Err(400, 'AuthorizationQueryParametersError', 'X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"');
    credential = q.get('X-Amz-Credential');
    signedHeaders = q.get('X-Amz-SignedHeaders');
    signature = q.get('X-Amz-Signature');
    amzDate = q.get('X-Amz-Date');
    if (!credential || !signedHeaders || !signature || !amzDate || !q.get('X-Amz-Expires')) {
      throw new S3Err(400, 'AuthorizationQueryParametersError', 'Query-string authentication requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.');
    }
    payloadHash = headers.get('x-amz-content-sha256') ?? 'UNSIGNED-PAYLOAD';
  } else {
    throw new S3Err(403, 'AccessDenied', 'Access Denied (the request is not signed)');
  }

  const cred = credential.split('/');
  if (cred.length !== 5) throw new S3Err(400, 'AuthorizationHeaderMalformed', `The authorization header is malformed; the Credential is mal-formed; expecting "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".`);
  const [ak, day, region, service, term] = cred;
  if (!Object.prototype.hasOwnProperty.call(opts.keys, ak)) throw new S3Err(403, 'InvalidAccessKeyId', 'The AWS Access Key Id you provided does not exist in our records.', { AWSAccessKeyId: ak });
  if (service !== 's3' || term !== 'aws4_request') throw new S3Err(400, 'AuthorizationHeaderMalformed', `The authorization header is malformed; the service must be 's3' and the terminator 'aws4_request'.`);
  if (region !== opts.region) throw new S3Err(400, 'AuthorizationHeaderMalformed', `The authorization header is malformed; the region '${region}' is wrong; expecting '${opts.region}'`, { Region: opts.region });
  const t = parseAmzDate(amzDate);
  if (t === null) throw new S3Err(403, 'AccessDenied', `Invalid date '${amzDate}': x-amz-date wants YYYYMMDDTHHMMSSZ`);
  if (day !== amzDate.slice(0, 8)) throw new S3Err(400, 'AuthorizationHeaderMalformed', `The authorization header is malformed; Invalid credential date "${day}". This date is not the same as X-Amz-Date: "${amzDate.slice(0, 8)}".`);
  const now = Date.now();
  if (presigned) {
    const expires = Number(q.get('X-Amz-Expires'));
    if (!Number.isInteger(expires) || expires < 0 || expires > 604800) throw new S3Err(400, 'AuthorizationQueryParametersError', 'X-Amz-Expires must be 0..604800 seconds');
    if (t - now > 15 * 60 * 1000) throw new S3Err(403, 'AccessDenied', 'Request is not valid yet');
    if (now > t + expires * 1000) throw new S3Err(403, 'AccessDenied', 'Request has expired', { Expires: new Date(t + expires * 1000).toISOString(), ServerTime: new Date(now).toISOString() });
  } else if (Math.abs(now - t) > 15 * 60 * 1000) {
    throw new S3Err(403, 'RequestTimeTooSkewed', 'The difference between the request time and the current time is too large.', { RequestTime: amzDate, ServerTime: new Date(now).toISOString(), MaxAllowedSkewMilliseconds: 900000 });
  }

  const names = signedHeaders.split(';');
  const sorted = [...names].sort();
  if (names.some((n) => n !== n.toLowerCase() || n === '') || names.join(';') !== sorted.join(';')) {
    throw new S3Err(400, 'AuthorizationHeaderMalformed', 'The authorization header is malformed; SignedHeaders must be lower case, sorted, separated by ";".');
  }
  if (!names.includes('host')) throw new S3Err(403, 'AccessDenied', 'There were headers present in the request which were not signed', { HeadersNotSigned: 'host' });
  const unsigned = [...headers.keys()].filter((n) => n.startsWith('x-amz-') && !names.includes(n));
  if (unsigned.length > 0) throw new S3Err(403, 'AccessDenied', 'There were headers present in the request which were not signed', { HeadersNotSigned: unsigned.join(', ') });
  for (const n of names) {
    if (!headers.has(n)) throw new S3Err(403, 'SignatureDoesNotMatch', `The request signature we calculated does not match the signature you provided (signed header '${n}' is missing).`);
  }

  const canonicalRequest = [
    req.method,
    canonicalUri(rawPath),
    canonicalQuery(rawQuery, presigned ? (n) => n === 'X-Amz-Signature' : null),
    names.map((n) => `${n}:${headers.get(n)}\n`).join(''),
    signedHeaders,
    payloadHash,
  ].join('\n');
  const scope = `${day}/${region}/${service}/${term}`;
  const stringToSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256hex(canonicalRequest)].join('\n');
  const kDate = hmac(`AWS4${opts.keys[ak]}`, day);
  const kSigning = hmac(hmac(hmac(kDate, region), service), term);
  const expected = hmac(kSigning, stringToSign);
  const given = /^[0-9a-f]{64}$/.test(signature) ? Buffer.from(signature, 'hex') : Buffer.alloc(32);
  if (!crypto.timingSafeEqual(expected, given)) {
    throw new S3Err(403, 'SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided. Check your key and signing method.', {
      AWSAccessKeyId: ak,
      StringToSign: stringToSign,
      SignatureProvided: signature,
      CanonicalRequest: canonicalRequest,
    });
  }
  if (payloadHash === 'UNSIGNED-PAYLOAD') return null;
  if (payloadHash.startsWith('STREAMING-')) throw new S3Err(501, 'NotImplemented', `x-amz-content-sha256 '${payloadHash}' (aws-chunked uploads) is not supported by this test server`);
  if (!/^[0-9a-f]{64}$/.test(payloadHash)) throw new S3Err(400, 'InvalidArgument', 'x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD, or a valid sha256 value.');
  return payloadHash;
}

// ---- the front server ------------------------------------------------------

function xmlEscape(s) {
  return String(s).replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' }[c]));
}

function sendS3Error(req, res, err, resource) {
  const requestId = crypto.randomBytes(8).toString('hex').toUpperCase();
  let body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${xmlEscape(err.code)}</Code><Message>${xmlEscape(err.message)}</Message>`;
  for (const [k, v] of Object.entries(err.extra || {})) body += `<${k}>${xmlEscape(v)}</${k}>`;
  body += `<Resource>${xmlEscape(resource)}</Resource><RequestId>${requestId}</RequestId></Error>`;
  const h = { 'Content-Type': 'application/xml', 'x-amz-request-id': requestId, Connection: 'close' };
  if (req.method === 'HEAD') {
    res.writeHead(err.status, h);
    res.end();
  } else {
    h['Content-Length'] = Buffer.byteLength(body);
    res.writeHead(err.status, h);
    res.end(body);
  }
}

function sendJson(res, status, body) {
  const text = JSON.stringify(body) + '\n';
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-store' });
  res.end(text);
}

function intParam(q, name, dflt, min = 0) {
  const v = q.get(name);
  if (v === null) {
    if (dflt === undefined) throw new Error(`${name} is required`);
    return dflt;
  }
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name} wants an integer >= ${min}`);
  return n;
}

const FAIL_CODES = { 500: 'InternalError', 503: 'SlowDown', 400: 'BadRequest', 403: 'AccessDenied', 404: 'NoSuchKey', 429: 'SlowDown' };

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const S3rver = loadS3rver();
  fs.mkdirSync(opts.dir, { recursive: true });

  const s3rver = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: !opts.verbose,
    directory: path.resolve(opts.dir),
    vhostBuckets: false,
    configureBuckets: opts.buckets.map((name) => ({ name, configs: [] })),
  });
  const inner = await s3rver.run();
  const innerPort = inner.port;

  const stats = { requests: 0, forwarded: 0, refused: 0, injected_failures: 0, delayed: 0, methods: {}, errors: {}, by_key: {} };
  const failures = [];  // { status, code, count, method }
  const delays = [];    // { ms, count, method }
  const sockets = new Set();

  function takeRule(list, method) {
    const i = list.findIndex((r) => !r.method || r.method === method);
    if (i < 0) return null;
    const r = list[i];
    if (--r.count <= 0) list.splice(i, 1);
    return r;
  }

  function testEndpoint(req, res, name, q) {
    try {
      if (name === 'stats') {
        const out = { ...stats, methods: { ...stats.methods }, errors: { ...stats.errors }, by_key: JSON.parse(JSON.stringify(stats.by_key)), pending_failures: failures.map((r) => ({ ...r })), pending_delays: delays.map((r) => ({ ...r })) };
        if (q.get('reset') === '1') {
          Object.assign(stats, { requests: 0, forwarded: 0, refused: 0, injected_failures: 0, delayed: 0, methods: {}, errors: {}, by_key: {} });
        }
        return sendJson(res, 200, out);
      }
      if (name === 'fail') {
        const status = intParam(q, 'status', 503, 100);
        const count = intParam(q, 'count', 1, 0);
        const code = q.get('code') || FAIL_CODES[status] || 'InternalError';
        if (count > 0) failures.push({ status, code, count, method: q.get('method') || null });
        return sendJson(res, 200, { ok: true, status, code, count });
      }
      if (name === 'delay') {
        const ms = intParam(q, 'ms', undefined, 0);
        const count = intParam(q, 'count', 1, 0);
        if (count > 0) delays.push({ ms, count, method: q.get('method') || null });
        return sendJson(res, 200, { ok: true, ms, count });
      }
      if (name === 'clear') {
        failures.length = 0;
        delays.length = 0;
        return sendJson(res, 200, { ok: true });
      }
      if (name === 'corrupt') {
        const bucket = q.get('bucket') || opts.buckets[0];
        const key = q.get('key');
        if (!bucket || !key) throw new Error('corrupt wants key= (and bucket= unless --bucket was given)');
        const file = s3rver.store.getResourcePath(bucket, key, 'object');
        if (!file.startsWith(path.resolve(opts.dir) + path.sep)) throw new Error('the key leaves --dir');
        let fd;
        try {
          fd = fs.openSync(file, 'r+');
        } catch (e) {
          return sendJson(res, 404, { error: `no such object ${bucket}/${key} (${e.code})` });
        }
        try {
          const size = fs.fstatSync(fd).size;
          if (size === 0) return sendJson(res, 409, { error: 'the object is empty: nothing to flip' });
          const offset = q.get('offset') === null ? Math.floor(size / 2) : intParam(q, 'offset', 0, 0);
          if (offset >= size) throw new Error(`offset ${offset} is past the object's ${size} bytes`);
          const b = Buffer.alloc(1);
          fs.readSync(fd, b, 0, 1, offset);
          b[0] ^= 0x01;
          fs.writeSync(fd, b, 0, 1, offset);
          return sendJson(res, 200, { ok: true, bucket, key, offset, size, file });
        } finally {
          fs.closeSync(fd);
        }
      }
      if (name === 'path') {
        const bucket = q.get('bucket') || opts.buckets[0];
        const key = q.get('key');
        if (!bucket || !key) throw new Error('path wants key= (and bucket= unless --bucket was given)');
        return sendJson(res, 200, { bucket, key, file: s3rver.store.getResourcePath(bucket, key, 'object') });
      }
      return sendJson(res, 404, { error: `no test endpoint ${name}` });
    } catch (e) {
      return sendJson(res, 400, { error: e.message });
    }
  }

  function forward(req, res, body) {
    stats.forwarded++;
    const h = { ...req.headers, 'content-length': String(body.length) };
    delete h['transfer-encoding'];
    delete h.connection;
    // Checked here already; s3rver would check the access key against its
    // own (S3RVER) and refuse ours, so it gets the request unsigned.
    delete h.authorization;
    const up = http.request({ host: '127.0.0.1', port: innerPort, method: req.method, path: req.url, headers: h }, (ur) => {
      res.writeHead(ur.statusCode, ur.statusMessage, ur.headers);
      ur.pipe(res);
    });
    up.on('error', (e) => {
      if (!res.headersSent) sendS3Error(req, res, new S3Err(500, 'InternalError', `s3rver: ${e.message}`), req.url);
      else res.destroy();
    });
    res.on('close', () => up.destroy());
    up.end(body);
  }

  const front = http.createServer((req, res) => {
    const url = req.url || '/';
    const qi = url.indexOf('?');
    const rawPath = qi < 0 ? url : url.slice(0, qi);
    const rawQuery = qi < 0 ? '' : url.slice(qi + 1);

    if (rawPath.startsWith('/__test/')) {
      req.resume();
      return testEndpoint(req, res, rawPath.slice('/__test/'.length), new URLSearchParams(rawQuery));
    }

    stats.requests++;
    stats.methods[req.method] = (stats.methods[req.method] || 0) + 1;
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('error', () => res.destroy());
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const refuse = (err) => {
        stats.refused++;
        stats.errors[err.code] = (stats.errors[err.code] || 0) + 1;
        if (opts.verbose) process.stderr.write(`s3: ${req.method} ${url}: ${err.status} ${err.code}: ${err.message}\n`);
        sendS3Error(req, res, err, rawPath);
      };
      let want;
      try {
        want = verifySigV4(opts, req, rawPath, rawQuery);
        if (want !== null && sha256hex(body) !== want) {
          throw new S3Err(400, 'XAmzContentSHA256Mismatch', "The provided 'x-amz-content-sha256' header does not match what was computed.", { ClientComputedContentSHA256: want, S3ComputedContentSHA256: sha256hex(body) });
        }
      } catch (e) {
        if (!(e instanceof S3Err)) throw e;
        return refuse(e);
      }
      // Signed requests per access key and method (stats.by_key).
      const cm = /Credential=([^/,\s]+)\//.exec(req.headers.authorization || '');
      const ak = cm ? cm[1] : String(new URLSearchParams(rawQuery).get('X-Amz-Credential') || '').split('/')[0];
      stats.by_key[ak] = stats.by_key[ak] || {};
      stats.by_key[ak][req.method] = (stats.by_key[ak][req.method] || 0) + 1;
      const go = () => {
        if (res.destroyed || res.writableEnded) return;
        const f = takeRule(failures, req.method);
        if (f) {
          stats.injected_failures++;
          return sendS3Error(req, res, new S3Err(f.status, f.code, `injected failure (/__test/fail)`), rawPath);
        }
        forward(req, res, body);
      };
      const d = takeRule(delays, req.method);
      if (d) {
        stats.delayed++;
        setTimeout(go, d.ms);
      } else {
        go();
      }
    });
  });
  front.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  front.on('clientError', (err, socket) => socket.destroy());

  await new Promise((resolve, reject) => {
    front.once('error', reject);
    front.listen(opts.port, '127.0.0.1', resolve);
  });
  const port = front.address().port;
  if (opts.portFile) {
    const tmp = `${opts.portFile}.tmp.${process.pid}`;
    fs.writeFileSync(tmp, `${port}\n`);
    fs.renameSync(tmp, opts.portFile);
  }
  process.stdout.write(`s3 ready on port ${port}\n`);

  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    front.close();
    for (const s of sockets) s.destroy();
    // Our proxy's keep-alive connections would hold s3rver's close open.
    s3rver.httpServer.closeAllConnections();
    s3rver.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((e) => die(e.stack || e.message));
