// Starting the processes the fabric tests drive (engines, gateways): resolves once the process
// prints "listening on HOST:PORT" with {proc, port, stderr(), stdout()}; rejects with its stderr if
// it exits first, or after 10 s without a port. Every process started is pushed to `procs`.
import { spawn } from 'node:child_process';

export function startListening(procs, cmd, args) {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    procs.push(p);
    let out = '', err = '';
    const h = { proc: p, port: 0, stderr: () => err, stdout: () => out };
    const timer = setTimeout(() => reject(new Error(`no port from ${cmd} ${args.join(' ')}: ${out} ${err}`)), 10000);
    p.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on [\d.]+:(\d+)/);
      if (m && !h.port) { clearTimeout(timer); h.port = Number(m[1]); resolve(h); }
    });
    p.stderr.on('data', (d) => { err += d; });
    p.on('exit', (code) => { clearTimeout(timer); if (!h.port) reject(new Error(`exited ${code}: ${err}`)); });
  });
}

// Polls `pred` every 50 ms until it holds; fails with `what` after `ms`. Resolves to the wait in ms.
export async function until(what, pred, ms) {
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    if (await pred()) return Date.now() - t0;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what}: not within ${ms} ms`);
}
