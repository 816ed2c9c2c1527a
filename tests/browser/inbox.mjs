// The wijkteam inbox in a real headless Chromium (Debian's `chromium`),
// driven by Playwright (playwright-core: no browser download), with
// axe-core injected into every page under test.
//
// Started by the integration test `inbox::the_inbox_works_in_a_real_browser`
// against a running `vroeg run`; it can also be run by hand:
//
//   VROEG_URL=http://127.0.0.1:8080 VROEG_TEAM_TOKEN=... VROEG_ADMIN_TOKEN=... \
//   VROEG_OTHER_CASE=<a case id of another team> VROEG_OUT=target/inbox \
//   VROEG_MONITOR_VAN=2026-10 VROEG_MONITOR_TOT=2026-11 node tests/browser/inbox.mjs
//
// Every step prints one line; the first failure stops the run with exit 1.

import { chromium } from 'playwright-core';
import { createRequire } from 'node:module';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
const AXE = require.resolve('axe-core/axe.min.js');

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const BASE = env('VROEG_URL');
const TEAM = env('VROEG_TEAM_TOKEN');
const ADMIN = env('VROEG_ADMIN_TOKEN');
const OTHER = env('VROEG_OTHER_CASE');
const OUT = env('VROEG_OUT');
const VAN = env('VROEG_MONITOR_VAN');
const TOT = env('VROEG_MONITOR_TOT');
const CHROMIUM = process.env.VROEG_CHROMIUM || '/usr/bin/chromium';
mkdirSync(OUT, { recursive: true });

const step = (text) => console.log(`inbox: ${text}`);
const fail = (text) => { throw new Error(text); };
const today = () => new Intl.DateTimeFormat('sv-SE', { timeZone: 'Europe/Amsterdam' }).format(new Date());

/** axe-core on the page: every serious or critical violation fails. */
async function accessible(page, name) {
  await page.addScriptTag({ path: AXE });
  const result = await page.evaluate(async () =>
    // eslint-disable-next-line no-undef
    axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } }));
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  if (bad.length) {
    fail(`${name}: ${bad.length} serious or critical axe violation(s):\n` +
      bad.map((v) => `  ${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`).join('\n'));
  }
  step(`${name}: axe-core ${result.testEngine.version}, 0 serious or critical violations (${result.passes.length} rules passed)`);
}

/** Reload until `check` holds (the read model applies feedback shortly). */
async function eventually(page, what, check) {
  for (let i = 0; i < 60; i++) {
    if (await check()) return;
    await page.waitForTimeout(500);
    await page.reload();
  }
  fail(`${what}: not seen within 30 s`);
}

async function signIn(page, token, { keyboard = false } = {}) {
  await page.goto(`${BASE}/inbox`);
  if (!page.url().endsWith('/inbox/aanmelden')) fail(`not sent to sign in: ${page.url()}`);
  if (keyboard) {
    // Keyboard only: tab to the token field, type, press Enter.
    for (let i = 0; i < 10; i++) {
      await page.keyboard.press('Tab');
      if (await page.evaluate(() => document.activeElement && document.activeElement.id === 'token')) break;
    }
    if (!(await page.evaluate(() => document.activeElement && document.activeElement.id === 'token'))) {
      fail('the token field is not reachable with Tab');
    }
    await page.keyboard.type(token);
    await Promise.all([page.waitForURL(`${BASE}/inbox`), page.keyboard.press('Enter')]);
  } else {
    await page.getByLabel('Token', { exact: true }).fill(token);
    await Promise.all([page.waitForURL(`${BASE}/inbox`), page.getByRole('button', { name: 'Aanmelden' }).click()]);
  }
}

/** Open the first (most urgent) open case of the list. */
async function openMostUrgent(page) {
  await page.goto(`${BASE}/inbox`);
  const first = page.locator('table.zaken tbody tr').first().locator('a').first();
  const name = await first.textContent();
  await Promise.all([page.waitForURL(/\/inbox\/zaken\//), first.click()]);
  return { name, url: page.url() };
}

async function recordAttempt(page, date) {
  const form = page.locator('#form-contactpoging');
  await form.getByLabel('Soort contact', { exact: true }).selectOption('Telefoon');
  await form.getByLabel('Ja', { exact: true }).check();
  await form.getByLabel('Datum', { exact: true }).fill(date);
  await form.getByRole('button', { name: 'Contactpoging vastleggen' }).click();
  await page.waitForLoadState('domcontentloaded');
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  // ---- A coordinator, with JavaScript ----
  const ctx = await browser.newContext({ bypassCSP: true, viewport: { width: 1280, height: 900 }, locale: 'nl-NL' });
  const page = await ctx.newPage();
  await page.goto(`${BASE}/inbox/aanmelden`);
  await accessible(page, 'sign-in page');
  await signIn(page, TEAM);
  const open = Number(await page.locator('#totaal-open').textContent());
  const overdue = Number(await page.locator('#totaal-te-laat').textContent());
  const crisis = Number(await page.locator('#totaal-crisis').textContent());
  if (!(open > 0 && overdue > 0)) fail(`the counts show ${open} open and ${overdue} overdue cases`);
  // Overdue rows say so in words, not by colour alone.
  const marked = await page.locator('table.zaken tbody tr.te-laat').count();
  const labelled = await page.locator('table.zaken tbody tr.te-laat .label.te-laat').count();
  if (marked === 0 || marked !== labelled) fail(`${marked} overdue rows, ${labelled} labelled "te laat"`);
  step(`signed in; counts: ${open} open, ${overdue} overdue, ${crisis} crisis`);
  await accessible(page, 'work queue');
  await page.screenshot({ path: join(OUT, 'werkbakken.png'), fullPage: true });

  const urgent = await openMostUrgent(page);
  const explanation = (await page.locator('#uitleg').textContent()).trim();
  if (explanation.length < 20) fail(`no explanation on the case page: ${explanation}`);
  step(`opened the most urgent case (${urgent.name.trim().length} characters of name); explanation: ${explanation}`);
  await accessible(page, 'case page');

  // A wrong value: a contact attempt in the future, shown at its field.
  await recordAttempt(page, '2099-01-01');
  const error = page.locator('#cp-datum-fout');
  if (!(await error.isVisible())) fail('no error at the date field for a date in 2099');
  if ((await page.locator('#cp-datum').getAttribute('aria-invalid')) !== 'true') fail('the date field is not marked invalid');
  step(`a wrong date is refused at its field: ${(await error.textContent()).trim()}`);
  await accessible(page, 'case page with a form error');

  await recordAttempt(page, today());
  if (!(await page.getByText('De contactpoging is verstuurd.').isVisible())) fail('no confirmation after the attempt');
  await eventually(page, 'the contact attempt', async () => (await page.locator('#pogingen tbody tr').count()) === 1);
  step('recorded a contact attempt; the case shows it');

  const note = 'Gebeld; komt dinsdag langs met de brieven.';
  await page.locator('#form-notitie').getByLabel(/Notitie voor het team/).fill(note);
  await page.getByRole('button', { name: 'Notitie toevoegen' }).click();
  await eventually(page, 'the note', async () => (await page.locator('#notities').count()) === 1
    && (await page.locator('#notities').textContent()).includes(note));
  await page.locator('#form-toewijzing').getByLabel(/Collega/).fill('A. de Vries');
  await page.getByRole('button', { name: 'Toewijzing opslaan' }).click();
  await eventually(page, 'the assignment', async () => (await page.locator('#zaak-medewerker').textContent()).includes('A. de Vries'));
  step('added a note and assigned the case');
  await page.screenshot({ path: join(OUT, 'zaak.png'), fullPage: true });

  await page.locator('#form-resultaat').getByLabel('Resultaat', { exact: true }).selectOption('(Budget)advies en/of quick fix');
  await page.locator('#form-resultaat').getByLabel('Datum', { exact: true }).fill(today());
  await page.getByRole('button', { name: 'Resultaat vastleggen' }).click();
  await eventually(page, 'the closed case', async () => (await page.locator('#zaak-status').textContent()).trim().startsWith('gesloten'));
  if (await page.locator('#form-contactpoging').count()) fail('a closed case still offers a contact attempt');
  if (!(await page.locator('#form-correctie').count())) fail('a case closed with an outcome offers no correction');
  step('recorded the outcome; the case closed');

  // The outcome was wrong: a correction reopens the case, then the right one.
  await page.locator('#form-correctie').getByLabel(/Waarom klopte/).fill('Verkeerd resultaat gekozen.');
  await page.getByRole('button', { name: 'Correctie vastleggen' }).click();
  await eventually(page, 'the reopened case', async () => (await page.locator('#zaak-status').textContent()).trim().startsWith('open'));
  await page.locator('#form-resultaat').getByLabel('Resultaat', { exact: true }).selectOption('Vervolghulp en/of verwijzing financieel');
  await page.locator('#form-resultaat').getByLabel('Datum', { exact: true }).fill(today());
  await page.getByRole('button', { name: 'Resultaat vastleggen' }).click();
  await eventually(page, 'the corrected outcome', async () => (await page.locator('#zaak-resultaat').count()) === 1
    && (await page.locator('#zaak-resultaat').textContent()).includes('Vervolghulp en/of verwijzing financieel'));
  step('corrected the outcome: the case reopened and closed with the right one');

  const other = await page.goto(`${BASE}/inbox/zaken/${OTHER}`);
  if (other.status() !== 404) fail(`another team's case answered ${other.status()}`);
  if (!(await page.getByRole('heading', { name: 'Zaak niet gevonden' }).isVisible())) fail('no "not found" page');
  step("another team's case: 404");

  await page.goto(`${BASE}/inbox/zoeken`);
  await page.getByLabel(/Achternaam/).fill('zwart');
  await page.getByRole('button', { name: 'Zoek op naam' }).click();
  if (!(await page.locator('table.zaken tbody tr').count())) fail('search by surname found nothing');
  await accessible(page, 'search');
  step(`search by surname found ${await page.locator('table.zaken tbody tr').count()} case(s)`);

  await page.getByRole('button', { name: 'Afmelden' }).click();
  await page.waitForURL(`${BASE}/inbox/aanmelden`);
  await page.goto(`${BASE}/inbox/zaken/${urgent.url.split('/').pop()}`);
  if (!page.url().endsWith('/inbox/aanmelden')) fail(`after signing out, a case page answered at ${page.url()}`);
  step('signed out; the pages redirect to sign-in');
  await ctx.close();

  // ---- The main path without JavaScript, by keyboard ----
  const plain = await browser.newContext({ javaScriptEnabled: false, viewport: { width: 1280, height: 900 } });
  const p2 = await plain.newPage();
  await signIn(p2, TEAM, { keyboard: true });
  const second = await openMostUrgent(p2);
  if (second.url === urgent.url) fail('the closed case is still listed first');
  await recordAttempt(p2, today());
  await eventually(p2, 'the attempt without JavaScript', async () => (await p2.locator('#pogingen tbody tr').count()) === 1);
  await p2.locator('#form-resultaat').getByLabel('Resultaat', { exact: true }).selectOption('Inwoner hoeft geen hulp vanuit vroegsignalering');
  await p2.locator('#form-resultaat').getByLabel('Datum', { exact: true }).fill(today());
  await p2.getByRole('button', { name: 'Resultaat vastleggen' }).click();
  await eventually(p2, 'the closed case without JavaScript', async () => (await p2.locator('#zaak-status').textContent()).trim().startsWith('gesloten'));
  await p2.getByRole('button', { name: 'Afmelden' }).click();
  await p2.waitForURL(`${BASE}/inbox/aanmelden`);
  step('without JavaScript: signed in by keyboard, recorded an attempt and an outcome, signed out');
  await plain.close();

  // ---- The monitor, for the admin role ----
  const adm = await browser.newContext({ bypassCSP: true, viewport: { width: 1280, height: 900 } });
  const p3 = await adm.newPage();
  await signIn(p3, ADMIN);
  await p3.goto(`${BASE}/inbox/monitor?van=${VAN}&tot=${TOT}`);
  const charts = await p3.locator('svg.grafiek').count();
  if (charts !== 6) fail(`the monitor shows ${charts} charts, not 6`);
  await accessible(p3, 'monitor');
  await p3.screenshot({ path: join(OUT, 'monitor.png'), fullPage: true });
  const csv = await p3.request.get(`${BASE}/inbox/monitor.csv?van=${VAN}&tot=${TOT}`);
  if (csv.status() !== 200) fail(`the monitor's CSV answered ${csv.status()}`);
  writeFileSync(join(OUT, 'monitor.csv'), await csv.text());
  step(`monitor: ${charts} charts; its CSV saved`);
  await adm.close();
  step('ok');
} finally {
  await browser.close();
}
