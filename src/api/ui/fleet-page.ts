import { Router } from 'express';
import helmet from 'helmet';
import { adminGuard } from '../admin';
import type { ApiContext } from '../api-context';

/**
 * The live fleet page at /ui (admin key; a browser logs in with HTTP basic auth, the key as password):
 * each platform's limit, occupancy and waiting bots as bars, the global queue in order, the newest bots with
 * status and age. The page polls /ui/fleet.json every second; no build step, no CDN, script served from
 * here so the Content-Security-Policy (helmet) allows nothing else.
 */
const RECENT = 25;
const QUEUE_SHOWN = 25;

export function createFleetPage(ctx: ApiContext): Router {
  const router = Router();
  router.use('/ui', helmet(), adminGuard(ctx));
  router.get('/ui', (_req, res) => {
    res.type('html').send(PAGE);
  });
  router.get('/ui/fleet.js', (_req, res) => {
    res.type('application/javascript').send(SCRIPT);
  });
  router.get('/ui/fleet.json', (_req, res, next) => {
    Promise.all([ctx.placement.stats(), ctx.placement.queueHead(QUEUE_SHOWN), ctx.bots.recentForOperator(RECENT)])
      .then(([stats, queue, recent]) => res.json({ ...stats, queue, recent, at: new Date().toISOString() }))
      .catch(next);
  });
  return router;
}

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>meeboter fleet</title>
<style>
  body { font: 14px system-ui, sans-serif; margin: 2em; color: #222; }
  h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 2em; }
  table { border-collapse: collapse; } td, th { padding: 4px 10px; text-align: left; border-bottom: 1px solid #eee; }
  .bar { position: relative; width: 240px; height: 14px; background: #eee; }
  .bar span { position: absolute; top: 0; bottom: 0; left: 0; }
  .occupied { background: #3b7; }
  .status-ENDED { color: #3b7; } .status-FATAL { color: #d33; } code { font-size: 12px; }
</style>
</head>
<body>
<h1>meeboter fleet <small id="updated"></small></h1>
<h2>Platforms</h2>
<table id="platforms"><thead><tr><th>platform</th><th>occupied / limit</th><th></th><th>waiting</th><th>draining</th></tr></thead><tbody></tbody></table>
<h2>Global queue (<span id="queue-length">0</span>)</h2>
<ol id="queue"></ol>
<h2>Newest bots</h2>
<table id="bots"><thead><tr><th>bot</th><th>status</th><th>platform</th><th>age</th></tr></thead><tbody></tbody></table>
<script src="/ui/fleet.js"></script>
</body>
</html>`;

const SCRIPT = `'use strict';
function cell(text, className) {
  const td = document.createElement('td');
  td.textContent = text;
  if (className) td.className = className;
  return td;
}
function age(iso) {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  return s < 120 ? s + ' s' : Math.round(s / 60) + ' min';
}
function render(data) {
  const platforms = document.querySelector('#platforms tbody');
  platforms.replaceChildren(...data.platforms.map((p) => {
    const row = document.createElement('tr');
    row.dataset.platform = p.name;
    const bar = document.createElement('div');
    bar.className = 'bar';
    const occupied = document.createElement('span');
    occupied.className = 'occupied';
    occupied.style.width = Math.min(100, (100 * p.active) / Math.max(1, p.limit)) + '%';
    bar.append(occupied);
    const barCell = document.createElement('td');
    barCell.append(bar);
    row.append(cell(p.name), cell(p.active + ' / ' + p.limit), barCell, cell(String(p.queued)), cell(p.draining ? 'yes' : 'no'));
    return row;
  }));
  document.getElementById('queue-length').textContent = String(data.globalQueue.length);
  document.getElementById('queue').replaceChildren(...data.queue.map((id) => {
    const li = document.createElement('li');
    li.textContent = id;
    return li;
  }));
  document.querySelector('#bots tbody').replaceChildren(...data.recent.map((b) => {
    const row = document.createElement('tr');
    row.dataset.bot = b.id;
    const code = document.createElement('code');
    code.textContent = b.id;
    const idCell = document.createElement('td');
    idCell.append(code);
    row.append(idCell, cell(b.status + (b.endReason ? ' ' + b.endReason : ''), 'status status-' + b.status), cell(b.platform || '—'), cell(age(b.createdAt)));
    return row;
  }));
  document.getElementById('updated').textContent = 'updated ' + new Date(data.at).toLocaleTimeString();
}
async function poll() {
  try {
    const response = await fetch('/ui/fleet.json', { credentials: 'same-origin' });
    if (response.ok) render(await response.json());
  } finally {
    setTimeout(poll, 1000);
  }
}
poll();
`;
