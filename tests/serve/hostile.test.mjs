// The live fabric under hostile input, as an outside tester attacks it: real engine and gateway
// processes on loopback, raw sockets, the official `openai` npm client, and fake backends that
// misbehave (hang on inference while answering scrapes, answer HTML, send broken SSE, send huge
// bodies). Each test is a defect of issue 12 and failed before its fix.
// Run: node --test tests/serve/hostile.test.mjs   (INFERGRID_BIN picks the binary)
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import net from 'node:net';
import http from 'node:http';
import path from 'node:path';
import { createRequire } from 'node:module';
import { startListening } from './procs.mjs';

const require = createRequire(new URL('../../web/package.json', import.meta.url));
const OpenAI = require('openai').default ?? require('openai');

const BIN = process.env.INFERGRID_BIN || path.resolve('build/infergrid');
const dir = mkdtempSync(path.join(tmpdir(), 'infergrid-hostile-'));
const procs = [];
const servers = [];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const start = (args, { shell = false } = {}) =>
  shell ? startListening(procs, 'bash', ['-c', args]) : startListening(procs, BIN, args);

const engine = (extra = []) => start(['engine', '--port', '0', '--model', 'llama3-8b', ...extra]);

function gatewayConfig(name, sites, extra = '') {
  let y = `listen: 127.0.0.1:0\npolicy: nearest\naccess_log: ${dir}/${name}.log\nscrape_interval_ms: 50\n${extra}sites:\n`;
  sites.forEach((s, i) => {
    y += `  - name: ${s.name}\n    location: [${s.loc[0]}, ${s.loc[1]}]\n    backends:\n`;
    for (const b of s.backends) y += `      - url: http://127.0.0.1:${b.port}\n        models: [llama3-8b]\n${b.max ? `        max_concurrency: ${b.max}\n` : ''}`;
  });
  const file = `${dir}/${name}.yaml`;
  writeFileSync(file, y);
  return file;
}
const gateway = (name, sites, extra = '') => start(['gateway', '--config', gatewayConfig(name, sites, extra)]);

const client = (port, headers = {}) => new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'none', maxRetries: 0, timeout: 30000, defaultHeaders: headers });
const TOKYO = [35.68, 139.69], LONDON = [51.51, -0.13];
const chat = (extra = {}) => ({ model: 'llama3-8b', messages: [{ role: 'user', content: 'hello' }], ...extra });

// Raw bytes in, everything the server answers until it closes (or `ms` passes).
function raw(port, bytes, ms = 2000, localAddress = '127.0.0.1') {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress });
    const chunks = [];
    const t = setTimeout(() => { s.destroy(); resolve(Buffer.concat(chunks)); }, ms);
    s.on('data', (d) => chunks.push(d));
    s.on('close', () => { clearTimeout(t); resolve(Buffer.concat(chunks)); });
    s.on('error', () => {});
    s.write(bytes);
  });
}
const metrics = async (port) => (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
function metric(text, name, labels = '') {
  for (const line of text.split('\n')) if (line.startsWith(name + (labels ? `{${labels}` : '')) && !line.startsWith(name + '_')) {
    if (!labels && line[name.length] !== ' ' && line[name.length] !== '{') continue;
    return Number(line.split(' ').pop());
  }
  return NaN;
}
const alive = (p) => p.proc.exitCode === null && p.proc.signalCode === null;
const rssKb = (pid) => Number(readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)[1]);
const cpuTicks = (pid) => { const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' '); return Number(f[11]) + Number(f[12]); };

// A fake backend: answers /metrics like vLLM with counters that never move, and inference as
// `mode` says.
function fakeBackend(mode) {
  return new Promise((resolve) => {
    const srv = http.createServer((req, res) => {
      if (req.url === '/metrics') {
        res.end('vllm:num_requests_running{model_name="x"} 0\nvllm:num_requests_waiting{model_name="x"} 0\n' +
          'vllm:kv_cache_usage_perc{model_name="x"} 0\nvllm:prompt_tokens_total{model_name="x"} 100\n' +
          'vllm:generation_tokens_total{model_name="x"} 100\nvllm:iteration_tokens_total_count{model_name="x"} 7\n');
        return;
      }
      req.resume();
      req.on('end', () => {
        if (mode === 'hang') return;  // half-alive: never answers inference
        if (mode === 'html') { res.writeHead(200, { 'content-type': 'text/html' }); res.end('<html>oops</html>'); return; }
        if (mode === 'sse-for-json') { res.writeHead(200, { 'content-type': 'text/event-stream' }); res.end('data: {"x":1}\n\ndata: [DONE]\n\n'); return; }
        if (mode === 'bad-sse') {
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.write('data: {"id":"a","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n');
          setTimeout(() => { res.write('data: this is not json\n\n'); res.end(); }, 20);
          return;
        }
        if (mode === 'cut-sse') {  // dies in the middle of an event
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.write('data: {"id":"a","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n');
          setTimeout(() => { res.write('data: {"id":"a","object":"chat.comp'); res.socket.destroy(); }, 20);
          return;
        }
        if (mode === 'huge') {  // 60 MB of JSON
          res.writeHead(200, { 'content-type': 'application/json' });
          const piece = Buffer.alloc(1 << 20, 'x');
          res.write('{"pad":"');
          let n = 0;
          const more = () => { while (n < 60) { n++; if (!res.write(piece)) return res.once('drain', more); } res.end('"}'); };
          more();
          return;
        }
        res.writeHead(500); res.end();
      });
    });
    srv.listen(0, '127.0.0.1', () => { servers.push(srv); resolve({ port: srv.address().port, srv }); });
  });
}

after(() => {
  for (const p of procs) { try { p.kill('SIGKILL'); } catch {} }
  for (const s of servers) { s.closeAllConnections?.(); s.close(); }
});

// ---- 1. one request kills a process ----------------------------------------------------------

test('invalid UTF-8 in the path and in headers gets an OpenAI error; the engine and the gateway live on', async () => {
  const e = await engine(['--time-scale', '0.2']);
  const g = await gateway('utf8', [{ name: 'a', loc: TOKYO, backends: [e] }]);
  for (const port of [e.port, g.port]) {
    const r = await raw(port, Buffer.concat([Buffer.from('GET /caf'), Buffer.from([0xe9]), Buffer.from(' HTTP/1.1\r\nHost: x\r\n\r\n')]), 500);
    const text = r.toString('latin1');
    assert.match(text, /^HTTP\/1\.1 404/, text);
    const body = JSON.parse(r.subarray(r.indexOf('\r\n\r\n') + 4).toString('utf8'));
    assert.equal(body.error.code, 'not_found');
    assert.ok(body.error.message.includes('\ufffd'), 'the bad byte is replaced, not thrown on');
  }
  const body = JSON.stringify(chat({ max_tokens: 2 }));
  const r = await raw(g.port, Buffer.concat([Buffer.from('POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-infergrid-client-location: '),
    Buffer.from([0xff, 0xfe]), Buffer.from(`\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`)]), 500);
  assert.match(r.toString('latin1'), /^HTTP\/1\.1 400/);
  const r2 = await raw(g.port, Buffer.concat([Buffer.from('POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-infergrid-priority: '),
    Buffer.from([0xc3, 0x28]), Buffer.from(`\r\nContent-Length: ${body.length}\r\n\r\n${body}`)]), 500);
  assert.match(r2.toString('latin1'), /^HTTP\/1\.1 400/);
  const bad = Buffer.from(body.replace('llama3-8b', 'llama3-8b\u00e9'), 'latin1');  // raw 0xE9 in the model name
  const r3 = await raw(g.port, Buffer.concat([Buffer.from(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: ${bad.length}\r\n\r\n`), bad]), 500);
  assert.match(r3.toString('latin1'), /^HTTP\/1\.1 400/);
  assert.ok(alive(e) && alive(g));
  const ok = await client(g.port).chat.completions.create(chat({ max_tokens: 2 }));
  assert.equal(ok.usage.completion_tokens, 2);
});

test('with processes: 2 the gateway survives hostile requests, and a worker that dies is restarted', async () => {
  const e = await engine(['--time-scale', '0.2']);
  const g = await gateway('procs', [{ name: 'a', loc: TOKYO, backends: [e] }], 'processes: 2\n');
  await sleep(300);
  for (let i = 0; i < 4; i++)
    await raw(g.port, Buffer.concat([Buffer.from('GET /caf'), Buffer.from([0xe9]), Buffer.from(' HTTP/1.1\r\nHost: x\r\n\r\n')]), 300);
  const workers = () => readFileSync(`/proc/${g.proc.pid}/task/${g.proc.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  const before = workers();
  assert.equal(before.length, 2);
  process.kill(before[0], 'SIGSEGV');
  let after = [];
  for (let i = 0; i < 40; i++) { await sleep(50); after = workers(); if (after.length === 2 && !after.includes(before[0])) break; }
  assert.equal(after.length, 2, 'two workers again');
  assert.ok(!after.includes(before[0]), 'the dead worker was replaced');
  assert.match(g.stderr(), /worker \d+ died of signal 11; starting another/);
  for (let i = 0; i < 6; i++) assert.equal((await fetch(`http://127.0.0.1:${g.port}/health`)).status, 200);
  const ok = await client(g.port).chat.completions.create(chat({ max_tokens: 2 }));
  assert.equal(ok.usage.completion_tokens, 2);
});

// ---- 3. a half-alive backend -----------------------------------------------------------------

test('a backend that answers /metrics but hangs on inference is ejected within 2 s; its request is served elsewhere', async () => {
  const hung = await fakeBackend('hang');
  const good = await engine(['--time-scale', '0.2']);
  const g = await gateway('halfalive', [{ name: 'near', loc: TOKYO, backends: [hung] }, { name: 'far', loc: LONDON, backends: [good] }],
    'stall_ms: 1000\n');
  await sleep(300);
  const c = client(g.port, { 'x-infergrid-client-location': 'Tokyo' });
  const t0 = performance.now();
  const r = await c.chat.completions.create(chat({ max_tokens: 3 }));
  const took = performance.now() - t0;
  assert.equal(r.usage.completion_tokens, 3);
  assert.ok(took < 2000, `served after ${took.toFixed(0)} ms`);
  const m = await metrics(g.port);
  assert.equal(metric(m, 'infergrid_gateway_backend_ejected', 'site="near"'), 1);
  assert.equal(metric(m, 'infergrid_gateway_backend_ejections_total', 'site="near",backend="http://127.0.0.1:' + hung.port + '",reason="stalled"'), 1);
  // Scrapes still succeed, yet no new request waits on it.
  const t1 = performance.now();
  await c.chat.completions.create(chat({ max_tokens: 2 }));
  assert.ok(performance.now() - t1 < 500, 'the next request goes straight to the healthy site');
  const log = readFileSync(`${dir}/halfalive.log`, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(log[0].site, 'far');
  assert.equal(log[0].attempts, 2);
  assert.match(log[0].why, /stalled/);
});

test('consecutive failed requests eject a backend although its scrapes succeed', async () => {
  const refusing = await engine(['--refuse']);  // scrapes fine, every inference 503
  const good = await engine(['--time-scale', '0.2']);
  const g = await gateway('refusing', [{ name: 'near', loc: TOKYO, backends: [refusing] }, { name: 'far', loc: LONDON, backends: [good] }],
    'breaker_failures: 3\nbreaker_open_ms: 5000\n');
  await sleep(200);
  const c = client(g.port, { 'x-infergrid-client-location': 'Tokyo' });
  for (let i = 0; i < 4; i++) await c.chat.completions.create(chat({ max_tokens: 1 }));
  const m = await metrics(g.port);
  assert.equal(metric(m, 'infergrid_gateway_backend_ejected', 'site="near"'), 1);
  const log = readFileSync(`${dir}/refusing.log`, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(log[3].attempts, 1, 'once ejected, the near site is not tried');
});

// ---- 4. abandoned work ------------------------------------------------------------------------

async function openAndAbandon(port, n, tokens = 2000) {
  const socks = [];
  const body = JSON.stringify(chat({ max_tokens: tokens, stream: true }));
  await Promise.all(Array.from({ length: n }, () => new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    socks.push(s);
    s.on('error', () => {});
    s.once('data', () => resolve());
    s.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
  })));
  return socks;
}

async function runningWithin(enginePort, ms) {
  const t0 = performance.now();
  for (;;) {
    const v = metric(await metrics(enginePort), 'vllm:num_requests_running');
    if (v === 0) return performance.now() - t0;
    if (performance.now() - t0 > ms) return Infinity;
    await sleep(25);
  }
}

test('100 abandoned streams: the engine aborts them, vllm:num_requests_running back to 0 within 1 s', async () => {
  const e = await engine(['--max-num-seqs', '256']);
  const socks = await openAndAbandon(e.port, 100);
  // The answer's headers go out before the scheduler takes the request in: wait (up to 2 s) until
  // at least half of them are running, so the abort below is measured from a loaded engine.
  const t0 = performance.now();
  while (metric(await metrics(e.port), 'vllm:num_requests_running') < 50 && performance.now() - t0 < 2000) await sleep(20);
  assert.ok(metric(await metrics(e.port), 'vllm:num_requests_running') >= 50, 'the 100 streams never ran');
  for (const s of socks) s.destroy();
  const t = await runningWithin(e.port, 1000);
  assert.ok(t <= 1000, `still running after 1 s`);
  assert.equal(metric(await metrics(e.port), 'infergrid_engine_requests_aborted_total'), 100);
});

test('100 streams abandoned at the gateway are aborted upstream too; the backend is not charged for them', async () => {
  const e = await engine(['--max-num-seqs', '256']);
  const g = await gateway('abandon', [{ name: 'a', loc: TOKYO, backends: [e] }], 'breaker_failures: 3\n');
  await sleep(200);
  const socks = await openAndAbandon(g.port, 100);
  for (const s of socks) s.destroy();
  const t = await runningWithin(e.port, 1000);
  assert.ok(t <= 1000, 'the engine still runs abandoned requests after 1 s');
  await sleep(100);
  const m = await metrics(g.port);
  assert.equal(metric(m, 'infergrid_gateway_requests_total', 'site="a",class="interactive",outcome="client_gone"'), 100);
  assert.ok(Number.isNaN(metric(m, 'infergrid_gateway_requests_total', 'site="a",class="interactive",outcome="failed_midstream"')));
  assert.equal(metric(m, 'infergrid_gateway_backend_ejected', 'site="a"'), 0);
  assert.equal(metric(m, 'infergrid_gateway_backend_inflight', 'site="a"'), 0);
});

test('a non-streamed request whose client left is aborted and logged client_gone, not ok', async () => {
  const e = await engine();
  const g = await gateway('gone', [{ name: 'a', loc: TOKYO, backends: [e] }]);
  await sleep(150);
  const body = JSON.stringify(chat({ max_tokens: 3000 }));
  const s = net.connect({ port: g.port, host: '127.0.0.1' });
  s.on('error', () => {});
  s.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
  await sleep(400);
  assert.equal(metric(await metrics(e.port), 'vllm:num_requests_running'), 1);
  s.destroy();
  assert.ok((await runningWithin(e.port, 1000)) <= 1000);
  await sleep(100);
  const log = readFileSync(`${dir}/gone.log`, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(log.at(-1).outcome, 'client_gone');
  assert.equal(log.at(-1).status, 499);
});

// ---- 5. oversized prompts ----------------------------------------------------------------------

test('a prompt past --max-model-len is refused before it is scheduled', async () => {
  const e = await engine(['--max-model-len', '8192']);
  const g = await gateway('long', [{ name: 'a', loc: TOKYO, backends: [e] }]);
  await sleep(150);
  const c = client(g.port);
  const t0 = performance.now();
  // 786k tokens of prompt (3 MB of text by the 4-bytes rule).
  await assert.rejects(c.chat.completions.create({ model: 'llama3-8b', messages: [{ role: 'user', content: 'x'.repeat(786000 * 4) }], max_tokens: 5 }),
    (err) => err.status === 400 && err.code === 'context_length_exceeded' && /maximum context length is 8192/.test(err.message));
  assert.ok(performance.now() - t0 < 1000, 'refused at once');
  await assert.rejects(c.chat.completions.create(chat({ max_tokens: 9000 })), (err) => err.status === 400 && err.code === 'context_length_exceeded');
  // Nobody waited behind it.
  const t1 = performance.now();
  const ok = await c.chat.completions.create(chat({ max_tokens: 2 }));
  assert.equal(ok.usage.completion_tokens, 2);
  assert.ok(performance.now() - t1 < 500);
  assert.equal(metric(await metrics(e.port), 'vllm:prompt_tokens_total'), ok.usage.prompt_tokens);
});

// ---- 6. connections, slow clients, big upstream bodies ----------------------------------------

test('2,000 slowloris connections: a normal client keeps p99 under 50 ms; stalled headers time out', async () => {
  const e = await engine(['--time-scale', '0.01']);
  const g = await start(`ulimit -n 8192; exec ${BIN} gateway --config ${gatewayConfig('slowloris', [{ name: 'a', loc: TOKYO, backends: [e] }],
    'client_header_timeout_ms: 3000\nmax_connections_per_client: 2500\n')}`, { shell: true });
  await sleep(150);
  const loris = [];
  await Promise.all(Array.from({ length: 2000 }, () => new Promise((resolve) => {
    const s = net.connect({ port: g.port, host: '127.0.0.1', localAddress: '127.0.0.2' }, resolve);
    s.on('error', () => resolve());
    s.write('POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n');
    loris.push(s);
  })));
  const drip = setInterval(() => { for (const s of loris) if (!s.destroyed) s.write('X-a: b\r\n'); }, 500);
  const lat = [];
  const c = client(g.port);
  for (let i = 0; i < 100; i++) {
    const t0 = performance.now();
    await c.chat.completions.create(chat({ max_tokens: 1 }));
    lat.push(performance.now() - t0);
  }
  clearInterval(drip);
  lat.sort((a, b) => a - b);
  const p99 = lat[Math.floor(0.99 * lat.length)];
  assert.ok(p99 < 50, `p99 ${p99.toFixed(1)} ms`);
  // The header never ends: each connection is closed by the header timeout.
  await sleep(3500);
  const closed = loris.filter((s) => s.destroyed || s.readableEnded).length;
  const m = await metrics(g.port);
  assert.ok(metric(m, 'infergrid_gateway_client_timeouts_total', 'phase="header"') >= 1900, `header timeouts ${metric(m, 'infergrid_gateway_client_timeouts_total', 'phase="header"')}, closed ${closed}`);
  for (const s of loris) s.destroy();
});

test('per-client and total connection limits answer at once and close', async () => {
  const e = await engine(['--time-scale', '0.2']);
  const g = await gateway('limits', [{ name: 'a', loc: TOKYO, backends: [e] }], 'max_connections_per_client: 5\nmax_connections: 8\nclient_idle_timeout_ms: 60000\n');
  const held = [];
  for (let i = 0; i < 5; i++) held.push(await new Promise((r) => { const s = net.connect({ port: g.port, host: '127.0.0.1' }, () => r(s)); }));
  await sleep(100);
  const sixth = (await raw(g.port, 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n', 1000)).toString();
  assert.match(sixth, /^HTTP\/1\.1 429/);
  assert.match(sixth, /too_many_connections/);
  for (let i = 0; i < 3; i++) held.push(await new Promise((r) => { const s = net.connect({ port: g.port, host: '127.0.0.1', localAddress: '127.0.0.3' }, () => r(s)); }));
  await sleep(100);
  const ninth = (await raw(g.port, 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n', 1000, '127.0.0.4')).toString();
  assert.match(ninth, /^HTTP\/1\.1 503/);
  for (const s of held) s.destroy();
  await sleep(100);
  assert.equal((await fetch(`http://127.0.0.1:${g.port}/health`)).status, 200);
  const m = await metrics(g.port);
  assert.ok(metric(m, 'infergrid_gateway_connections_rejected_total', 'limit="per_client"') >= 1);
  assert.ok(metric(m, 'infergrid_gateway_connections_rejected_total', 'limit="total"') >= 1);
});

test('at the descriptor limit the accept loop waits instead of spinning a core', async () => {
  const e = await engine(['--time-scale', '0.2']);
  const g = await start(`ulimit -n 40; exec ${BIN} gateway --config ${gatewayConfig('fds', [{ name: 'a', loc: TOKYO, backends: [e] }])}`, { shell: true });
  await sleep(200);
  const socks = [];
  for (let i = 0; i < 80; i++) { const s = net.connect({ port: g.port, host: '127.0.0.1' }); s.on('error', () => {}); socks.push(s); }
  await sleep(300);
  const c0 = cpuTicks(g.proc.pid);
  await sleep(1000);
  const used = (cpuTicks(g.proc.pid) - c0) / 100;  // seconds (USER_HZ 100)
  assert.ok(used < 0.3, `${used} s of CPU in 1 s at the descriptor limit`);
  for (const s of socks) s.destroy();
  await sleep(200);
  assert.equal((await fetch(`http://127.0.0.1:${g.port}/health`)).status, 200);
  assert.ok(metric(await metrics(g.port), 'infergrid_gateway_connections_rejected_total', 'limit="descriptors"') >= 1);
});

test('a client that does not read: the relay pauses, memory stays bounded, the write timeout closes it and the engine aborts', async () => {
  const e = await engine(['--time-scale', '0.005', '--max-num-seqs', '256']);
  const g = await gateway('noread', [{ name: 'a', loc: TOKYO, backends: [e] }], 'client_write_timeout_ms: 2000\nrelay_buffer_bytes: 65536\n');
  await sleep(150);
  const rss0 = rssKb(g.proc.pid);
  const body = JSON.stringify(chat({ max_tokens: 100000, stream: true }));
  const s = net.connect({ port: g.port, host: '127.0.0.1' });
  s.on('error', () => {});
  s.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
  s.pause();  // never reads (so it would not see the close either: the gateway's counters tell)
  const t0 = performance.now();
  await sleep(1500);
  const grown = rssKb(g.proc.pid) - rss0;
  assert.ok(grown < 20000, `gateway grew ${grown} kB while the client did not read`);
  let timeouts = 0;
  for (let i = 0; i < 200 && !(timeouts >= 1); i++) {
    await sleep(100);
    timeouts = metric(await metrics(g.port), 'infergrid_gateway_client_timeouts_total', 'phase="write"');
  }
  assert.equal(timeouts, 1, 'the write timeout dropped the stuck client');
  const dropped = performance.now() - t0;
  const grownLater = rssKb(g.proc.pid) - rss0;
  assert.ok(grownLater < 20000, `gateway grew ${grownLater} kB by the time the client was dropped (${dropped.toFixed(0)} ms)`);
  assert.ok((await runningWithin(e.port, 1000)) <= 1000, 'the engine stops generating for the stuck client');
  const log = readFileSync(`${dir}/noread.log`, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(log.at(-1).outcome, 'client_gone');
  s.destroy();
});

test('huge upstream bodies are capped: 502 in the OpenAI format, memory bounded', async () => {
  const huge = await fakeBackend('huge');
  const g = await gateway('huge', [{ name: 'a', loc: TOKYO, backends: [huge] }], 'max_upstream_body_bytes: 4194304\nretries: 0\n');
  await sleep(150);
  const rss0 = rssKb(g.proc.pid);
  const c = client(g.port);
  await Promise.all(Array.from({ length: 10 }, () => assert.rejects(c.chat.completions.create(chat()),
    (err) => err.status === 502 && err.code === 'upstream_too_large')));
  const grown = rssKb(g.proc.pid) - rss0;
  assert.ok(grown < 100000, `gateway grew ${grown} kB for ten 60 MB answers`);
});

// ---- 7. upstream answers are checked ----------------------------------------------------------

test('a backend answering HTML, SSE to a plain request, or broken SSE gives OpenAI errors, never data:data:', async () => {
  const html = await fakeBackend('html');
  const sseForJson = await fakeBackend('sse-for-json');
  const badSse = await fakeBackend('bad-sse');
  const cut = await fakeBackend('cut-sse');
  const one = (name, b) => gateway(name, [{ name: 'a', loc: TOKYO, backends: [b] }], 'retries: 0\nbreaker_failures: 100\n');
  const gh = await one('html', html);
  await assert.rejects(client(gh.port).chat.completions.create(chat()), (err) => err.status === 502 && /text\/html/.test(err.message));
  await assert.rejects(client(gh.port).chat.completions.create(chat({ stream: true })), (err) => err.status === 502);
  const gs = await one('sse4json', sseForJson);
  await assert.rejects(client(gs.port).chat.completions.create(chat()), (err) => err.status === 502 && /event-stream/.test(err.message));
  for (const [name, b] of [['badsse', badSse], ['cutsse', cut]]) {
    const g = await one(name, b);
    const r = await fetch(`http://127.0.0.1:${g.port}/v1/chat/completions`, { method: 'POST', body: JSON.stringify(chat({ stream: true })) });
    assert.equal(r.status, 200);
    const text = await r.text();
    assert.ok(!text.includes('data:data:') && !text.includes('data: data:'), text);
    const events = text.split('\n\n').filter(Boolean);
    assert.ok(events.length >= 3, text);
    assert.equal(events.at(-1), 'data: [DONE]');
    const err = JSON.parse(events.at(-2).slice(6));
    assert.equal(err.error.code, 'upstream_error');
    for (const ev of events.slice(0, -1)) JSON.parse(ev.slice(6));  // every event is whole JSON
    // And the SDK raises it as an error.
    const s = await client(g.port).chat.completions.create(chat({ stream: true }));
    await assert.rejects((async () => { for await (const _ of s); })(), (e2) => e2 instanceof OpenAI.APIError);
  }
});

// ---- 8. validation and error accounting -------------------------------------------------------

test('bad sampling parameters get 400 naming the parameter', async () => {
  const e = await engine(['--time-scale', '0.2']);
  const g = await gateway('params', [{ name: 'a', loc: TOKYO, backends: [e] }]);
  const c = client(g.port);
  const cases = [[{ temperature: 'hot' }, 'temperature'], [{ temperature: -5 }, 'temperature'], [{ top_p: 'x' }, 'top_p'],
    [{ top_p: 1.5 }, 'top_p'], [{ n: 1000 }, 'n'], [{ n: 0 }, 'n'], [{ stop: 123 }, 'stop'], [{ stop: ['a', 'b', 'c', 'd', 'e'] }, 'stop'],
    [{ tools: 'x' }, 'tools'], [{ tools: [{ type: 'function' }] }, 'tools'], [{ presence_penalty: 3 }, 'presence_penalty'],
    [{ seed: 1.5 }, 'seed'], [{ logprobs: 'yes' }, 'logprobs'], [{ top_logprobs: 50 }, 'top_logprobs'], [{ user: 5 }, 'user'],
    [{ response_format: { type: 'yaml' } }, 'response_format'], [{ tool_choice: 'sometimes' }, 'tool_choice']];
  for (const [extra, param] of cases)
    await assert.rejects(c.chat.completions.create(chat(extra)), (err) => err.status === 400 && err.param === param, JSON.stringify(extra));
  for (const extra of [{ temperature: 0 }, { temperature: 2 }, { top_p: 1 }, { stop: ['a'] }, { stop: 'x' },
    { tools: [{ type: 'function', function: { name: 'f' } }] }, { seed: 7 }, { user: 'u' }])
    assert.equal((await c.chat.completions.create(chat({ ...extra, max_tokens: 1 }))).usage.completion_tokens, 1, JSON.stringify(extra));
  await assert.rejects(c.completions.create({ model: 'llama3-8b', prompt: 'x', logprobs: 9 }), (err) => err.status === 400 && err.param === 'logprobs');
});

test('after the retries the client gets 502 or 504 with the last cause, not 503 no_backend', async () => {
  const a = await engine(['--refuse']);
  const b = await engine(['--refuse']);
  const g = await gateway('exhausted', [{ name: 'x', loc: TOKYO, backends: [a] }, { name: 'y', loc: LONDON, backends: [b] }], 'retries: 2\n');
  await sleep(150);
  await assert.rejects(client(g.port).chat.completions.create(chat()),
    (err) => err.status === 502 && err.code === 'upstream_error' && /after 2 attempts: status 503/.test(err.message));
  const hung = await fakeBackend('hang');
  const g2 = await gateway('timeout', [{ name: 'x', loc: TOKYO, backends: [hung] }], 'first_byte_timeout_ms: 300\nretries: 0\n');
  await sleep(150);
  await assert.rejects(client(g2.port).chat.completions.create(chat()), (err) => err.status === 504 && err.code === 'upstream_timeout');
});

test('promtool accepts the gateway /metrics', async () => {
  const e = await engine(['--time-scale', '0.2']);
  const g = await gateway('prom', [{ name: 'a', loc: TOKYO, backends: [e] }]);
  await sleep(150);
  await client(g.port).chat.completions.create(chat({ max_tokens: 2 }));
  const text = await metrics(g.port);
  const out = await new Promise((resolve) => {
    const p = spawn('promtool', ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let o = '';
    p.stdout.on('data', (d) => { o += d; });
    p.stderr.on('data', (d) => { o += d; });
    p.on('close', (code) => resolve({ code, o }));
    p.stdin.end(text);
  });
  assert.equal(out.code, 0, out.o);
});
