// The dashboard in a real browser (Debian's headless Chromium through playwright-core),
// against a jobs-runner on a private Redis: every page, clicked through as an operator would.
// Screenshots of each page go to tests/artifacts/.
//
//   cargo build -p jobs-tasks --bin jobs-runner && (cd tests/browser && npm ci && npm test)

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  client, closeBrowser, launchBrowser, runOnce, screenshot, startRedis, startRunner, stop, stopRedis, waitFor,
} from './harness.mjs';

const NS = 'dash';
let redis, runner, api, browser, page;
const pageErrors = [];

/** Jobs the tests enqueued, by role. */
const jobs = { delayed: [], dead: [], fixable: null };

async function open(route) {
  await page.goto(`${runner.base}/#/${route}`);
  await page.locator('#health.good').waitFor();
}

async function cardValue(key) {
  return page.locator(`[data-stat="${key}"] .card-value`).innerText();
}

before(async () => {
  redis = await startRedis();
  // The default queue and one more (`probe`), so that a paused default queue can be seen
  // passed by: a probe job enqueued after a paused one runs, and the paused one waits.
  runner = await startRunner(redis, { namespace: NS, extraArgs: ['--queues', 'default,probe'] });
  api = client(runner);
  browser = await launchBrowser();
  page = await browser.context.newPage();
  page.on('pageerror', (e) => pageErrors.push(`${e.message}\n${e.stack}`));
  page.setDefaultTimeout(15_000);

  // Three jobs due in an hour: they stay "scheduled" for the whole run.
  for (const priority of ['high', 'normal', 'low']) {
    const r = await api('POST', 'enqueue', { name: 'cleanup_data', args: {}, priority, delay_seconds: 3600 });
    jobs.delayed.push(r.job_id);
  }
  // Two that fail for good: the trading store has no such users (yet). `user-001` becomes
  // fixable once the test seeds the demo data.
  jobs.fixable = (await api('POST', 'enqueue', { name: 'sync_portfolio', args: { user_id: 'user-001' } })).job_id;
  jobs.dead.push(jobs.fixable);
  jobs.dead.push((await api('POST', 'enqueue', { name: 'sync_portfolio', args: { user_id: 'nobody' } })).job_id);
  await waitFor('two dead letters', async () => (await api('GET', 'queue/stats')).dead_letter === 2);
});

after(async () => {
  await closeBrowser(browser);
  await stop(runner && runner.proc);
  await stopRedis(redis);
});

describe('dashboard', () => {
  it('serves the page and its assets from the binary', async () => {
    const res = await fetch(`${runner.base}/`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /^text\/html/);
    assert.match(res.headers.get('content-security-policy'), /default-src 'none'/);
    for (const [asset, type] of [['app.js', /javascript/], ['app.css', /text\/css/], ['favicon.svg', /image\/svg\+xml/]]) {
      const r = await fetch(`${runner.base}/dashboard/${asset}`);
      assert.equal(r.status, 200, asset);
      assert.match(r.headers.get('content-type'), type, asset);
      const again = await fetch(`${runner.base}/dashboard/${asset}`, { headers: { 'If-None-Match': r.headers.get('etag') } });
      assert.equal(again.status, 304, asset);
    }
  });

  it('overview shows the counts the test enqueued, the workers and the chart', async () => {
    const requests = [];
    page.on('request', (r) => requests.push(r.url()));
    await open('overview');
    await waitFor('scheduled = 3', async () => (await cardValue('scheduled')) === '3');
    await waitFor('dead letters = 2', async () => (await cardValue('dead_letter')) === '2');
    assert.equal(await page.locator('#nav-dlq').innerText(), '2');
    for (const p of ['critical', 'high', 'normal', 'low']) {
      assert.match(await cardValue(`pending-${p}`), /^\d+$/);
    }
    // The failed attempts and the jobs enqueued are counted.
    assert.ok(Number(await cardValue('enqueued')) >= 5);
    assert.ok(Number(await cardValue('failed')) >= 2);
    // The live worker of the runner, with its stats.
    const workers = page.locator('#workers tbody tr');
    await waitFor('a worker row', async () => (await workers.count()) >= 1);
    assert.match(await workers.first().innerText(), /idle|processing/);
    // The throughput chart: an SVG with one bucket per minute of the last hour.
    const chart = page.locator('#chart svg[role="img"]');
    await chart.waitFor();
    assert.equal(await chart.locator('g.bucket').count(), 60);
    assert.match(await chart.getAttribute('aria-label'), /last hour/);
    // Everything the page loaded came from the runner itself.
    const foreign = requests.filter((u) => !u.startsWith(runner.base) && !u.startsWith('data:'));
    assert.deepEqual(foreign, []);
    await screenshot(page, 'overview');
  });

  it('jobs page lists pending jobs, looks a job up by id, shows it and cancels it', async () => {
    await open('jobs');
    await page.locator('#pending').waitFor();
    await screenshot(page, 'jobs');
    const id = jobs.delayed[0];
    await page.getByLabel('Look up a job by id').fill(id);
    await page.getByRole('button', { name: 'Look up' }).click();
    await page.waitForURL(`**/#/jobs/${id}`);
    await page.locator('#job-detail dl').waitFor();
    assert.equal(await page.locator('[data-field="name"]').innerText(), 'cleanup_data');
    assert.equal(await page.locator('[data-field="status"]').innerText(), 'pending');
    assert.equal(await page.locator('[data-field="priority"]').innerText(), 'high');
    assert.match(await page.locator('[data-field="scheduled"]').innerText(), /UTC \(in (59|60) min\)/);
    assert.equal(await page.locator('#job-args').innerText(), '{}');
    await screenshot(page, 'job');

    // Cancel asks first; dismissing it does nothing.
    await page.getByRole('button', { name: 'Cancel job' }).click();
    await page.locator('#confirm-dialog[open]').waitFor();
    await page.locator('#confirm-no').click();
    assert.equal((await api('GET', `job/${id}`)).status, 'pending');
    await page.getByRole('button', { name: 'Cancel job' }).click();
    await page.locator('#confirm-yes').click();
    await waitFor('the cancelled status on the page', async () => (await page.locator('[data-field="status"]').innerText()) === 'cancelled');
    assert.equal((await api('GET', `job/${id}`)).status, 'cancelled');
    assert.equal(await page.getByRole('button', { name: 'Cancel job' }).count(), 0);

    // A bad id is answered on the page, not with a broken one.
    await open('jobs');
    await page.getByLabel('Look up a job by id').fill('not-a-job');
    await page.getByRole('button', { name: 'Look up' }).click();
    assert.match(await page.locator('#lookup-error').innerText(), /UUID/);
    await open('jobs/01a2237e-0000-7000-8000-000000000000');
    assert.match(await page.locator('#job-detail .error').innerText(), /404/);
  });

  it('dead letters: retry one by clicking and see it leave the queue', async () => {
    // Fix what made `user-001` fail: seed the demo users into the trading store.
    await runOnce(['seed-demo', '--users', '2'], { REDIS_URL: redis.url, JOBS_NAMESPACE: NS });
    await open('dlq');
    const rows = page.locator('#dlq tbody tr');
    await waitFor('two rows', async () => (await rows.count()) === 2);
    // The two were enqueued back to back (their ids' leading, timestamp digits mostly
    // agree): each row shows its id's random tail, and links and titles the full id.
    const links = page.locator('#dlq tbody tr a.mono');
    const shown = await links.allInnerTexts();
    assert.deepEqual(shown.map((t) => t.trim()).sort(), jobs.dead.map((id) => id.slice(-8)).sort());
    assert.notEqual(shown[0], shown[1]);
    assert.deepEqual((await links.evaluateAll((as) => as.map((a) => a.title))).sort(), [...jobs.dead].sort());
    const row = page.locator(`#dlq tr[data-job="${jobs.fixable}"]`);
    assert.match(await row.innerText(), /unknown user `user-001`/);
    assert.match(await row.innerText(), /0 \/ 5/);
    await screenshot(page, 'dlq');
    await row.getByRole('button', { name: /^Retry job/ }).click();
    await row.waitFor({ state: 'detached' });
    assert.equal(await rows.count(), 1);
    await waitFor('the retried job to complete', async () => (await api('GET', `job/${jobs.fixable}`)).status === 'completed');
    const dlq = await api('GET', 'dlq');
    assert.deepEqual(dlq.jobs.map((j) => j.id), [jobs.dead[1]]);
    // It stays gone on the next refreshes.
    await page.waitForTimeout(3500);
    assert.equal(await page.locator(`#dlq tr[data-job="${jobs.fixable}"]`).count(), 0);
  });

  it('jobs page: a tab per state with its count, each listing its jobs; retry a dead one now', async () => {
    const rows = page.locator('#state-jobs tbody tr');
    const count = async (state) => (await page.locator(`[data-state-count="${state}"]`).innerText()).trim();
    // Two delayed jobs are left (the jobs test cancelled the first), latest due first.
    await open('jobs?state=scheduled');
    await waitFor('two scheduled rows', async () => (await rows.count()) === 2);
    assert.equal(await count('scheduled'), '2');
    assert.equal(await count('failed'), '1');
    assert.equal(await count('completed'), '', 'completed jobs are not counted');
    assert.equal(await page.locator('#state-tabs a[aria-current="page"]').getAttribute('data-state'), 'scheduled');
    await screenshot(page, 'jobs-scheduled');
    // Through the tabs: the cancelled one, and the retried one completed with its args kept.
    await page.locator('#state-tabs a[data-state="cancelled"]').click();
    await page.locator(`#state-jobs tr[data-job="${jobs.delayed[0]}"]`).waitFor();
    await page.locator('#state-tabs a[data-state="completed"]').click();
    const done = page.locator(`#state-jobs tr[data-job="${jobs.fixable}"]`);
    await done.waitFor();
    assert.match(await done.innerText(), /"user_id":"user-001"/);
    // Filtered by handler: none of another handler.
    await page.getByLabel('Handler').fill('cleanup_data');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.waitForURL('**/#/jobs?state=completed&name=cleanup_data');
    await waitFor('the empty listing', async () => /No matching jobs/.test(await page.locator('#state-jobs').innerText()));
    // The dead one, retried now from its tab: it runs again (and, user `nobody` being
    // unknown still, dies again).
    await open('jobs?state=failed');
    const dead = page.locator(`#state-jobs tr[data-job="${jobs.dead[1]}"]`);
    await dead.waitFor();
    const before = (await api('GET', `job/${jobs.dead[1]}`)).attempt;
    await dead.getByRole('button', { name: /^Retry job .* now$/ }).click();
    await page.locator('#flash:not([hidden])').waitFor();
    await waitFor('another attempt, dead again', async () => {
      const j = await api('GET', `job/${jobs.dead[1]}`);
      return j.attempt > before && j.status === 'failed';
    });
  });

  it('schedules: in words; disable by clicking and see it through the API; run now', async (t) => {
    try {
      await api('GET', 'scheduled');
    } catch (e) {
      if (e.status === 501) {
        t.skip('this build of the API has no schedule endpoints yet');
        return;
      }
      throw e;
    }
    await open('schedules');
    const row = (name) => page.locator(`#schedules tr[data-schedule="${name}"]`);
    await row('portfolio_sync').waitFor();
    assert.equal(await row('portfolio_sync').locator('.words').innerText(), 'every 5 minutes');
    assert.equal(await row('daily_summary').locator('.words').innerText(), 'daily at 08:00 UTC');
    assert.equal(await row('database_vacuum').locator('.words').innerText(), 'Sundays at 04:00 UTC');
    assert.equal(await row('risk_monitoring').locator('.words').innerText(), 'every minute');
    await screenshot(page, 'schedules');

    await row('portfolio_sync').getByRole('button', { name: 'Disable' }).click();
    await row('portfolio_sync').locator('[data-enabled="false"]').waitFor();
    const listed = (await api('GET', 'scheduled')).tasks.find((x) => x.name === 'portfolio_sync');
    assert.equal(listed.enabled, false);
    assert.equal(listed.next_run, null);

    await row('portfolio_sync').getByRole('button', { name: 'Enable' }).click();
    await row('portfolio_sync').locator('[data-enabled="true"]').waitFor();
    assert.equal((await api('GET', 'scheduled')).tasks.find((x) => x.name === 'portfolio_sync').enabled, true);

    const before = (await api('GET', 'scheduled')).tasks.find((x) => x.name === 'daily_summary').run_count;
    await row('daily_summary').getByRole('button', { name: 'Run now' }).click();
    await page.locator('#flash a').waitFor();
    const jobId = (await page.locator('#flash a').innerText()).trim();
    assert.equal((await api('GET', `job/${jobId}`)).name, 'send_daily_summary_emails');
    const afterRun = (await api('GET', 'scheduled')).tasks.find((x) => x.name === 'daily_summary').run_count;
    assert.equal(afterRun, before + 1);
  });

  it('enqueue from the form, with validation errors next to the field', async () => {
    await open('enqueue');
    await page.getByLabel('Handler').selectOption('sync_portfolio');
    // sync_portfolio's arguments have a schema, so the form comes first; this test types JSON.
    await page.getByRole('button', { name: 'Edit as JSON' }).click();
    const args = page.getByLabel('Arguments (JSON)');

    // Not JSON: refused in the browser, next to the editor.
    await args.fill('{"user_id": ');
    await page.getByRole('button', { name: 'Enqueue', exact: true }).click();
    assert.match(await page.locator('#f-args-error').innerText(), /not valid JSON/);
    assert.equal(await args.getAttribute('aria-invalid'), 'true');

    // JSON that does not fit the handler's type: the API's 422, next to the editor.
    await args.fill('{"user": "user-002"}');
    await page.getByRole('button', { name: 'Enqueue', exact: true }).click();
    await page.locator('#f-args-error:not([hidden])').waitFor();
    assert.match(await page.locator('#f-args-error').innerText(), /user_id/);
    await screenshot(page, 'enqueue-error');

    // A delay the API refuses (400 naming `delay_seconds`): next to the delay.
    await args.fill('{"user_id": "user-002"}');
    await page.getByLabel('Delay (seconds)').fill('99999999999');
    await page.getByRole('button', { name: 'Enqueue', exact: true }).click();
    await page.locator('#f-delay-error:not([hidden])').waitFor();
    assert.match(await page.locator('#f-delay-error').innerText(), /delay_seconds/);
    assert.equal(await page.locator('#f-args-error').isHidden(), true);

    // Right: enqueued, with the priority and delay chosen.
    await page.getByLabel('Delay (seconds)').fill('600');
    await page.getByLabel('Priority').selectOption('critical');
    await page.getByRole('button', { name: 'Enqueue', exact: true }).click();
    const link = page.locator('#enqueue-result a');
    await link.waitFor();
    const id = (await link.innerText()).trim();
    const job = await api('GET', `job/${id}`);
    assert.equal(job.name, 'sync_portfolio');
    assert.equal(job.priority, 'critical');
    assert.deepEqual(job.args, { user_id: 'user-002' });
    assert.ok(new Date(job.scheduled_at) - new Date(job.created_at) >= 599_000);
    await screenshot(page, 'enqueue');

    // A handler without arguments needs no editor.
    await page.getByLabel('Handler').selectOption('bot_health_check');
    assert.match(await page.locator('#no-args').innerText(), /takes no arguments/);
    await page.getByRole('button', { name: 'Enqueue', exact: true }).click();
    await page.locator('#enqueue-result a').waitFor();
  });

  it('enqueue builds a form from the handler\'s argument schema, errors next to the field', async () => {
    // The argument types of jobs-tasks derive JsonSchema: the API lists each schema
    // (GET /handlers) and the dashboard builds the form from it.
    const listed = (await api('GET', 'handlers')).handlers.find((x) => x.name === 'sync_portfolio');
    assert.deepEqual(listed.args_schema.required, ['user_id']);
    await page.goto('about:blank');
    await open('enqueue/sync_portfolio');
    const userId = page.getByLabel(/^user_id/);
    await userId.waitFor();
    assert.equal(await page.getByLabel('Handler').inputValue(), 'sync_portfolio');
    // Delayed, so that the jobs are still pending (with their arguments) when read back.
    await page.getByLabel('Delay (seconds)').fill('600');
    // The field's help is the doc comment of `SyncPortfolio::user_id`.
    assert.equal(await page.getByText('Whose portfolio.').count(), 1);
    // Left empty, the API says the field is missing: shown under that field.
    await page.getByRole('button', { name: 'Enqueue', exact: true }).click();
    await page.locator('#arg-user_id-error:not([hidden])').waitFor();
    assert.match(await page.locator('#arg-user_id-error').innerText(), /missing field `user_id`/);
    assert.equal(await userId.getAttribute('aria-invalid'), 'true');
    await userId.fill('user-002');
    // The JSON editor shows what the form holds, and back.
    await page.getByRole('button', { name: 'Edit as JSON' }).click();
    assert.deepEqual(JSON.parse(await page.getByLabel('Arguments (JSON)').inputValue()), { user_id: 'user-002' });
    await page.getByRole('button', { name: 'Use the form' }).click();
    assert.equal(await page.getByLabel(/^user_id/).inputValue(), 'user-002');
    await screenshot(page, 'enqueue-form');
    await page.getByRole('button', { name: 'Enqueue', exact: true }).click();
    const link = page.locator('#enqueue-result a');
    await link.waitFor();
    const job = await api('GET', `job/${(await link.innerText()).trim()}`);
    assert.equal(job.name, 'sync_portfolio');
    assert.deepEqual(job.args, { user_id: 'user-002' });

    // An optional list (`symbols: Option<Vec<String>>`): a comma-separated field.
    await page.getByLabel('Handler').selectOption('fetch_market_data');
    await page.getByLabel(/^symbols/).fill('BTC, ETH');
    await page.getByRole('button', { name: 'Enqueue', exact: true }).click();
    await page.locator('#enqueue-result a').filter({ hasNotText: job.id }).waitFor();
    const listJob = await api('GET', `job/${(await page.locator('#enqueue-result a').innerText()).trim()}`);
    assert.equal(listJob.name, 'fetch_market_data');
    assert.deepEqual(listJob.args, { symbols: ['BTC', 'ETH'] });
  });

  it('dead letters: clear all asks first', async () => {
    await open('dlq');
    await page.locator('#dlq tbody tr').first().waitFor();
    await page.getByRole('button', { name: 'Clear all…' }).click();
    await page.locator('#confirm-dialog[open]').waitFor();
    assert.match(await page.locator('#confirm-text').innerText(), /Delete all 1 dead-letter job\?/);
    await page.locator('#confirm-no').click();
    assert.equal((await api('GET', 'queue/stats')).dead_letter, 1);
    await page.getByRole('button', { name: 'Clear all…' }).click();
    await page.locator('#confirm-yes').click();
    await page.getByText('The dead-letter queue is empty.').waitFor();
    assert.equal((await api('GET', 'queue/stats')).dead_letter, 0);
    assert.equal(await page.locator('#nav-dlq').isHidden(), true);
  });

  it('reads schedules and API errors the way people write them', async () => {
    await open('overview');
    const words = await page.evaluate(() => {
      const d = window.jobsDashboard;
      return {
        every5: d.cronWords('*/5 * * * *'),
        daily: d.cronWords('0 8 * * *'),
        sunday: d.cronWords('0 4 * * 0'),
        weekdays: d.cronWords('30 9 * * 1-5', 'America/New_York'),
        twice: d.cronWords('0 8,20 * * *'),
        hourly: d.cronWords('15 * * * *'),
        monthly: d.cronWords('0 3 1 * *'),
        odd: d.cronWords('*/7 1-3 * * *'),
        interval: d.intervalWords(300),
        hour: d.intervalWords(3600),
        secs: d.intervalWords(90),
        flat: d.scheduleWords({ schedule_type: 'cron', cron_expression: '0 3 * * *' }),
        argField: d.errorField({ status: 422, code: 'invalid_args', message: 'invalid arguments for job `x`: field `symbols[0]`: invalid type' }, []),
        missing: d.errorField({ status: 422, code: 'invalid_args', message: 'invalid arguments for job `x`: missing field `user_id`' }, []),
        reqField: d.errorField({ status: 400, code: 'invalid_request', message: 'field `priority`: unknown variant `urgent`' }, ['priority']),
        handler: d.errorField({ status: 404, code: 'handler_not_found', message: 'no handler `x`' }, []),
        // Counters sampled twice in the last minute, then reset (a flushed namespace).
        sampled: (() => {
          const t0 = Date.UTC(2026, 0, 1, 12, 0, 0);
          const b = d.bucketsFromSamples([{ t: t0 + 1000, c: 5, f: 1 }, { t: t0 + 20_000, c: 15, f: 3 }, { t: t0 + 25_000, c: 1, f: 0 }], t0 + 30_000);
          return { n: b.length, last: [b[59].processed, b[59].failed], rest: b.slice(0, 59).every((x) => x.processed === 0 && !x.known) };
        })(),
        backend: d.bucketsFromBackend({ bucket_seconds: 60, buckets: [{ start: '2026-01-01T12:00:00Z', completed: 4, failed: 1 }] }),
      };
    });
    assert.deepEqual(words, {
      every5: 'every 5 minutes',
      daily: 'daily at 08:00 UTC',
      sunday: 'Sundays at 04:00 UTC',
      weekdays: 'Weekdays at 09:30 America/New_York',
      twice: 'daily at 08:00 and 20:00 UTC',
      hourly: 'every hour at :15',
      monthly: 'monthly on the 1st at 03:00 UTC',
      odd: 'cron */7 1-3 * * *',
      interval: 'every 5 minutes',
      hour: 'every hour',
      secs: 'every 90 seconds',
      flat: 'daily at 03:00 UTC',
      argField: 'args.symbols',
      missing: 'args.user_id',
      reqField: 'priority',
      handler: 'name',
      sampled: { n: 60, last: [12, 2], rest: true },
      backend: [{ start: Date.UTC(2026, 0, 1, 12, 0, 0), processed: 5, failed: 1, known: true }],
    });
  });

  it('queues: pause the default queue by clicking, its job waits; resume and it runs', async () => {
    await open('queues');
    const row = (name) => page.locator(`#queues tr[data-queue="${name}"]`);
    await row('default').locator('[data-paused="false"]').waitFor();
    await row('default').getByRole('button', { name: 'Pause queue default' }).click();
    await page.locator('#confirm-dialog[open]').waitFor();
    await page.locator('#confirm-yes').click();
    await row('default').locator('[data-paused="true"]').waitFor();
    const listed = (await api('GET', 'queues')).queues.find((q) => q.name === 'default');
    assert.equal(listed.paused, true);

    // A job enqueued now stays pending while the queue is paused, for every worker.
    const { job_id: id } = await api('POST', 'enqueue', { name: 'cleanup_data', args: {}, priority: 'high' });
    const { job_id: probe } = await api('POST', 'enqueue', { name: 'cleanup_data', args: {}, queue: 'probe' });
    await waitFor('the probe job to run', async () => (await api('GET', `job/${probe}`)).status === 'completed');
    assert.equal((await api('GET', `job/${id}`)).status, 'pending');
    await open('queues');
    await row('default').locator('td[data-total="1"]').waitFor();
    await screenshot(page, 'queues');

    await row('default').getByRole('button', { name: 'Resume queue default' }).click();
    await row('default').locator('[data-paused="false"]').waitFor();
    await waitFor('the job to run once resumed', async () => (await api('GET', `job/${id}`)).status === 'completed');
  });

  it('limits: jobs over the market-data quota wait parked, shown on the Limits page', async () => {
    // fetch_market_data allows 10 starts a second: of 30 sent at once, most wait parked.
    const ids = [];
    for (let i = 0; i < 30; i++) {
      ids.push((await api('POST', 'enqueue', { name: 'fetch_market_data', args: { symbols: ['AAPL'] } })).job_id);
    }
    await open('limits');
    const rate = page.locator('#limits tr[data-limiter^="r:10/1000:"]');
    await rate.locator('td[data-parked]:not([data-parked="0"])').waitFor();
    assert.match(await rate.innerText(), /fetch_market_data/);
    assert.match(await page.locator('#limits-parked').innerText(), /parked in all/);
    await screenshot(page, 'limits');
    const limits = await api('GET', 'limits');
    assert.equal(limits.count, limits.limiters.length);
    await waitFor('every market-data job to run', async () => {
      for (const id of ids) if ((await api('GET', `job/${id}`)).status !== 'completed') return false;
      return true;
    }, 20_000);
    assert.equal((await api('GET', 'limits')).parked, 0);
  });

  it('jobs page: bulk actions on the jobs shown, asking first', async () => {
    const rows = page.locator('#state-jobs tbody tr');
    // The delayed jobs still waiting: cancel them all from their tab.
    await open('jobs?state=scheduled&name=cleanup_data');
    await waitFor('scheduled rows', async () => (await rows.count()) > 0);
    const n = await rows.count();
    await page.locator('#bulk-actions [data-bulk="cancel"]').click();
    await page.locator('#confirm-dialog[open]').waitFor();
    await page.locator('#confirm-yes').click();
    await waitFor('the flash', async () => (await page.locator('#flash').innerText()).includes(`Cancel: ${n} of ${n} jobs.`));
    await waitFor('no scheduled rows', async () => (await rows.count()) === 0);
    for (const id of jobs.delayed) assert.equal((await api('GET', `job/${id}`)).status, 'cancelled');

    // Then delete the cancelled ones: gone for good.
    await open('jobs?state=cancelled&name=cleanup_data');
    await waitFor('cancelled rows', async () => (await rows.count()) >= jobs.delayed.length);
    await page.locator('#bulk-actions [data-bulk="delete"]').click();
    await page.locator('#confirm-dialog[open]').waitFor();
    await page.locator('#confirm-yes').click();
    await waitFor('no cancelled rows', async () => (await rows.count()) === 0);
    for (const id of jobs.delayed) {
      await assert.rejects(api('GET', `job/${id}`), (e) => e.status === 404);
    }
  });

  it('raised no script error on any page', () => {
    assert.deepEqual(pageErrors, []);
  });
});

describe('dashboard with JOBS_API_TOKEN set', () => {
  const TOKEN = 's3cret-token';
  let secured, b2;

  before(async () => {
    secured = await startRunner(redis, { name: 'runner-token', namespace: NS, token: TOKEN, extraArgs: ['--no-scheduler'] });
    b2 = await launchBrowser();
  });

  after(async () => {
    await closeBrowser(b2);
    await stop(secured && secured.proc);
  });

  it('asks for the token once and keeps it for the tab', async () => {
    const p = await b2.context.newPage();
    const errors = [];
    p.on('pageerror', (e) => errors.push(e.message));
    await p.goto(`${secured.base}/#/overview`);
    const dialog = p.locator('#token-dialog[open]');
    await dialog.waitFor();
    await screenshot(p, 'token');
    await p.getByRole('textbox', { name: 'Token' }).fill('wrong');
    await p.getByRole('button', { name: 'Sign in' }).click();
    await p.locator('#token-error:not([hidden])').waitFor();
    assert.match(await p.locator('#token-error').innerText(), /refused/);
    await p.getByRole('textbox', { name: 'Token' }).fill(TOKEN);
    await p.getByRole('button', { name: 'Sign in' }).click();
    await p.locator('#health.good').waitFor();
    await waitFor('the overview', async () => /^\d+$/.test(await p.locator('[data-stat="scheduled"] .card-value').innerText()));
    // A reload keeps the token: no second prompt.
    await p.reload();
    await p.locator('#health.good').waitFor();
    assert.equal(await p.locator('#token-dialog[open]').count(), 0);
    assert.deepEqual(errors, []);
  });
});
