// gen.js prints transferd's qsh golden vectors (vectors.json) as computed by
// the npm package atlassian-jwt. See README.md for the exact invocation.
//
// Each vector gives the request as atlassian-jwt sees it after
// fromMethodAndUrl (Node's url.parse + querystring): the escaped path, the raw
// query and the base URL's path, so the Go test can feed the same three
// strings to CanonicalRequest.
'use strict';

const crypto = require('crypto');
const url = require('url');
const paths = { paths: [process.cwd()] };
const jwt = require(require.resolve('atlassian-jwt', paths));
const Uri = require(require.resolve('jsuri', paths));
const jwtVersion = require(require.resolve('atlassian-jwt/package.json', paths)).version;

// The worked example of the project's reference (Atlassian app migration,
// §4 Authentication) and its canonical form.
const referenceCanonical =
  'GET&/path/to/service&first=param&repeated=parameter%201,parameter%202&zee_last=param';

// [name, method, url, baseUrl, divergence?]
// divergence: where transferd deliberately follows the reference and
// Atlassian's Java library (com.atlassian.jwt HttpRequestCanonicalizer:
// parameters ordered by their percent-encoded name) instead of atlassian-jwt
// (which orders parameters by their decoded name).
const cases = [
  ['reference worked example', 'GET',
    'https://app.example.com/path/to/service?zee_last=param&repeated=parameter 1&first=param&repeated=parameter 2',
    'https://app.example.com'],
  ['plain POST, no query', 'POST', 'https://app.example.com/connect/migration-events', 'https://app.example.com'],
  ['lower-case method', 'post', 'https://app.example.com/connect/migration-events', 'https://app.example.com'],
  ['base URL with trailing slash only', 'POST', 'https://app.example.com/hook', 'https://app.example.com/'],
  ['base path removed', 'POST', 'https://app.example.com/app/connect/migration-events', 'https://app.example.com/app'],
  ['base path with trailing slash removed', 'POST', 'https://app.example.com/app/hook', 'https://app.example.com/app/'],
  ['path equal to base path', 'POST', 'https://app.example.com/app', 'https://app.example.com/app'],
  ['path equal to base path without its trailing slash', 'POST', 'https://app.example.com/app', 'https://app.example.com/app/'],
  ['base path is a plain string prefix', 'POST', 'https://app.example.com/application/x', 'https://app.example.com/app'],
  ['encoded base path', 'POST', 'https://app.example.com/my%20app/hook', 'https://app.example.com/my%20app'],
  ['path not under base path', 'POST', 'https://app.example.com/other/hook', 'https://app.example.com/app'],
  ['root path', 'GET', 'https://app.example.com/', 'https://app.example.com'],
  ['trailing slash dropped', 'GET', 'https://app.example.com/path/to/', 'https://app.example.com'],
  ['only one trailing slash dropped', 'GET', 'https://app.example.com/a//', 'https://app.example.com'],
  ['ampersand in path', 'GET', 'https://app.example.com/rest/api/2/project&a=b?x=y', 'https://app.example.com'],
  ['encoded ampersand in path kept', 'GET', 'https://app.example.com/a%26b', 'https://app.example.com'],
  ['escaped space in path kept', 'GET', 'https://app.example.com/a%20b/c', 'https://app.example.com'],
  ['repeated parameter values sorted', 'GET', 'https://app.example.com/p?b=2&a=3&a=1&a=2', 'https://app.example.com'],
  ['repeated values sorted before encoding', 'GET', 'https://app.example.com/p?x=a%2F&x=a.', 'https://app.example.com'],
  ['names sorted by encoded form', 'GET', 'https://app.example.com/p?a%2F=1&a.=2', 'https://app.example.com',
    'a%2F=1&a.=2'],
  ['upper case sorts before lower case', 'GET', 'https://app.example.com/p?b=1&B=2&a=3&A=4', 'https://app.example.com'],
  ['plus is a space', 'GET', 'https://app.example.com/p?q=a+b', 'https://app.example.com'],
  ['encoded plus stays a plus', 'GET', 'https://app.example.com/p?q=a%2Bb', 'https://app.example.com'],
  ['percent-20 space', 'GET', 'https://app.example.com/p?q=a%20b', 'https://app.example.com'],
  ['star encoded', 'GET', 'https://app.example.com/p?q=*&r=%2A', 'https://app.example.com'],
  ['tilde unencoded', 'GET', 'https://app.example.com/p?q=~&r=%7E', 'https://app.example.com'],
  ['unreserved characters left alone', 'GET', 'https://app.example.com/p?k-._~=A-z0-9._~', 'https://app.example.com'],
  ['reserved characters encoded', 'GET', "https://app.example.com/p?q=!'()%3A%2F%3F%40%2C%3B%3D%24%23%5B%5D", 'https://app.example.com'],
  ['equals sign inside value', 'GET', 'https://app.example.com/p?q=a=b=c', 'https://app.example.com'],
  ['comma inside a repeated value', 'GET', 'https://app.example.com/p?a=1,2&a=3', 'https://app.example.com'],
  ['semicolon is not a separator', 'GET', 'https://app.example.com/p?a=1;b=2', 'https://app.example.com'],
  ['unicode encoded', 'GET', 'https://app.example.com/p?name=%C3%A9t%C3%A9&city=M%C3%BCnchen', 'https://app.example.com'],
  ['unicode raw', 'GET', 'https://app.example.com/p?name=été', 'https://app.example.com'],
  ['supplementary characters sort by UTF-16 units', 'GET',
    'https://app.example.com/p?v=%EF%BD%81&v=%F0%9F%98%80&v=z', 'https://app.example.com'],
  ['empty value', 'GET', 'https://app.example.com/p?a=&b=1', 'https://app.example.com'],
  ['name without value', 'GET', 'https://app.example.com/p?flag&b=1', 'https://app.example.com'],
  ['empty name', 'GET', 'https://app.example.com/p?=v&b=1', 'https://app.example.com'],
  ['empty segments skipped', 'GET', 'https://app.example.com/p?&&a=1&&b=2&', 'https://app.example.com'],
  ['empty query', 'GET', 'https://app.example.com/p?', 'https://app.example.com'],
  ['query of separators only', 'GET', 'https://app.example.com/p?&&', 'https://app.example.com'],
  ['jwt parameter excluded', 'GET', 'https://app.example.com/p?jwt=abc.def.ghi&x=1', 'https://app.example.com'],
  ['only jwt parameter', 'POST', 'https://app.example.com/connect/migration-events?jwt=abc.def.ghi', 'https://app.example.com'],
  ['encoded jwt name excluded', 'GET', 'https://app.example.com/p?%6Awt=abc&x=1', 'https://app.example.com'],
  ['JWT name is case sensitive', 'GET', 'https://app.example.com/p?JWT=abc&x=1', 'https://app.example.com'],
  ['invalid percent escapes kept literally', 'GET', 'https://app.example.com/p?a=%zz&b=%&c=%4&d=%%41', 'https://app.example.com'],
  ['invalid UTF-8 replaced', 'GET', 'https://app.example.com/p?a=%FF%FE&b=%E2%82&c=%E2%82%41&d=%ED%A0%80&e=%F0%9F%98', 'https://app.example.com'],
  ['migration webhook with base path and query', 'post',
    'https://app.example.com/base/connect/migration-events/?tenant=acme+corp&z=1&a=%C3%A9',
    'https://app.example.com/base'],
];

function sha256hex(s) {
  return crypto.createHash('sha256').update(s, 'utf8').digest('hex');
}

const vectors = cases.map(([name, method, rawUrl, baseUrl, divergentQuery]) => {
  const req = jwt.fromMethodAndUrl(method, rawUrl);
  const parsed = url.parse(rawUrl, false);
  const v = {
    name,
    method,
    url: rawUrl,
    baseUrl,
    path: parsed.pathname,
    rawQuery: parsed.query || '',
    basePath: new Uri(baseUrl).path(),
    canonical: jwt.createCanonicalRequest(req, false, baseUrl),
    qsh: jwt.createQueryStringHash(req, false, baseUrl),
  };
  if (v.qsh !== sha256hex(v.canonical)) {
    throw new Error(`${name}: qsh is not sha256(canonical)`);
  }
  if (divergentQuery !== undefined) {
    const [m, uri] = v.canonical.split('&', 2);
    const canonical = `${m}&${uri}&${divergentQuery}`;
    v.transferd = { canonical, qsh: sha256hex(canonical) };
  }
  return v;
});

if (vectors[0].canonical !== referenceCanonical) {
  throw new Error(`reference example: atlassian-jwt gives ${vectors[0].canonical}`);
}

process.stdout.write(JSON.stringify({
  generator: `atlassian-jwt ${jwtVersion} (createCanonicalRequest, createQueryStringHash; fromMethodAndUrl), node ${process.version}`,
  vectors,
}, null, 2) + '\n');
