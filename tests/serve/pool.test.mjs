// The gateway as a control host that scales: a site's pool of engine processes the gateway
// starts and stops itself, driven by the skyserve controller (target QPS per replica) through
// the control seam. Real processes, real ports, the official `openai` npm client.
// Run: node --test tests/serve/pool.test.mjs   (INFERGRID_BIN picks the binary)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { createRequire } from 'node:module';
import { startListening, until } from './procs.mjs';

const require = createRequire(new URL('../../web/package.json', import.meta.url));
const OpenAI = require('openai').default ?? require('openai');

const BIN = process.env.INFERGRID_BIN || path.resolve('build/infergrid');
const dir = mkdtempSync(path.join(tmpdir(), 'infergrid-pool-'));
const procs = [];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const LOAD_S = 2, TIME_SCALE = 0.25;  // each replica loads weights for 0.5 s of wall time

const start = (args) => startListening(procs, BIN, args);

// Ports free now (bound to 0 and released): the pool's replica slots.
async function freePorts(n) {
  const servers = await Promise.all(Array.from({ length: n }, () => new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => resolve(s));
  })));
  const ports = servers.map((s) => s.address().port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

const refused = (port) => new Promise((resolve) => {
  const s = net.connect(port, '127.0.0.1');
  s.on('connect', () => { s.destroy(); resolve(false); });
  s.on('error', () => resolve(true));
});

let gw, ports;
const metric = async (name, labels = '') => {
  const t = await (await fetch(`http://127.0.0.1:${gw.port}/metrics`)).text();
  const re = new RegExp(`^${name}\\{[^}]*${labels}[^}]*\\} (\\S+)$`, 'm');
  const m = t.match(re);
  return m ? Number(m[1]) : NaN;
};
const ready = () => metric('infergrid_gateway_pool_replicas', 'phase="ready"');
const client = () => new OpenAI({ baseURL: `http://127.0.0.1:${gw.port}/v1`, apiKey: 'none', maxRetries: 0, timeout: 30000 });
const results = { ok: 0, failed: [] };
async function ask(i, maxTokens = 8, stream = false) {
  try {
    const c = client();
    if (stream) {
      const s = await c.chat.completions.create({ model: 'llama3-8b', messages: [{ role: 'user', content: `stream ${i}` }], max_tokens: maxTokens, stream: true });
      let n = 0;
      for await (const ch of s) if (ch.choices[0]?.delta?.content) ++n;
      assert.ok(n > 0);
    } else {
      const r = await c.chat.completions.create({ model: 'llama3-8b', messages: [{ role: 'user', content: `request ${i}` }], max_tokens: maxTokens });
      assert.equal(r.usage.completion_tokens, maxTokens);
    }
    ++results.ok;
  } catch (e) {
    results.failed.push(`${i}: ${e.status ?? ''} ${e.message}`);
  }
}
// `rate` requests per second for `seconds`, each awaited at the end.
async function load(rate, seconds, opts = {}) {
  const pending = [];
  const n = Math.round(rate * seconds);
  for (let i = 0; i < n; ++i) {
    pending.push(ask(i, opts.maxTokens ?? 8, opts.stream ?? false));
    await sleep(1000 / rate);
  }
  await Promise.all(pending);
}

before(async () => {
  ports = await freePorts(3);
  const cfg = `${dir}/gw.yaml`;
  writeFileSync(cfg, `listen: 127.0.0.1:0
policy: nearest
access_log: ${dir}/access.log
scrape_interval_ms: 50
retries: 2
controller: skyserve
control:
  period_s: 0.5
  target_qps_per_replica: 4
  upscale_delay_s: 1
  downscale_delay_s: 3
  min_replicas: 1
sites:
  - name: lab
    location: [51.5, -0.1]
    pools:
      - model: llama3-8b
        command: [${BIN}, engine, --port, '{port}', --model, '{model}', --time-scale, '${TIME_SCALE}', --load-s, '${LOAD_S}']
        ports: [${ports.join(', ')}]
        initial: 1
        ready_timeout_s: 20
        drain_timeout_s: 20
        log_dir: ${dir}/replicas
`);
  gw = await start(['gateway', '--config', cfg]);
});

after(() => { for (const p of procs) p.kill('SIGTERM'); });

test('the pool starts its initial replica, ready after its weight load, and it serves', async () => {
  await until('one replica ready', async () => (await ready()) === 1, 10000);
  assert.equal(await metric('infergrid_gateway_pool_starts_total'), 1);
  const cold = await metric('infergrid_gateway_pool_cold_start_seconds_sum');
  assert.ok(cold >= LOAD_S * TIME_SCALE && cold < 5, `cold start ${cold} s, load ${LOAD_S * TIME_SCALE} s`);
  assert.ok(await refused(ports[1]) && await refused(ports[2]), 'the other slots run nothing');
  await ask('first');
  assert.deepEqual(results.failed, []);
});

test('a surge makes the controller scale the pool up; every request is answered', async () => {
  // 24 req/s at 4 per replica wants 6: the pool's 3. Answers of 64 tokens keep several in flight,
  // so the least-loaded balancer spreads them over the replicas as they come up.
  const surge = load(24, 7, { maxTokens: 64 });
  const took = await until('three replicas ready', async () => (await ready()) === 3, 7000);
  await surge;
  assert.deepEqual(results.failed, [], 'no request failed while replicas started');
  assert.equal(await metric('infergrid_gateway_pool_starts_total'), 3);
  assert.ok(await metric('infergrid_gateway_control_decisions_total', 'kind="scale",applied="true"') >= 1);
  const log = readFileSync(`${dir}/access.log`, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const backends = new Set(log.filter((r) => r.status === 200).map((r) => r.backend));
  assert.equal(backends.size, 3, `requests reached every replica: ${[...backends]}`);
  console.log(`scaled 1 -> 3 replicas ${took} ms into the surge; ${results.ok} requests answered`);
});

test('when the surge ends the pool drains back to one; no request is lost and the processes end', async () => {
  // Light streaming load throughout the drain: streams in flight on a draining replica finish there.
  const before = results.ok;
  const light = load(2, 8, { stream: true, maxTokens: 150 });
  await until('drained to one replica', async () => (await ready()) === 1 &&
    (await metric('infergrid_gateway_pool_replicas', 'phase="draining"')) === 0, 12000);
  await light;
  assert.deepEqual(results.failed, []);
  assert.ok(results.ok - before >= 15);
  assert.equal(await metric('infergrid_gateway_pool_stops_total'), 2);
  let gone = 0;
  for (const p of ports) gone += await refused(p) ? 1 : 0;
  assert.equal(gone, 2, 'two replica processes have ended');
});

test('a replica that dies is counted as crashed and the controller starts another', async () => {
  const live = [];
  for (const p of ports) if (!(await refused(p))) live.push(p);
  assert.equal(live.length, 1);
  // Its pid, from /proc: the process whose command line has --port PORT.
  let pid = 0;
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const argv = readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
      const k = argv.indexOf('--port');
      if (k >= 0 && argv[k + 1] === String(live[0]) && argv.includes('engine')) pid = Number(d);
    } catch { /* gone */ }
  }
  assert.ok(pid > 0);
  process.kill(pid, 'SIGKILL');
  await until('crash counted', async () => (await metric('infergrid_gateway_pool_crashes_total')) === 1, 5000);
  await until('a replica ready again', async () => (await ready()) === 1, 10000);
  const failedBefore = results.failed.length;
  await ask('after');
  assert.equal(results.failed.length, failedBefore);
  assert.equal(await metric('infergrid_gateway_pool_failed_starts_total'), 0);
});

test('metrics pass promtool', async () => {
  const t = await (await fetch(`http://127.0.0.1:${gw.port}/metrics`)).text();
  const pc = spawnSync('promtool', ['check', 'metrics'], { input: t, encoding: 'utf8' });
  assert.equal(pc.status, 0, `promtool check metrics exited ${pc.status}:\n${pc.stdout}${pc.stderr}`);
});

test('stopping the gateway stops its replicas', async () => {
  gw.proc.kill('SIGTERM');
  await new Promise((r) => gw.proc.on('exit', r));
  await sleep(200);
  for (const p of ports) assert.ok(await refused(p), `port ${p} still answers`);
});
