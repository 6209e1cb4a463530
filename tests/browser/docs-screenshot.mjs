// Makes docs/dashboard.png, the README's picture of the overview: a private Redis and
// jobs-runner, the demo data, a few minutes of varied traffic (some of it failing) with the
// overview open, then a screenshot. Not a test; run it by hand when the page changes:
//
//   cargo build -p jobs-tasks --bin jobs-runner && (cd tests/browser && npm ci && npm run docs-screenshot)
//
// DOCS_MINUTES (default 8) sets how long the traffic runs.

import path from 'node:path';
import {
  client, closeBrowser, launchBrowser, repoRoot, runOnce, sleep, startRedis, startRunner, stop, stopRedis, waitFor,
} from './harness.mjs';

const minutes = Number(process.env.DOCS_MINUTES || 8);
const NS = 'docs';
const redis = await startRedis();
let runner, browser;
try {
  await runOnce(['seed-demo', '--users', '20'], { REDIS_URL: redis.url, JOBS_NAMESPACE: NS });
  runner = await startRunner(redis, { namespace: NS, name: 'docs-runner' });
  const api = client(runner);
  browser = await launchBrowser();
  const page = await browser.context.newPage();
  await page.setViewportSize({ width: 1280, height: 1000 });
  await page.goto(`${runner.base}/#/overview`);

  // Jobs due later, of each priority, and a few that fail for good.
  for (const [priority, n] of [['critical', 1], ['high', 3], ['normal', 6], ['low', 4]]) {
    for (let i = 0; i < n; i++) {
      await api('POST', 'enqueue', { name: 'sync_portfolio', args: { user_id: `user-${String(i + 1).padStart(3, '0')}` }, priority, delay_seconds: 3600 + i });
    }
  }
  const end = Date.now() + minutes * 60_000;
  let tick = 0;
  while (Date.now() < end) {
    // A load that rises and falls, with a failure now and then.
    const n = Math.round(6 + 5 * Math.sin(tick / 12) + 3 * Math.random());
    for (let i = 0; i < n; i++) {
      const user = `user-${String(1 + ((tick * 7 + i) % 20)).padStart(3, '0')}`;
      const job = Math.random() < 0.06
        ? { name: 'sync_portfolio', args: { user_id: `gone-${tick}-${i}` } }
        : i % 3 === 0 ? { name: 'check_price_alerts', args: {} } : { name: 'sync_portfolio', args: { user_id: user } };
      await api('POST', 'enqueue', job);
    }
    tick++;
    await sleep(2000);
  }
  await page.reload();
  await waitFor('the chart', () => page.locator('#chart svg').count());
  await sleep(4000);
  const out = path.join(repoRoot, 'docs', 'dashboard.png');
  await page.screenshot({ path: out, fullPage: false });
  console.log(`wrote ${out}`);
} finally {
  await closeBrowser(browser);
  await stop(runner && runner.proc);
  await stopRedis(redis);
}
