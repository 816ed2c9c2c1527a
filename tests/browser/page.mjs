// Open a local HTML file in headless Chromium (Debian's `chromium`, driven
// by playwright-core) and save a screenshot of the whole page; print what
// the page holds: its title, its number of charts and tables.
//
//   node tests/browser/page.mjs report.html shot.png
import { chromium } from 'playwright-core';
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';

const [file, shot] = process.argv.slice(2);
if (!file || !shot) {
  console.error('usage: node page.mjs FILE.html SHOT.png');
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: process.env.VROEG_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  // Offline: no request may leave the page.
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 }, offline: true });
  const page = await context.newPage();
  const external = [];
  page.on('request', (r) => { if (!r.url().startsWith('file:')) external.push(r.url()); });
  await page.goto(pathToFileURL(resolve(file)).href);
  await page.screenshot({ path: shot, fullPage: true });
  const summary = {
    title: await page.title(),
    charts: await page.locator('svg').count(),
    tables: await page.locator('table').count(),
    external,
  };
  console.log(JSON.stringify(summary));
} finally {
  await browser.close();
}
