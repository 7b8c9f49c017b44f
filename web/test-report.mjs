// Opens a planet report in headless Debian chromium (playwright-core) and checks that the map and
// every chart render, that nothing is fetched from the network, and that the console stays clean.
// Usage: node web/test-report.mjs DIR/report.html SITES LINKS [SCREENSHOT.png]
import { chromium } from 'playwright-core';
import path from 'node:path';

const [file, sites, links, shot] = process.argv.slice(2);
if (!file || !sites || !links) {
  console.error('usage: node test-report.mjs REPORT.html SITES LINKS [SCREENSHOT.png]');
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const failures = [];
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1800 } });
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') failures.push(`console ${m.type()}: ${m.text()}`); });
  page.on('pageerror', (e) => failures.push(`page error: ${e}`));
  page.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith('file:') && !u.startsWith('data:') && !u.startsWith('blob:')) failures.push(`network request: ${u}`);
  });
  await page.goto('file://' + path.resolve(file));
  await page.waitForFunction(() => window.__rendered + window.__failed.length >= 8, null, { timeout: 60000 });
  const r = await page.evaluate(() => ({
    failed: window.__failed,
    countries: document.querySelectorAll('#map .layer_0_marks path').length,
    sites: document.querySelectorAll('#map .layer_2_marks path').length,
    links: document.querySelectorAll('#map .layer_1_marks path').length,
    arrivals: document.querySelectorAll('#arrivals .mark-area.role-mark path').length,
    ttft: document.querySelectorAll('#ttft .mark-line.role-mark path').length,
    traffic: document.querySelectorAll('#traffic .mark-line.role-mark path').length,
    power: document.querySelectorAll('#power .mark-line.role-mark path').length,
    heat: document.querySelectorAll('#links .mark-rect.role-mark path').length,
    replicas: document.querySelectorAll('#replicas .mark-line.role-mark path').length,
    budget: document.querySelectorAll('#budget .mark-line.role-mark path').length,
    classes: document.querySelectorAll('#classes tr').length,
    kpis: document.querySelectorAll('#kpis .kpi').length,
  }));
  console.log(JSON.stringify(r));
  for (const f of r.failed) failures.push(`chart failed: ${f}`);
  if (r.countries < 150) failures.push(`map: ${r.countries} country shapes, expected the world (177)`);
  if (r.sites !== Number(sites)) failures.push(`map: ${r.sites} site marks, expected ${sites}`);
  if (r.links !== Number(links)) failures.push(`map: ${r.links} link marks, expected ${links}`);
  for (const k of ['arrivals', 'ttft', 'traffic', 'power', 'heat', 'replicas', 'budget']) if (r[k] < 1) failures.push(`chart ${k}: no marks`);
  if (r.classes < 2) failures.push('class table empty');
  if (r.kpis < 4) failures.push('KPIs missing');
  if (shot) await page.screenshot({ path: shot, fullPage: true });
} finally {
  await browser.close();
}
if (failures.length) {
  for (const f of failures) console.error('FAIL ' + f);
  process.exit(1);
}
console.log('report renders: map and charts, no console errors, no network');
