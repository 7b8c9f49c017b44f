// Tenant controls of the gateway, tested from the outside: real engine, gateway and redis-server
// processes on loopback (port 0), driven by raw fetch and the official `openai` npm client.
// Keys (SHA-256 digests in the config), entitlement to a class, requests and tokens per window
// (x-ratelimit-* headers, Retry-After), fairness between tenants of one class, limits shared by
// two gateways through Redis (and what happens when Redis goes away), backend credentials and
// TLS both ways, access-log rotation, and the /metrics text checked by promtool. Also: what the
// backend is told of the granted class, shed requests against the token budget, and clients
// that close their connection as soon as the answer is read.
// Run: node --test tests/serve/tenants.test.mjs   (INFERGRID_BIN picks the binary)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, existsSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { createRequire } from 'node:module';
import { startListening } from './procs.mjs';

const require = createRequire(new URL('../../web/package.json', import.meta.url));
const OpenAI = require('openai').default ?? require('openai');

const BIN = process.env.INFERGRID_BIN || path.resolve('build/infergrid');
const dir = mkdtempSync(path.join(tmpdir(), 'infergrid-tenants-'));
const procs = [];
const servers = [];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const sha256 = (s) => createHash('sha256').update(s).digest('hex');
const MODEL = 'llama3-8b';

// ---- processes ----------------------------------------------------------------------------------

// Starts `infergrid ARGS`; resolves with its port once it prints "listening on HOST:PORT".
const start = (args) => startListening(procs, BIN, args);

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

async function startRedis(port) {
  const p = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  procs.push(p);
  const t0 = Date.now();
  for (;;) {  // ready once it answers PING
    const ok = await new Promise((resolve) => {
      const c = net.connect(port, '127.0.0.1');
      let got = '';
      c.on('connect', () => c.write('PING\r\n'));
      c.on('data', (d) => { got += d; if (got.includes('\r\n')) { c.destroy(); resolve(got.startsWith('+PONG')); } });
      c.on('error', () => resolve(false));
    });
    if (ok) return p;
    if (Date.now() - t0 > 5000 || p.exitCode !== null) throw new Error(`redis-server on ${port} did not start`);
    await sleep(20);
  }
}

// One site with the given backends: {port} or {url, api_key, ca_file, max}.
function gatewayConfig(name, backends, extra = '') {
  let y = `listen: 127.0.0.1:0\npolicy: nearest\naccess_log: ${dir}/${name}.log\nscrape_interval_ms: 50\n${extra}` +
    'sites:\n  - name: here\n    location: [35.68, 139.69]\n    backends:\n';
  for (const b of backends) {
    y += `      - url: ${b.url ?? `http://127.0.0.1:${b.port}`}\n        models: [${MODEL}]\n`;
    if (b.max) y += `        max_concurrency: ${b.max}\n`;
    if (b.api_key) y += `        api_key: ${b.api_key}\n`;
    if (b.ca_file) y += `        ca_file: ${b.ca_file}\n`;
  }
  const file = `${dir}/${name}.yaml`;
  writeFileSync(file, y);
  return file;
}

// tenants: [{name, keys: [...], max_class, rpm, tpm}]; the config holds only the keys' digests.
function tenantsYaml(tenants) {
  let y = 'tenants:\n';
  for (const t of tenants) {
    y += `  - name: ${t.name}\n    api_key_sha256: [${t.keys.map(sha256).join(', ')}]\n`;
    if (t.max_class) y += `    max_class: ${t.max_class}\n`;
    if (t.rpm) y += `    requests_per_minute: ${t.rpm}\n`;
    if (t.tpm) y += `    tokens_per_minute: ${t.tpm}\n`;
  }
  return y;
}

const key = (name) => `sk-${name}-${sha256(name + process.pid).slice(0, 24)}`;

// ---- clients ------------------------------------------------------------------------------------

const client = (port, apiKey, headers = {}, opts = {}) =>
  new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: apiKey ?? 'none', maxRetries: 0, timeout: 30000, defaultHeaders: headers, ...opts });

const chatBody = (content, max_tokens, extra = {}) => ({ model: MODEL, messages: [{ role: 'user', content }], max_tokens, ...extra });

// A raw POST: status, headers, text and the parsed JSON (null for a stream).
async function post(port, body, { apiKey, headers = {}, pathname = '/v1/chat/completions' } = {}) {
  const h = { 'content-type': 'application/json', ...headers };
  if (apiKey) h.authorization = `Bearer ${apiKey}`;
  const r = await fetch(`http://127.0.0.1:${port}${pathname}`, { method: 'POST', headers: h, body: JSON.stringify(body) });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch {}
  return { status: r.status, headers: r.headers, text, json };
}

// The data events of an SSE text, parsed (without [DONE]).
const sseEvents = (text) => text.split('\n\n').map((e) => e.trim()).filter((e) => e.startsWith('data: ') && e !== 'data: [DONE]')
  .map((e) => JSON.parse(e.slice(6)));

async function metricsText(port) {
  const r = await fetch(`http://127.0.0.1:${port}/metrics`);
  assert.equal(r.status, 200);
  return r.text();
}
function metric(text, name) {  // the value of one sample, by its full name with labels; null if absent
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const sp = line.lastIndexOf(' ');
    if (line.slice(0, sp) === name) return Number(line.slice(sp + 1));
  }
  return null;
}

// The access log's lines, once it holds at least n (the line is written just after the answer).
async function logLines(name, n) {
  const file = `${dir}/${name}.log`;
  let lines = [];
  for (let i = 0; i < 100; i++) {
    lines = existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : [];
    if (lines.length >= n) break;
    await sleep(20);
  }
  return lines.map((l) => JSON.parse(l));
}

// Waits for the start of the next rate window (windows are aligned to the Unix epoch) plus a margin.
async function nextWindow(ms, margin = 40) {
  const now = Date.now();
  const startMs = (Math.floor(now / ms) + 1) * ms;
  await sleep(startMs - now + margin);
  return { start: startMs, end: startMs + ms, index: startMs / ms };
}

// A fake vLLM backend that records what the gateway forwards.
function fakeBackend() {
  return new Promise((resolve) => {
    const seen = [];
    const srv = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d) => { body += d; });
      req.on('end', () => {
        if (req.url === '/metrics') {
          res.writeHead(200, { 'content-type': 'text/plain' });
          return res.end(`vllm:num_requests_running{model_name="${MODEL}"} 0\nvllm:num_requests_waiting{model_name="${MODEL}"} 0\n` +
            `vllm:kv_cache_usage_perc{model_name="${MODEL}"} 0\nvllm:prompt_tokens_total{model_name="${MODEL}"} 0\n` +
            `vllm:generation_tokens_total{model_name="${MODEL}"} 0\n`);
        }
        if (req.url === '/health') { res.writeHead(200); return res.end('ok'); }
        seen.push({ url: req.url, headers: req.headers, body: JSON.parse(body) });
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ id: 'chatcmpl-fake', object: 'chat.completion', created: 0, model: MODEL,
          choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, logprobs: null, finish_reason: 'stop' }],
          usage: { prompt_tokens: 5, completion_tokens: 1, total_tokens: 6 } }));
      });
    });
    servers.push(srv);
    srv.listen(0, '127.0.0.1', () => resolve({ port: srv.address().port, seen }));
  });
}

// ---- shared fixtures ----------------------------------------------------------------------------

let fast;  // an engine 20x faster than the model, for tests about counting rather than timing

before(async () => {
  fast = await start(['engine', '--port', '0', '--model', MODEL, '--time-scale', '0.05']);
});

after(() => {
  for (const p of procs) { try { p.kill('SIGKILL'); } catch {} }
  for (const s of servers) s.close();
});

// ---- 1 ------------------------------------------------------------------------------------------

test('authentication: 401 without a key or with an unknown one, 200 with a right one; /health is open; no tenants: open', async () => {
  const kA = key('alpha'), kA2 = key('alpha-2');
  const g = await start(['gateway', '--config', gatewayConfig('auth', [fast], tenantsYaml([{ name: 'alpha', keys: [kA, kA2] }]))]);
  await sleep(150);
  assert.doesNotMatch(g.stderr(), /open/, 'a gateway with tenants does not say it is open');

  // No Authorization header.
  let r = await post(g.port, chatBody('hi', 3));
  assert.equal(r.status, 401);
  assert.equal(r.json.error.type, 'invalid_request_error');
  assert.equal(r.json.error.code, 'missing_api_key');
  assert.ok(r.json.error.message.length > 0);
  await assert.rejects(client(g.port, 'x', { Authorization: null }).chat.completions.create(chatBody('hi', 3)),
    (e) => e instanceof OpenAI.AuthenticationError && e.status === 401);
  // The models list is behind the key too.
  const models = await fetch(`http://127.0.0.1:${g.port}/v1/models`);
  assert.equal(models.status, 401);
  // An unknown key, and a key that is only the digest of a right one.
  for (const bad of ['sk-not-a-tenant', sha256(kA)]) {
    await assert.rejects(client(g.port, bad).chat.completions.create(chatBody('hi', 3)),
      (e) => e instanceof OpenAI.AuthenticationError && e.status === 401 && e.code === 'invalid_api_key' && e.type === 'invalid_request_error');
  }
  r = await post(g.port, chatBody('hi', 3), { headers: { authorization: 'Basic ' + Buffer.from('u:' + kA).toString('base64') } });
  assert.equal(r.status, 401, 'only Bearer credentials');
  // Right keys (either of the tenant's two).
  for (const k of [kA, kA2]) {
    const ok = await client(g.port, k).chat.completions.create(chatBody('hi', 3));
    assert.equal(ok.usage.completion_tokens, 3);
  }
  const ok = await post(g.port, chatBody('hi', 2), { apiKey: kA });
  assert.equal(ok.status, 200);
  // /health and /metrics need no key.
  const h = await fetch(`http://127.0.0.1:${g.port}/health`);
  assert.equal(h.status, 200);
  const m = await metricsText(g.port);
  assert.equal(metric(m, 'infergrid_gateway_unauthorized_total'), 6);
  assert.equal(metric(m, 'infergrid_gateway_tenant_requests_total{tenant="alpha"}'), 3);
  // The refusals are in the access log, with no tenant.
  const log = await logLines('auth', 9);
  const refused = log.filter((l) => l.status === 401);
  assert.equal(refused.length, 6);
  for (const l of refused) { assert.equal(l.tenant, null); assert.equal(l.client_addr, '127.0.0.1'); }

  // No tenants: open, said on stderr at start, served without a key.
  const open = await start(['gateway', '--config', gatewayConfig('open', [fast])]);
  await sleep(150);
  assert.match(open.stderr(), /open/);
  r = await post(open.port, chatBody('hi', 2));
  assert.equal(r.status, 200);
  assert.equal(r.json.usage.completion_tokens, 2);
});

// ---- 2 ------------------------------------------------------------------------------------------

test('entitlement: a tenant allowed interactive that claims critical (header or body priority 0) is served at interactive', async () => {
  const kS = key('silver'), kG = key('gold');
  const g = await start(['gateway', '--config', gatewayConfig('entitle', [fast],
    tenantsYaml([{ name: 'silver', keys: [kS], max_class: 'interactive' }, { name: 'gold', keys: [kG], max_class: 'critical' }]))]);
  await sleep(150);
  const cases = [
    { k: kS, tenant: 'silver', headers: { 'x-infergrid-priority': 'critical' }, body: {}, claimed: 'critical', priority: 'interactive' },
    { k: kS, tenant: 'silver', headers: {}, body: { priority: 0 }, claimed: 'critical', priority: 'interactive' },
    { k: kS, tenant: 'silver', headers: { 'x-infergrid-priority': 'batch' }, body: {}, claimed: 'batch', priority: 'batch' },
    { k: kS, tenant: 'silver', headers: {}, body: {}, claimed: 'interactive', priority: 'interactive' },
    { k: kG, tenant: 'gold', headers: { 'x-infergrid-priority': 'critical' }, body: {}, claimed: 'critical', priority: 'critical' },
    { k: kG, tenant: 'gold', headers: {}, body: { priority: 0 }, claimed: 'critical', priority: 'critical' },
  ];
  for (const [i, c] of cases.entries()) {
    const r = await client(g.port, c.k, c.headers).chat.completions.create(chatBody(`claim ${i}`, 4, c.body));
    assert.equal(r.usage.completion_tokens, 4);
    const log = await logLines('entitle', i + 1);
    assert.equal(log.length, i + 1);
    const l = log[i];
    assert.equal(l.tenant, c.tenant, `case ${i}`);
    assert.equal(l.claimed, c.claimed, `case ${i}`);
    assert.equal(l.priority, c.priority, `case ${i}`);
    assert.equal(l.client_addr, '127.0.0.1');
    assert.match(l.id, /\S/);
    assert.equal(l.status, 200);
  }
  const m = await metricsText(g.port);
  assert.equal(metric(m, 'infergrid_gateway_tenant_downgraded_total{tenant="silver"}'), 2);
  assert.equal(metric(m, 'infergrid_gateway_tenant_downgraded_total{tenant="gold"}'), 0);
  assert.equal(metric(m, 'infergrid_gateway_requests_total{site="here",class="interactive",outcome="ok"}'), 3);
  assert.equal(metric(m, 'infergrid_gateway_requests_total{site="here",class="critical",outcome="ok"}'), 2);
});

test('entitlement reaches the backend: it is told the granted class, in the header and in the body\'s priority (vLLM reads the body)', async () => {
  const kS = key('silver-b');
  const fake = await fakeBackend();
  const g = await start(['gateway', '--config', gatewayConfig('entitle-fwd', [fake],
    tenantsYaml([{ name: 'silver', keys: [kS], max_class: 'interactive' }]))]);
  await sleep(150);
  const c = client(g.port, kS);
  await c.chat.completions.create(chatBody('header claim', 4), { headers: { 'x-infergrid-priority': 'critical' } });
  await c.chat.completions.create(chatBody('body claim', 4, { priority: 0 }));
  assert.equal(fake.seen.length, 2);
  for (const s of fake.seen) assert.equal(s.headers['x-infergrid-priority'], 'interactive');
  assert.equal(fake.seen[0].body.priority, undefined);
  // A vLLM backend (--scheduling-policy priority) schedules by the body's `priority`: the claim of
  // critical must not reach it unchanged.
  const fwd = fake.seen[1].body.priority;
  assert.ok(fwd === undefined || fwd >= 1,
    `the body's priority forwarded to the backend is ${JSON.stringify(fwd)} (critical) for a tenant entitled only to interactive`);
});

// ---- 3 ------------------------------------------------------------------------------------------

test('an unentitled tenant flooding critical while an entitled tenant\'s critical requests keep TTFT under 1 s', async (t) => {
  const kFlood = key('flood'), kGold = key('gold-3');
  const e = await start(['engine', '--port', '0', '--model', MODEL, '--max-num-seqs', '8']);
  const g = await start(['gateway', '--config', gatewayConfig('flood', [{ ...e, max: 8 }],
    tenantsYaml([{ name: 'flood', keys: [kFlood], max_class: 'interactive' }, { name: 'gold', keys: [kGold], max_class: 'critical' }]))]);
  await sleep(150);
  const res = { flood: { ok: 0, shed: 0 }, gold: { ok: 0, ttft: [] } };
  const one = async (who, k, i, maxTokens) => {
    const c = client(g.port, k, { 'x-infergrid-priority': 'critical' });
    const t0 = performance.now();
    try {
      const s = await c.chat.completions.create({ ...chatBody(`${who} ${i}`, maxTokens), stream: true });
      let first = null, n = 0;
      for await (const ch of s) {
        if (first === null && ch.choices.length && ch.choices[0].delta?.content) first = performance.now() - t0;
        if (ch.choices.length && ch.choices[0].delta?.content) n++;
      }
      assert.equal(n, maxTokens);
      res[who].ok++;
      if (who === 'gold') res.gold.ttft.push(first);
    } catch (err) {
      if (who === 'gold') throw err;
      assert.equal(err.status, 429, `flood: ${err}`);
      res.flood.shed++;
    }
  };
  const flood = Array.from({ length: 60 }, (_, i) => one('flood', kFlood, i, 300));
  await sleep(100);
  const gold = Array.from({ length: 10 }, (_, i) => sleep(i * 20).then(() => one('gold', kGold, i, 20)));
  await Promise.all([...flood, ...gold]);
  assert.equal(res.gold.ok, 10);
  assert.equal(res.flood.ok + res.flood.shed, 60);
  assert.ok(res.flood.shed > 0, 'the flood, served at interactive, is shed past capacity');
  const log = await logLines('flood', 70);
  const floodLines = log.filter((l) => l.tenant === 'flood');
  assert.equal(floodLines.length, 60);
  for (const l of floodLines) { assert.equal(l.claimed, 'critical'); assert.equal(l.priority, 'interactive'); }
  for (const l of log.filter((x) => x.tenant === 'gold')) assert.equal(l.priority, 'critical');
  const worst = Math.max(...res.gold.ttft);
  t.diagnostic(`entitled TTFT ms: ${res.gold.ttft.map((x) => x.toFixed(0)).join(' ')}; flood ${res.flood.ok} served, ${res.flood.shed} shed`);
  assert.ok(worst < 1000, `entitled critical TTFT ${worst.toFixed(0)} ms (all: ${res.gold.ttft.map((t) => t.toFixed(0)).join(' ')}; ` +
    `flood: ${res.flood.ok} served at interactive, ${res.flood.shed} shed)`);
});

// ---- 4 ------------------------------------------------------------------------------------------

test('requests per window: the 6th of 5 gets 429 with Retry-After and x-ratelimit-* headers; the next window serves again', async () => {
  const k = key('rpm');
  const WIN = 2000;
  const g = await start(['gateway', '--config', gatewayConfig('rpm', [fast],
    `rate_window_s: ${WIN / 1000}\n` + tenantsYaml([{ name: 'rpm', keys: [k], rpm: 5 }]))]);
  await sleep(150);
  const w = await nextWindow(WIN);
  for (let i = 0; i < 5; i++) {
    const stream = i === 2;
    const r = await post(g.port, chatBody(`r${i}`, 2, stream ? { stream: true } : {}), { apiKey: k });
    assert.equal(r.status, 200, r.text);
    if (stream) assert.equal(sseEvents(r.text).filter((e) => e.choices.length && e.choices[0].delta.content).length, 2);
    else assert.equal(r.json.usage.completion_tokens, 2);
    assert.equal(r.headers.get('x-ratelimit-limit-requests'), '5');
    assert.equal(r.headers.get('x-ratelimit-remaining-requests'), String(4 - i));
    assert.match(r.headers.get('x-ratelimit-reset-requests'), /^(\d+ms|[12]s)$/);
    assert.equal(r.headers.get('x-ratelimit-limit-tokens'), null, 'no token limit, no token headers');
  }
  const r6 = await post(g.port, chatBody('r5', 2), { apiKey: k });
  assert.equal(r6.status, 429);
  assert.equal(r6.json.error.type, 'requests');
  assert.equal(r6.json.error.code, 'rate_limit_exceeded');
  const retry = Number(r6.headers.get('retry-after'));
  assert.ok(Number.isInteger(retry) && retry >= 1 && retry <= 2, `Retry-After ${r6.headers.get('retry-after')}`);
  assert.equal(r6.headers.get('x-ratelimit-limit-requests'), '5');
  assert.equal(r6.headers.get('x-ratelimit-remaining-requests'), '0');
  assert.match(r6.headers.get('x-ratelimit-reset-requests'), /^(\d+ms|[12]s)$/);
  await assert.rejects(client(g.port, k).chat.completions.create(chatBody('r6', 2)),
    (e) => e instanceof OpenAI.RateLimitError && e.status === 429 && e.headers['x-ratelimit-remaining-requests'] === '0');
  assert.equal(Math.floor(Date.now() / WIN), w.index, 'all seven requests fell in one window (the test itself was too slow otherwise)');
  // The refused ones are logged as rate limited, with the tenant and its classes.
  const log = await logLines('rpm', 7);
  const limited = log.filter((l) => l.status === 429);
  assert.equal(limited.length, 2);
  for (const l of limited) { assert.match(l.outcome, /rate_limited/); assert.equal(l.tenant, 'rpm'); assert.equal(l.priority, 'interactive'); }
  // The next window serves again.
  await nextWindow(WIN);
  const again = await post(g.port, chatBody('again', 2), { apiKey: k });
  assert.equal(again.status, 200);
  assert.equal(again.headers.get('x-ratelimit-remaining-requests'), '4');
  const m = await metricsText(g.port);
  assert.equal(metric(m, 'infergrid_gateway_tenant_rate_limited_total{tenant="rpm"}'), 2);
});

// ---- 5 ------------------------------------------------------------------------------------------

test('tokens per window: prompt + max_tokens is reserved; one request over the limit and the window\'s last tokens get 429 (tokens)', async () => {
  const k = key('tpm');
  const WIN = 3000, T = 2000;
  const g = await start(['gateway', '--config', gatewayConfig('tpm', [fast],
    `rate_window_s: ${WIN / 1000}\n` + tenantsYaml([{ name: 'tpm', keys: [k], tpm: T }]))]);
  await sleep(150);
  // A request that alone needs more than the limit can never be served.
  const big = await post(g.port, chatBody('too big', T + 500), { apiKey: k });
  assert.equal(big.status, 429);
  assert.equal(big.json.error.type, 'tokens');
  await assert.rejects(client(g.port, k).chat.completions.create(chatBody('too big', T)),
    (e) => e.status === 429 && e.type === 'tokens');

  const w = await nextWindow(WIN);
  const content = 'count my tokens';  // the same prompt each time: the same reservation
  const M = 350;
  let remaining = T, p = null;
  const kinds = ['plain', 'stream', 'stream+usage', 'plain'];
  for (const [i, kind] of kinds.entries()) {
    const extra = kind === 'plain' ? {} : { stream: true, ...(kind === 'stream+usage' ? { stream_options: { include_usage: true } } : {}) };
    const r = await post(g.port, chatBody(content, M, extra), { apiKey: k });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get('x-ratelimit-limit-tokens'), String(T));
    assert.match(r.headers.get('x-ratelimit-reset-tokens'), /^(\d+ms|[123]s)$/);
    const left = Number(r.headers.get('x-ratelimit-remaining-tokens'));
    if (kind === 'plain') {
      assert.equal(r.json.usage.completion_tokens, M);
      if (p === null) p = r.json.usage.prompt_tokens;
      assert.equal(r.json.usage.prompt_tokens, p);
    } else {
      const ev = sseEvents(r.text);
      assert.equal(ev.filter((e) => e.choices.length && e.choices[0].delta.content).length, M);
      if (kind === 'stream+usage') assert.equal(ev.at(-1).usage.total_tokens, p + M);
    }
    assert.equal(left, remaining - (p + M), `request ${i} (${kind}): reserved prompt ${p} + max_tokens ${M}, and the one before settled exactly`);
    remaining = left;
    await sleep(20);  // settled after the answer's last byte
  }
  // Exactly what is left fits; one more token does not.
  const fill = await post(g.port, chatBody(content, remaining - p), { apiKey: k });
  assert.equal(fill.status, 200, fill.text);
  assert.equal(fill.headers.get('x-ratelimit-remaining-tokens'), '0');
  const over = await post(g.port, chatBody(content, 1), { apiKey: k });
  assert.equal(over.status, 429);
  assert.equal(over.json.error.type, 'tokens');
  assert.equal(over.json.error.code, 'rate_limit_exceeded');
  assert.equal(over.headers.get('x-ratelimit-remaining-tokens'), '0');
  const retry = Number(over.headers.get('retry-after'));
  assert.ok(Number.isInteger(retry) && retry >= 1 && retry <= 3, `Retry-After ${over.headers.get('retry-after')}`);
  await assert.rejects(client(g.port, k).chat.completions.create({ ...chatBody(content, 1), stream: true }),
    (e) => e instanceof OpenAI.RateLimitError && e.type === 'tokens');
  assert.equal(Math.floor(Date.now() / WIN), w.index, 'every request fell in one window (the test itself was too slow otherwise)');
  // The next window has the whole limit again.
  await nextWindow(WIN);
  const again = await post(g.port, chatBody(content, M), { apiKey: k });
  assert.equal(again.status, 200);
  assert.equal(again.headers.get('x-ratelimit-remaining-tokens'), String(T - p - M));
});

test('a request shed for overload (429) is not charged to the tenant\'s tokens per window', async () => {
  const k = key('shed');
  const WIN = 3000, T = 1000, M = 300;
  // batch_shed_at 0: every batch request is shed, however idle the backend.
  const g = await start(['gateway', '--config', gatewayConfig('shed', [fast], `batch_shed_at: 0\nrate_window_s: ${WIN / 1000}\n` +
    tenantsYaml([{ name: 'shed', keys: [k], tpm: T, rpm: 100 }]))]);
  await sleep(150);
  const w = await nextWindow(WIN);
  const shed = await post(g.port, chatBody('shed me', M), { apiKey: k, headers: { 'x-infergrid-priority': 'batch' } });
  assert.equal(shed.status, 429, shed.text);
  assert.equal(shed.json.error.code, 'rate_limit_exceeded');
  assert.match(shed.json.error.message, /overloaded/);
  assert.equal(shed.headers.get('retry-after'), '1');
  await sleep(20);
  const ok = await post(g.port, chatBody('shed me', M), { apiKey: k });
  assert.equal(ok.status, 200, ok.text);
  assert.equal(Math.floor(Date.now() / WIN), w.index, 'both requests fell in one window');
  const p = ok.json.usage.prompt_tokens;
  const left = Number(ok.headers.get('x-ratelimit-remaining-tokens'));
  assert.equal(left, T - (p + M),
    `after a shed request (never served) and a served one of ${p + M} tokens each, ${left} of ${T} tokens are left ` +
    `(requests left: ${ok.headers.get('x-ratelimit-remaining-requests')} of 100)`);
});

// ---- 6 ------------------------------------------------------------------------------------------

test('fairness within a class (VTC): a tenant flooding interactive does not starve another interactive tenant', async () => {
  const kA = key('vtc-a'), kB = key('vtc-b');
  const e = await start(['engine', '--port', '0', '--model', MODEL, '--max-num-seqs', '4']);
  const g = await start(['gateway', '--config', gatewayConfig('vtc', [{ ...e, max: 4 }], 'interactive_shed_at: 1.0\n' +
    tenantsYaml([{ name: 'a', keys: [kA], max_class: 'interactive' }, { name: 'b', keys: [kB], max_class: 'interactive' }]))]);
  await sleep(150);
  const A = { ok: 0, shed: 0 }, B = { ok: 0, shed: 0, errors: [] };
  const stream = async (k, tag, maxTokens) => {
    const s = await client(g.port, k).chat.completions.create({ ...chatBody(tag, maxTokens), stream: true });
    let n = 0;
    for await (const ch of s) if (ch.choices.length && ch.choices[0].delta?.content) n++;
    assert.equal(n, maxTokens);
  };
  // A: 40 concurrent streams at once (max_tokens 200, about 1.4 s at the model's speed); B: 5
  // requests while they run.
  let floodEnd = 0, bSent = 0;
  const flood = Array.from({ length: 40 }, async (_, i) => {
    try { await stream(kA, `a ${i}`, 200); A.ok++; } catch (err) {
      assert.equal(err.status, 429, `A: ${err}`);
      A.shed++;
    }
    floodEnd = Math.max(floodEnd, performance.now());
  });
  await sleep(100);
  const b = Array.from({ length: 5 }, (_, i) => sleep(i * 150).then(async () => {
    bSent = Math.max(bSent, performance.now());
    try { await stream(kB, `b ${i}`, 20); B.ok++; } catch (err) {
      assert.equal(err.status, 429, `B: ${err}`);
      B.shed++;
      B.errors.push(`b ${i} at ${100 + i * 150} ms: ${err.status} ${err.message}`);
    }
  }));
  await Promise.all([...flood, ...b]);
  // B's requests all arrived while A's flood held the backend (B waits in the engine's queue for
  // a slot, so it may finish after the flood: admission is what VTC decides here).
  assert.ok(bSent < floodEnd, 'B sent every request while A\'s flood was being served');
  assert.ok(A.shed > 0, `the flooding tenant is shed (A: ${JSON.stringify(A)})`);
  assert.equal(B.shed, 0, `B's requests were shed: ${B.errors.join(', ')} (B served ${B.ok} of 5; A: ${A.ok} served, ${A.shed} shed)`);
  assert.equal(B.ok, 5);
});

// ---- 7 ------------------------------------------------------------------------------------------

test('two gateways and a Redis enforcing one tenant\'s tokens-per-minute within 5%; local limits while Redis is down', async (t) => {
  const k = key('shared');
  const WIN = 4000, T = 3000;
  const rport = await freePort();
  let redis = await startRedis(rport);
  const cfg = (name) => gatewayConfig(name, [fast], `redis: 127.0.0.1:${rport}\nrate_window_s: ${WIN / 1000}\n` +
    tenantsYaml([{ name: 'shared', keys: [k], tpm: T }]));
  const g1 = await start(['gateway', '--config', cfg('redis1')]);
  const g2 = await start(['gateway', '--config', cfg('redis2')]);
  await sleep(150);
  for (const g of [g1, g2]) assert.equal((await post(g.port, chatBody('warm', 1), { apiKey: k })).status, 200);

  const w = await nextWindow(WIN, 30);
  let sum = 0, turn = 0;
  const served = { [g1.port]: 0, [g2.port]: 0 }, limited = { [g1.port]: 0, [g2.port]: 0 };
  const worker = async () => {
    while (Date.now() < w.end - 150) {
      const port = (turn++ % 2) ? g2.port : g1.port;
      const r = await post(port, chatBody('share the window', 50), { apiKey: k });
      if (r.status === 200) { sum += r.json.usage.total_tokens; served[port]++; } else {
        assert.equal(r.status, 429, r.text);
        assert.equal(r.json.error.type, 'tokens');
        limited[port]++;
        await sleep(25);
      }
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  const detail = `sum ${sum} of ${T}; served ${JSON.stringify(served)}; limited ${JSON.stringify(limited)}`;
  t.diagnostic(detail);
  assert.ok(served[g1.port] > 0 && served[g2.port] > 0, detail);
  assert.ok(limited[g1.port] + limited[g2.port] > 0, `the limit was reached: ${detail}`);
  assert.ok(sum >= T * 0.95 && sum <= T * 1.05, detail);
  for (const g of [g1, g2]) assert.equal(metric(await metricsText(g.port), 'infergrid_gateway_ratelimit_shared'), 1);

  // Redis gone: both keep serving on their own counters, and say so.
  redis.kill('SIGKILL');
  await new Promise((r) => (redis.exitCode !== null || redis.signalCode ? r() : redis.on('exit', r)));
  await nextWindow(WIN, 30);
  for (const g of [g1, g2]) {
    for (let i = 0; i < 3; i++) {
      const r = await post(g.port, chatBody('redis is down', 5), { apiKey: k });
      assert.equal(r.status, 200, `gateway ${g.port} while Redis is down: ${r.text}`);
    }
    const m = await metricsText(g.port);
    assert.equal(metric(m, 'infergrid_gateway_ratelimit_shared'), 0);
    assert.ok(metric(m, 'infergrid_gateway_ratelimit_redis_errors_total') > 0);
  }
  // Redis back: shared again within about 2 s of traffic.
  redis = await startRedis(rport);
  const t0 = Date.now();
  const up = new Set();
  while (up.size < 2 && Date.now() - t0 < 4000) {
    for (const g of [g1, g2]) {
      const r = await post(g.port, chatBody('redis is back', 2), { apiKey: k });
      assert.equal(r.status, 200, r.text);
      if (metric(await metricsText(g.port), 'infergrid_gateway_ratelimit_shared') === 1) up.add(g.port);
    }
    await sleep(100);
  }
  const took = Date.now() - t0;
  t.diagnostic(`shared again after ${took} ms`);
  assert.equal(up.size, 2, `shared again on ${up.size} of 2 gateways after ${took} ms`);
  assert.ok(took <= 2500, `shared again after ${took} ms`);
});

// ---- 8 ------------------------------------------------------------------------------------------

// A CA, a server certificate it signs for localhost and 127.0.0.1, and another CA; made once.
let pki = null;
function makePki() {
  if (pki) return pki;
  const t = mkdtempSync(path.join(dir, 'tls-'));
  const ossl = (...a) => execFileSync('openssl', a, { cwd: t, stdio: ['ignore', 'pipe', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  ossl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=infergrid test CA');
  ossl('req', '-x509', ...ec, '-keyout', 'other.key', '-out', 'other.pem', '-days', '2', '-subj', '/CN=another test CA');
  ossl('req', ...ec, '-keyout', 'srv.key', '-out', 'srv.csr', '-subj', '/CN=localhost');
  writeFileSync(`${t}/ext.cnf`, 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n');
  ossl('x509', '-req', '-in', 'srv.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'srv.pem', '-days', '2', '-extfile', 'ext.cnf');
  pki = { dir: t, ca: readFileSync(`${t}/ca.pem`), secret: 'backend-secret-' + process.pid, engine: null };
  return pki;
}
async function tlsEngine() {
  const k = makePki();
  if (!k.engine) k.engine = await start(['engine', '--port', '0', '--model', MODEL, '--time-scale', '0.05', '--api-key', k.secret,
    '--ssl-certfile', `${k.dir}/srv.pem`, '--ssl-keyfile', `${k.dir}/srv.key`]);
  return { ...k, url: `https://localhost:${k.engine.port}` };
}

test('backend credentials and TLS: an https backend with ca_file and api_key; without the key an OpenAI 401/502; an HTTPS listener', async () => {
  const { dir: t, ca, secret, url } = await tlsEngine();
  // The gateway's own listener is HTTPS too (the same certificate).
  const good = await start(['gateway', '--config', gatewayConfig('tls-good', [{ url, ca_file: `${t}/ca.pem`, api_key: secret }],
    `tls_cert: ${t}/srv.pem\ntls_key: ${t}/srv.key\n`)]);
  const noKey = await start(['gateway', '--config', gatewayConfig('tls-no-key', [{ url, ca_file: `${t}/ca.pem` }])]);
  await sleep(300);

  // HTTPS listener: /health by https.request with the CA; the SDK through an https.Agent.
  const get = (p, opts = {}) => new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port: good.port, path: p, ca, servername: 'localhost', ...opts }, (res) => {
      let b = ''; res.on('data', (d) => { b += d; }); res.on('end', () => resolve({ status: res.statusCode, body: b }));
    });
    req.on('error', reject);
    req.end();
  });
  const health = await get('/health');
  assert.equal(health.status, 200);
  // A client that does not trust the CA is refused by TLS itself; plain HTTP gets no answer.
  await assert.rejects(get('/health', { ca: undefined }), (err) => /self[- ]signed|unable to verify|certificate/i.test(err.message));
  await assert.rejects(fetch(`http://127.0.0.1:${good.port}/health`));
  const agent = new https.Agent({ ca, keepAlive: false });
  const c = new OpenAI({ baseURL: `https://localhost:${good.port}/v1`, apiKey: 'none', maxRetries: 0, timeout: 30000, httpAgent: agent });
  const r = await c.chat.completions.create(chatBody('over TLS', 6));
  assert.equal(r.usage.completion_tokens, 6);
  const s = await c.chat.completions.create({ ...chatBody('streamed over TLS', 8), stream: true, stream_options: { include_usage: true } });
  let n = 0, usage = null;
  for await (const ch of s) { if (ch.usage) usage = ch.usage; if (ch.choices.length && ch.choices[0].delta?.content) n++; }
  assert.equal(n, 8);
  assert.equal(usage.completion_tokens, 8);
  const gm = await get('/metrics');
  assert.equal(metric(gm.body, `infergrid_gateway_backend_up{site="here",backend="${url}"}`), 1);

  // Without the backend's key: the backend's 401 is the gateway's fault, not the client's: 502.
  for (const stream of [false, true]) {
    const rr = await post(noKey.port, chatBody('no key', 4, stream ? { stream: true } : {}));
    assert.equal(rr.status, 502, `no backend key, stream ${stream}: ${rr.status} ${rr.text}`);
    assert.match(rr.json?.error?.message ?? '', /refused the gateway's credentials/, rr.text);
  }
  await assert.rejects(client(noKey.port).chat.completions.create({ ...chatBody('no key', 4), stream: true }),
    (err) => err instanceof OpenAI.APIError && err.status === 502);
});

test('backend TLS with the wrong CA: requests fail with an OpenAI error naming the certificate', async () => {
  const { dir: t, secret, url } = await tlsEngine();
  const wrongCa = await start(['gateway', '--config', gatewayConfig('tls-wrong-ca', [{ url, ca_file: `${t}/other.pem`, api_key: secret }])]);
  // Before the scrapes have judged it, a request's own handshake fails (502, after its tries);
  // once they have, the backend is unreachable (503 no_backend). Either way the cause is named.
  await sleep(300);
  for (const stream of [false, true]) {
    const rr = await post(wrongCa.port, chatBody('wrong CA', 4, stream ? { stream: true } : {}));
    assert.ok(rr.status === 502 || rr.status === 503, `wrong CA, stream ${stream}: ${rr.status} ${rr.text}`);
    assert.match(rr.json?.error?.message ?? '', /certificate verify failed/, rr.text);
  }
  await assert.rejects(client(wrongCa.port).chat.completions.create(chatBody('wrong CA', 4)),
    (err) => err instanceof OpenAI.APIError && (err.status === 502 || err.status === 503) && /certificate/.test(err.message));
});

// ---- 9 ------------------------------------------------------------------------------------------

test('access-log rotation: past access_log_max_bytes the log rotates, keeping access_log_keep old files of whole JSON lines', async () => {
  const k = key('logs');
  const g = await start(['gateway', '--config', gatewayConfig('rot', [fast],
    'access_log_max_bytes: 4096\naccess_log_keep: 2\n' + tenantsYaml([{ name: 'logs', keys: [k], max_class: 'interactive' }]))]);
  await sleep(150);
  const LOG = `${dir}/rot.log`;
  let next = 0;
  const worker = async () => {
    while (next < 100) {
      const i = next++;
      const r = await post(g.port, chatBody(`line ${i}`, 2), { apiKey: k, headers: { 'x-infergrid-priority': i % 3 ? 'critical' : 'batch' } });
      assert.equal(r.status, 200, r.text);
    }
  };
  await Promise.all(Array.from({ length: 10 }, worker));
  await sleep(100);
  for (const f of [LOG, `${LOG}.1`, `${LOG}.2`]) assert.ok(existsSync(f), `${f} exists`);
  assert.ok(!existsSync(`${LOG}.3`), `${LOG}.3 does not exist with access_log_keep 2`);
  let total = 0;
  for (const f of [LOG, `${LOG}.1`, `${LOG}.2`]) {
    const text = readFileSync(f, 'utf8');
    assert.ok(text.endsWith('\n'), `${f} ends with a whole line`);
    const lines = text.split('\n').filter(Boolean);
    total += lines.length;
    for (const line of lines) {
      const j = JSON.parse(line);
      for (const field of ['id', 'client_addr', 'tenant', 'claimed', 'priority']) assert.ok(field in j, `${f}: ${field} in ${line}`);
      assert.equal(j.client_addr, '127.0.0.1');
      assert.equal(j.tenant, 'logs');
      assert.ok(['critical', 'batch'].includes(j.claimed));
      assert.ok(['interactive', 'batch'].includes(j.priority));
    }
    if (f !== LOG) {
      const size = statSync(f).size;
      const longest = Math.max(...lines.map((l) => l.length + 1));
      assert.ok(size >= 4096 && size < 4096 + longest, `${f}: ${size} bytes`);
    }
  }
  assert.ok(total < 100, 'older files were dropped');
  const m = await metricsText(g.port);
  assert.ok(metric(m, 'infergrid_gateway_access_log_rotations_total') >= 3);
});

// ---- 10 -----------------------------------------------------------------------------------------

test('promtool check metrics passes on /metrics with tenants after traffic', async () => {
  const kP = key('prom'), kQ = key('prom "quoted"');
  const g = await start(['gateway', '--config', gatewayConfig('prom', [fast], 'rate_window_s: 2\n' +
    tenantsYaml([{ name: 'prom', keys: [kP], max_class: 'critical', rpm: 2 }, { name: 'quiet', keys: [kQ], tpm: 100 }]))]);
  await sleep(150);
  for (let i = 0; i < 5; i++) await post(g.port, chatBody(`p ${i}`, 3, i === 1 ? { stream: true } : {}), { apiKey: kP, headers: { 'x-infergrid-priority': 'critical' } });
  await post(g.port, chatBody('q', 200), { apiKey: kQ });
  await post(g.port, chatBody('q', 3), { apiKey: kQ, headers: { 'x-infergrid-priority': 'batch' } });
  await post(g.port, chatBody('nobody', 3), { apiKey: 'sk-nobody' });
  await post(g.port, chatBody('nobody', 3));
  const text = await metricsText(g.port);
  assert.ok(metric(text, 'infergrid_gateway_tenant_requests_total{tenant="prom"}') >= 5, text);
  assert.ok(metric(text, 'infergrid_gateway_tenant_rate_limited_total{tenant="prom"}') >= 1, text);
  const pc = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  assert.equal(pc.status, 0, `promtool check metrics exited ${pc.status}:\n${pc.stdout}${pc.stderr}`);
});

// ---- the connection ends as soon as the answer is read ---------------------------------------------

test('clients that close their connection right after reading the answer do not crash the gateway', async () => {
  const k = key('closer');
  const g = await start(['gateway', '--config', gatewayConfig('closer', [fast], tenantsYaml([{ name: 'closer', keys: [k] }]))]);
  await sleep(150);
  const body = JSON.stringify(chatBody('bye', 1));
  // Keep-alive HTTP/1.1 (no "Connection: close"), the socket destroyed once the whole answer is in.
  const one = () => new Promise((resolve) => {
    const sock = net.connect(g.port, '127.0.0.1');
    let got = '';
    sock.on('connect', () => sock.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${k}\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`));
    sock.on('data', (d) => {
      got += d;
      const end = got.indexOf('\r\n\r\n'), cl = got.match(/content-length: (\d+)/i);
      if (end >= 0 && cl && got.length >= end + 4 + Number(cl[1])) { sock.destroy(); resolve(Number(got.slice(9, 12))); }
    });
    sock.on('error', () => resolve('error'));
    sock.on('close', () => resolve('closed without an answer'));
  });
  const N = 2000, statuses = {};
  let next = 0;
  await Promise.all(Array.from({ length: 50 }, async () => {
    while (next++ < N) { const st = await one(); statuses[st] = (statuses[st] ?? 0) + 1; }
  }));
  await sleep(100);
  assert.equal(g.proc.exitCode, null, `the gateway exited (${g.proc.signalCode ?? g.proc.exitCode}); answers: ${JSON.stringify(statuses)}`);
  assert.equal(g.proc.signalCode, null, `the gateway died of ${g.proc.signalCode}; answers: ${JSON.stringify(statuses)}`);
  assert.deepEqual(statuses, { 200: N });
});
