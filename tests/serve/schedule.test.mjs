// The gateway carrying out a controller's engine schedules: infergrid's controller keeps each
// engine's iterations within the TPOT SLO of what it serves (control::Decisions::Schedule); the
// gateway posts them to the engines (POST /admin/schedule) and keeps them converged, so an engine
// restarted with its defaults gets them again. Real processes, the official `openai` npm client.
// Run: node --test tests/serve/schedule.test.mjs   (INFERGRID_BIN picks the binary)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { startListening, until } from './procs.mjs';

const require = createRequire(new URL('../../web/package.json', import.meta.url));
const OpenAI = require('openai').default ?? require('openai');

const BIN = process.env.INFERGRID_BIN || path.resolve('build/infergrid');
const dir = mkdtempSync(path.join(tmpdir(), 'infergrid-schedule-'));
const procs = [];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const start = (args) => startListening(procs, BIN, args);

const value = (text, name) => {
  const m = text.match(new RegExp(`^${name}(\\{[^}]*\\})? (\\S+)$`, 'm'));
  return m ? Number(m[2]) : NaN;
};
const scrape = async (port) => (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
const decisions = async (applied) =>
  value(await scrape(gw.port), `infergrid_gateway_control_decisions_total\\{kind="schedule",applied="${applied}"\\}`);
const stepOf = async (port) => value(await scrape(port), 'infergrid_engine_step_target_seconds');

let a, b, gw;
before(async () => {
  a = await start(['engine', '--port', '0', '--model', 'llama3-8b', '--time-scale', '0.5']);
  b = await start(['engine', '--port', '0', '--model', 'llama3-8b', '--time-scale', '0.5']);
  const cfg = `${dir}/gw.yaml`;
  writeFileSync(cfg, `listen: 127.0.0.1:0
policy: nearest
access_log: ${dir}/access.log
scrape_interval_ms: 50
controller: infergrid
control:
  period_s: 0.3
tpot_slo_ms: {llama3-8b: 50}
sites:
  - name: lab
    location: [51.5, -0.1]
    backends:
      - {url: 'http://127.0.0.1:${a.port}', models: [llama3-8b]}
      - {url: 'http://127.0.0.1:${b.port}', models: [llama3-8b]}
`);
  gw = await start(['gateway', '--config', cfg]);
});

after(() => { for (const p of procs) p.kill('SIGKILL'); });

test('an engine starts with the token budget alone, and takes a schedule over POST /admin/schedule', async () => {
  const c = await start(['engine', '--port', '0', '--model', 'llama3-8b']);
  assert.equal(await stepOf(c.port), 0);
  const post = (body) => fetch(`http://127.0.0.1:${c.port}/admin/schedule`, { method: 'POST', body });
  const ok = await post('{"step_target_s": 0.04, "priority": false}');
  assert.equal(ok.status, 200);
  assert.deepEqual(await ok.json(), { step_target_s: 0.04, prefill_reserve: 0, priority: false });
  const t = await scrape(c.port);
  assert.equal(value(t, 'infergrid_engine_step_target_seconds'), 0.04);
  assert.equal(value(t, 'infergrid_engine_priority_scheduling'), 0);
  for (const [body, param] of [['{"step_target_s": -1}', 'step_target_s'], ['{"prefill_reserve": 2}', 'prefill_reserve'],
                               ['{"priority": "yes"}', 'priority'], ['{"speed": 1}', 'speed'], ['not json', null], ['[1]', null]]) {
    const r = await post(body);
    assert.equal(r.status, 400, body);
    const e = (await r.json()).error;
    assert.equal(e.type, 'invalid_request_error');
    assert.equal(e.param, param);
  }
  assert.equal((await fetch(`http://127.0.0.1:${c.port}/admin/schedule`)).status, 405);
  assert.equal(await stepOf(c.port), 0.04, 'a refused body changes nothing');
  // The engine's own families (its vllm: names are vLLM's, colons and all, by design).
  const own = (await scrape(c.port)).split('\n').filter((l) => /^(# (HELP|TYPE) )?infergrid_engine_/.test(l)).join('\n') + '\n';
  assert.match(own, /infergrid_engine_step_prefill_reserve/);
  const pc = spawnSync('promtool', ['check', 'metrics'], { input: own, encoding: 'utf8' });
  assert.equal(pc.status, 0, `promtool check metrics exited ${pc.status}:\n${pc.stdout}${pc.stderr}`);
  c.proc.kill('SIGKILL');
});

test('an engine with an API key refuses a schedule without it', async () => {
  const c = await start(['engine', '--port', '0', '--model', 'llama3-8b', '--api-key', 'k3y']);
  const url = `http://127.0.0.1:${c.port}/admin/schedule`;
  assert.equal((await fetch(url, { method: 'POST', body: '{"step_target_s": 0.04}' })).status, 401);
  const r = await fetch(url, { method: 'POST', body: '{"step_target_s": 0.04}', headers: { authorization: 'Bearer k3y' } });
  assert.equal(r.status, 200);
  c.proc.kill('SIGKILL');
});

test("the gateway carries infergrid's schedule to every engine: iterations within the 50 ms TPOT SLO", async () => {
  await until('both engines at a 50 ms step target', async () => (await stepOf(a.port)) === 0.05 && (await stepOf(b.port)) === 0.05, 8000);
  for (const e of [a, b]) assert.equal(value(await scrape(e.port), 'infergrid_engine_priority_scheduling'), 1);
  assert.ok((await decisions('true')) >= 2, 'one schedule taken per engine');
  assert.equal(await decisions('false'), 0);
  const client = new OpenAI({ baseURL: `http://127.0.0.1:${gw.port}/v1`, apiKey: 'none', maxRetries: 0, timeout: 30000 });
  const r = await client.chat.completions.create({ model: 'llama3-8b', messages: [{ role: 'user', content: 'hello' }], max_tokens: 6 });
  assert.equal(r.usage.completion_tokens, 6);
});

test('an engine restarted with its defaults is brought back to the schedule', async () => {
  const before = await decisions('true');
  const port = b.port;
  b.proc.kill('SIGKILL');
  await new Promise((r) => b.proc.on('exit', r));
  b = await start(['engine', '--port', String(port), '--model', 'llama3-8b', '--time-scale', '0.5']);
  await until('the restarted engine at a 50 ms step target again', async () => (await stepOf(b.port)) === 0.05, 8000);
  assert.ok((await decisions('true')) > before);
  const pc = spawnSync('promtool', ['check', 'metrics'], { input: await scrape(gw.port), encoding: 'utf8' });
  assert.equal(pc.status, 0, `promtool check metrics exited ${pc.status}:\n${pc.stdout}${pc.stderr}`);
});
