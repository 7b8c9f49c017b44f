// The live fabric end to end: real engine and gateway processes on loopback (port 0), driven by
// the official `openai` npm client, streaming and not; faults (a backend killed under load, one
// that breaks mid-stream), overload with mixed priorities, and bad input.
// Run: node --test tests/serve/fabric.test.mjs   (INFERGRID_BIN picks the binary)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { startListening } from './procs.mjs';

const require = createRequire(new URL('../../web/package.json', import.meta.url));
const OpenAI = require('openai').default ?? require('openai');

const BIN = process.env.INFERGRID_BIN || path.resolve('build/infergrid');
const dir = mkdtempSync(path.join(tmpdir(), 'infergrid-fabric-'));
const procs = [];

const start = (args) => startListening(procs, BIN, args);

function gatewayConfig(name, sites, extra = '') {
  let y = `listen: 127.0.0.1:0\npolicy: nearest\naccess_log: ${dir}/${name}.log\nscrape_interval_ms: 50\n${extra}sites:\n`;
  for (const s of sites) {
    y += `  - name: ${s.name}\n    location: [${s.loc[0]}, ${s.loc[1]}]\n    backends:\n`;
    for (const b of s.backends) y += `      - url: http://127.0.0.1:${b.port}\n        models: [llama3-8b]\n${b.max ? `        max_concurrency: ${b.max}\n` : ''}`;
  }
  const file = `${dir}/${name}.yaml`;
  writeFileSync(file, y);
  return file;
}

const client = (port, headers = {}) => new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'none', maxRetries: 0, timeout: 30000, defaultHeaders: headers });
const TOKYO = [35.68, 139.69], LONDON = [51.51, -0.13], VIRGINIA = [38.9, -77.0];
let engines, gw;

before(async () => {
  engines = {
    tokyo: await start(['engine', '--port', '0', '--model', 'llama3-8b', '--time-scale', '0.5']),
    london: await start(['engine', '--port', '0', '--model', 'llama3-8b', '--time-scale', '0.5']),
    london2: await start(['engine', '--port', '0', '--model', 'llama3-8b', '--time-scale', '0.5']),
    virginia: await start(['engine', '--port', '0', '--model', 'llama3-8b', '--time-scale', '0.5']),
  };
  const cfg = gatewayConfig('main', [
    { name: 'tokyo', loc: TOKYO, backends: [engines.tokyo] },
    { name: 'london', loc: LONDON, backends: [engines.london, engines.london2] },
    { name: 'virginia', loc: VIRGINIA, backends: [engines.virginia] },
  ]);
  gw = await start(['gateway', '--config', cfg]);
  await new Promise((r) => setTimeout(r, 200));  // a few scrapes
});

after(() => { for (const p of procs) p.kill('SIGKILL'); });

test('chat completion, not streamed, from the nearest site', async () => {
  const c = client(gw.port, { 'x-infergrid-client-location': '48.86,2.35' });
  const r = await c.chat.completions.create({ model: 'llama3-8b', messages: [{ role: 'user', content: 'Hello from Paris' }], max_tokens: 12 });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.ok(r.choices[0].message.content.length > 10);
  assert.equal(r.usage.completion_tokens, 12);
  assert.equal(r.choices[0].finish_reason, 'length');
  const log = readFileSync(`${dir}/main.log`, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const last = log[log.length - 1];
  assert.equal(last.site, 'london');
  assert.equal(last.candidates.length, 3);
  assert.match(last.why, /^nearest/);
  assert.equal(last.score, 'rtt_ms (lowest wins)');
  const chosen = last.candidates.find((c) => c.site === 'london');
  assert.equal(chosen.score, Math.min(...last.candidates.map((c) => c.score)));
});

test('chat completion streamed with usage; every chunk parses', async () => {
  const c = client(gw.port, { 'x-infergrid-client-location': 'Tokyo' });
  const stream = await c.chat.completions.create({ model: 'llama3-8b', messages: [{ role: 'user', content: 'stream please' }], max_tokens: 20, stream: true, stream_options: { include_usage: true } });
  let text = '', chunks = 0, usage = null, finish = null;
  for await (const ch of stream) {
    chunks++;
    assert.equal(ch.object, 'chat.completion.chunk');
    if (ch.usage) usage = ch.usage;
    for (const choice of ch.choices) {
      text += choice.delta.content ?? '';
      if (choice.finish_reason) finish = choice.finish_reason;
    }
  }
  assert.equal(usage.completion_tokens, 20);
  assert.equal(finish, 'length');
  assert.ok(chunks >= 22, `chunks ${chunks}`);
  assert.ok(text.split(' ').length >= 15);
});

test('legacy completions, streamed and not; models list', async () => {
  const c = client(gw.port);
  const r = await c.completions.create({ model: 'llama3-8b', prompt: 'Once upon a time', max_tokens: 5 });
  assert.equal(r.object, 'text_completion');
  assert.equal(r.usage.completion_tokens, 5);
  const s = await c.completions.create({ model: 'llama3-8b', prompt: ['a', 'b'], max_tokens: 4, stream: true });
  let n = 0;
  for await (const ch of s) n += ch.choices.length ? 1 : 0;
  assert.ok(n >= 4);
  const models = await c.models.list();
  assert.deepEqual(models.data.map((m) => m.id), ['llama3-8b']);
});

test('bad input gets the right status and an OpenAI error body', async () => {
  const c = client(gw.port);
  await assert.rejects(c.chat.completions.create({ model: 'gpt-9', messages: [{ role: 'user', content: 'x' }] }),
    (e) => e.status === 404 && e.code === 'model_not_found');
  await assert.rejects(c.chat.completions.create({ model: 'llama3-8b', messages: [] }),
    (e) => e.status === 400 && e.param === 'messages');
  await assert.rejects(c.chat.completions.create({ model: 'llama3-8b', messages: [{ role: 'user', content: 'x' }], max_tokens: -3 }),
    (e) => e.status === 400 && e.param === 'max_tokens');
  const raw = async (body, headers = {}) => {
    const r = await fetch(`http://127.0.0.1:${gw.port}/v1/chat/completions`, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } });
    return { status: r.status, body: await r.json() };
  };
  let r = await raw('{"model": "llama3-8b", "messages": [');
  assert.equal(r.status, 400);
  assert.equal(r.body.error.type, 'invalid_request_error');
  r = await raw(JSON.stringify({ model: 'llama3-8b', messages: [{ role: 'user', content: 'x'.repeat(9 << 20) }] }));
  assert.equal(r.status, 413);
  assert.equal(r.body.error.code, 'body_too_large');
  r = await raw(JSON.stringify({ model: 'llama3-8b', messages: [{ role: 'user', content: 'x' }] }), { 'x-infergrid-priority': 'urgent' });
  assert.equal(r.status, 400);
  r = await raw(JSON.stringify({ model: 'llama3-8b', messages: [{ role: 'user', content: 'x' }] }), { 'x-infergrid-client-location': 'Atlantis' });
  assert.equal(r.status, 400);
  const nf = await fetch(`http://127.0.0.1:${gw.port}/v2/nothing`);
  assert.equal(nf.status, 404);
  assert.ok((await nf.json()).error.message);
});

test('killing an engine under load: every request completes or gets an OpenAI error', async () => {
  const victim = await start(['engine', '--port', '0', '--model', 'llama3-8b', '--time-scale', '0.5']);
  const spare = await start(['engine', '--port', '0', '--model', 'llama3-8b', '--time-scale', '0.5']);
  const cfg = gatewayConfig('kill', [
    { name: 'near', loc: TOKYO, backends: [victim] },
    { name: 'far', loc: LONDON, backends: [spare] },
  ], 'breaker_failures: 1\nbreaker_open_ms: 5000\n');
  const g = await start(['gateway', '--config', cfg]);
  await new Promise((r) => setTimeout(r, 150));
  const c = client(g.port, { 'x-infergrid-client-location': 'Tokyo' });
  const N = 60;
  let completed = 0, errored = 0;
  const one = async (i) => {
    try {
      const s = await c.chat.completions.create({ model: 'llama3-8b', messages: [{ role: 'user', content: `load ${i}` }], max_tokens: 300, stream: true });
      let finish = null;
      for await (const ch of s) for (const choice of ch.choices) if (choice.finish_reason) finish = choice.finish_reason;
      assert.equal(finish, 'length');
      completed++;
    } catch (e) {
      assert.ok(e instanceof OpenAI.APIError, `not an OpenAI error: ${e}`);
      errored++;
    }
  };
  const all = Promise.all(Array.from({ length: N }, (_, i) => new Promise((r) => setTimeout(r, i * 5)).then(() => one(i))));
  await new Promise((r) => setTimeout(r, 400));
  victim.proc.kill('SIGKILL');
  await all;
  assert.equal(completed + errored, N);
  assert.ok(errored > 0, 'some streams were cut mid-way');
  // After the failure, new requests go to the surviving site.
  const r = await c.chat.completions.create({ model: 'llama3-8b', messages: [{ role: 'user', content: 'after' }], max_tokens: 3 });
  assert.equal(r.usage.completion_tokens, 3);
  const log = readFileSync(`${dir}/kill.log`, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(log.length, N + 1, 'one access-log line per request');
  assert.equal(log[log.length - 1].site, 'far');
  assert.ok(log.some((l) => l.outcome.startsWith('failed_midstream') || l.outcome.startsWith('error')));
});

test('a backend that breaks mid-stream ends the stream with an error event; one that refuses is retried', async () => {
  const flaky = await start(['engine', '--port', '0', '--model', 'llama3-8b', '--fail-after-tokens', '3', '--time-scale', '0.5']);
  const refusing = await start(['engine', '--port', '0', '--model', 'llama3-8b', '--refuse']);
  const good = await start(['engine', '--port', '0', '--model', 'llama3-8b', '--time-scale', '0.5']);
  const g1 = await start(['gateway', '--config', gatewayConfig('flaky', [{ name: 'x', loc: TOKYO, backends: [flaky] }])]);
  await new Promise((r) => setTimeout(r, 150));
  const s = await client(g1.port).chat.completions.create({ model: 'llama3-8b', messages: [{ role: 'user', content: 'x' }], max_tokens: 50, stream: true });
  let got = 0;
  await assert.rejects((async () => { for await (const ch of s) got += ch.choices.length; })(), (e) => e instanceof OpenAI.APIError);
  assert.ok(got >= 1 && got <= 3, `chunks before the error: ${got}`);
  // A refusing backend (503 before any byte) is retried at another site.
  const g2 = await start(['gateway', '--config', gatewayConfig('refuse', [
    { name: 'near', loc: TOKYO, backends: [refusing] }, { name: 'far', loc: LONDON, backends: [good] }])]);
  await new Promise((r) => setTimeout(r, 30));
  const r = await client(g2.port, { 'x-infergrid-client-location': 'Tokyo' }).chat.completions.create({ model: 'llama3-8b', messages: [{ role: 'user', content: 'x' }], max_tokens: 2 });
  assert.equal(r.usage.completion_tokens, 2);
});

test('overload: batch is shed with 429 and Retry-After, critical keeps its TTFT', async () => {
  const e = await start(['engine', '--port', '0', '--model', 'llama3-8b', '--max-num-seqs', '8']);
  // The backend counts as full at its 8 engine slots; batch may hold at most half of them.
  const g = await start(['gateway', '--config', gatewayConfig('overload', [{ name: 'one', loc: TOKYO, backends: [{ ...e, max: 8 }] }],
    'batch_shed_at: 0.5\ninteractive_shed_at: 1.0\n')]);
  await new Promise((r) => setTimeout(r, 150));
  const results = { batch: { ok: 0, shed: 0 }, critical: { ok: 0, shed: 0, ttft: [] } };
  const one = async (cls, i) => {
    const c = client(g.port, { 'x-infergrid-priority': cls });
    const t0 = performance.now();
    try {
      const s = await c.chat.completions.create({ model: 'llama3-8b', messages: [{ role: 'user', content: `${cls} ${i}` }], max_tokens: cls === 'batch' ? 400 : 20, stream: true });
      let first = null;
      for await (const ch of s) if (first === null && ch.choices.length) first = performance.now() - t0;
      results[cls].ok++;
      if (cls === 'critical') results.critical.ttft.push(first);
    } catch (err) {
      assert.equal(err.status, 429, `${cls}: ${err}`);
      assert.equal(err.headers['retry-after'], '1');
      results[cls].shed++;
    }
  };
  const batch = Array.from({ length: 40 }, (_, i) => one('batch', i));
  await new Promise((r) => setTimeout(r, 100));
  const critical = Array.from({ length: 10 }, (_, i) => new Promise((r) => setTimeout(r, i * 20)).then(() => one('critical', i)));
  await Promise.all([...batch, ...critical]);
  assert.ok(results.batch.shed > 0, 'batch was shed');
  assert.equal(results.critical.shed, 0, 'critical is never shed');
  assert.equal(results.critical.ok, 10);
  const worst = Math.max(...results.critical.ttft);
  assert.ok(worst < 1000, `critical TTFT ${worst.toFixed(0)} ms within its 1 s SLO`);
});

test('the gateway hosts a controller: it observes its backends and counts what it cannot carry out', async () => {
  const cfg = gatewayConfig('control', [
    { name: 'london', loc: LONDON, backends: [engines.london, engines.london2] },
  ], 'controller: dynamo\ncontrol: {period_s: 0.2}\n');
  const g = await start(['gateway', '--config', cfg]);
  await new Promise((r) => setTimeout(r, 1200));
  const m = await (await fetch(`http://127.0.0.1:${g.port}/metrics`)).text();
  const v = (labels) => Number((m.match(new RegExp(`^infergrid_gateway_control_decisions_total\\{${labels}\\} (\\S+)$`, 'm')) || [])[1]);
  const ticks = Number((m.match(/^infergrid_gateway_control_ticks_total (\S+)$/m) || [])[1]);
  assert.ok(ticks >= 3, `controller periods run: ${ticks}`);
  // Two idle backends: Dynamo's planner asks for one fewer (KV and queue under its down
  // thresholds); a gateway has no orchestrator, so the decision is counted, not carried out.
  assert.ok(v('kind="scale",applied="false"') >= 1, m);
  assert.equal(v('kind="shed",applied="true"'), 0);
  // It still serves.
  const r = await client(g.port).chat.completions.create({ model: 'llama3-8b', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 });
  assert.equal(r.usage.completion_tokens, 3);
  // A parameter the controller does not read is refused with the file, line and field.
  const bad = gatewayConfig('control-bad', [{ name: 'london', loc: LONDON, backends: [engines.london] }],
    'controller: dynamo\ncontrol: {target_qps: 3}\n');
  await assert.rejects(start(['gateway', '--config', bad]), /control-bad\.yaml:\d+.*target_qps/);
});
