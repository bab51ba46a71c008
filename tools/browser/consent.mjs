// A person in a real browser, for writ's end-to-end tests (tests/e2e/browser.rs): headless
// Chromium with JavaScript off opens an authorization URL, signs in, unticks one scope on
// the consent page, allows, and reads the code off the redirect to the client (an
// unreachable loopback address, answered here); then revokes that grant on /account.
// Every page is held to what it promises: html[lang], a label for every input, a name
// for every button, and a flow that needs no script.
//
//   node tools/browser/consent.mjs AUTHORIZATION_URL --email E --password P \
//       --agent 'Notes helper' --keep 'read files' --untick 'write files' \
//       [--pause] [--again AUTHORIZATION_URL_FOR_THE_KEPT_SCOPE]
//
// Prints `code=`, `state=`, `iss=` and `kept=` lines for the caller; with --pause it then
// waits for a line on standard input (the caller has redeemed the code) before it
// revokes the grant, so the caller can watch the tokens end. With --again it first signs
// out and back in through a second request for what was granted, which must reach the
// client without a consent page, and prints its `again_code=`. Screenshots go to
// $WRIT_BROWSER_ARTIFACTS (default target/browser-artifacts), one per step and one of
// the page a failure happened on. Exits 1 with a message saying which step failed.

import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const STEP_TIMEOUT_MS = 15_000;

const { values: opts, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    email: { type: 'string' },
    password: { type: 'string' },
    agent: { type: 'string' },
    keep: { type: 'string' },
    untick: { type: 'string' },
    pause: { type: 'boolean', default: false },
    again: { type: 'string' },
  },
});
const authorizationUrl = positionals[0] ?? process.env.WRIT_BROWSER_AUTHORIZATION_URL;
if (!authorizationUrl) fail('arguments', 'the authorization URL is missing (usage at the top of consent.mjs)');
for (const name of ['email', 'password', 'agent', 'keep', 'untick']) {
  if (!opts[name]) fail('arguments', `--${name} is missing (usage at the top of consent.mjs)`);
}
const artifacts = process.env.WRIT_BROWSER_ARTIFACTS ?? 'target/browser-artifacts';
const executablePath = process.env.WRIT_BROWSER_CHROMIUM ?? '/usr/bin/chromium';
const origin = new URL(authorizationUrl).origin;
// The client's redirect URI is an unreachable loopback address: the browser's requests to
// it are answered here, as the client would, and the last URL it was sent to kept.
const redirectUri = new URL(authorizationUrl).searchParams.get('redirect_uri');
let redirected = null;

let step = 'starting Chromium';

function fail(where, message) {
  console.error(`consent.mjs: ${where}: ${message}`);
  process.exit(1);
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

async function shot(page, name) {
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
}

/** What every writ page promises: a language, a label per input, a name per button. */
async function accessible(page) {
  const lang = await page.locator('html').getAttribute('lang');
  check(lang, `${page.url()}: <html> has no lang`);
  for (const input of await page.locator('input:not([type=hidden])').all()) {
    const id = await input.getAttribute('id');
    const label = id ? page.locator(`label[for="${id}"]`) : null;
    const text = label && (await label.count()) === 1 ? (await label.innerText()).trim() : '';
    check(text, `${page.url()}: an input (${await input.evaluate((e) => e.outerHTML)}) has no label`);
  }
  for (const button of await page.getByRole('button').all()) {
    const name = (await button.getAttribute('aria-label')) ?? (await button.innerText());
    check(name.trim(), `${page.url()}: a button has no accessible name`);
  }
}

async function atTheClient(page) {
  await page.route((url) => url.href.startsWith(redirectUri), async (route) => {
    redirected = new URL(route.request().url());
    await route.fulfill({
      contentType: 'text/html',
      body: '<!doctype html><html lang="en"><title>client</title><p>Back at the client.</p></html>',
    });
  });
}

/** Opens `url`, is sent to sign in, and signs in; `then` is where that should lead. */
async function signIn(page, url, then) {
  step = `opening the authorization URL ${url}`;
  await page.goto(url);
  check(new URL(page.url()).pathname === '/login', `expected the sign-in page, got ${page.url()}`);
  step = 'the sign-in page';
  await accessible(page);
  await page.getByLabel('Email').fill(opts.email);
  await page.getByLabel('Password').fill(opts.password);
  await shot(page, '1-sign-in');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(then);
}

/** Unticks one scope, allows, and returns the redirect's URL and the kept scope's code. */
async function consent(page) {
  step = 'the consent page';
  await accessible(page);
  await page.getByText(opts.agent, { exact: true }).waitFor();
  const keep = page.getByRole('checkbox', { name: opts.keep });
  const untick = page.getByRole('checkbox', { name: opts.untick });
  for (const [words, box] of [[opts.keep, keep], [opts.untick, untick]]) {
    check(await box.isVisible(), `the scope "${words}" is not shown as a checkbox`);
    check(await box.isChecked(), `the scope "${words}" is not ticked to begin with`);
  }
  await untick.uncheck();
  check(!(await untick.isChecked()), `"${opts.untick}" stayed ticked`);
  const kept = await keep.getAttribute('value');
  const dropped = await untick.getAttribute('value');
  await shot(page, '2-consent-unticked');

  step = 'allowing';
  redirected = null;
  await page.getByRole('button', { name: 'Allow' }).click();
  await page.waitForURL(toClient);
  check(redirected, `the browser did not reach the redirect URI ${redirectUri}`);
  return { redirected, kept, dropped };
}

const toClient = (url) => url.href.startsWith(redirectUri);

/** Signs out, then in again through `url`, a request for what was granted already. */
async function again(page, url) {
  step = 'signing out';
  await page.goto(`${origin}/account`);
  await page.getByRole('button', { name: 'Sign out', exact: true }).click();
  await page.waitForURL((u) => u.pathname === '/login');
  redirected = null;
  await signIn(page, url, (u) => toClient(u) || u.pathname === '/oauth/authorize');
  step = 'signing in again for a grant already given';
  check(redirected, `the sign-in did not lead on to the client but to ${page.url()}`);
  return redirected.searchParams.get('code') ?? '';
}

/** The grant is listed with only the kept scope; revoking it leaves it marked revoked. */
async function revoke(page, { kept, dropped }) {
  step = 'the account page';
  await page.goto(`${origin}/account`);
  check(new URL(page.url()).pathname === '/account', `expected /account, got ${page.url()}`);
  await accessible(page);
  const section = page.locator('section').filter({ has: page.getByRole('heading', { name: opts.agent }) });
  check((await section.count()) === 1, `no grant to "${opts.agent}" is listed`);
  const row = section.getByRole('row').filter({ hasText: kept });
  check((await row.count()) === 1, `no single grant of ${kept} to "${opts.agent}": ${await section.innerText()}`);
  const rowText = await row.innerText();
  check(!rowText.includes(dropped), `the grant lists the unticked scope ${dropped}: ${rowText}`);
  check(/\bactive\b/.test(rowText), `the grant is not active: ${rowText}`);
  await shot(page, '3-account-before-revoke');

  step = 'revoking';
  // The answer comes back to /account itself, so wait for the new page, not the URL.
  await Promise.all([page.waitForEvent('framenavigated'), row.getByRole('button', { name: /^Revoke/ }).click()]);
  await page.waitForLoadState();
  check(new URL(page.url()).pathname === '/account', `revoking led to ${page.url()}`);
  const after = page.locator('section').filter({ has: page.getByRole('heading', { name: opts.agent }) }).getByRole('row').filter({ hasText: kept });
  const afterText = await after.innerText();
  check(/\brevoked\b/.test(afterText), `after revoking, the grant reads: ${afterText}`);
  check((await after.getByRole('button', { name: /^Revoke/ }).count()) === 0, 'a revoked grant still offers "Revoke"');
  await accessible(page);
  await shot(page, '4-account-revoked');
}

await mkdir(artifacts, { recursive: true });
let browser;
try {
  browser = await chromium.launch({ executablePath, headless: true });
} catch (err) {
  fail(step, `${err.message}\n(is Chromium installed? apt-get install -y chromium, or run tools/test.sh)`);
}
const context = await browser.newContext({ javaScriptEnabled: false });
context.setDefaultTimeout(STEP_TIMEOUT_MS);
const page = await context.newPage();
let code = 0;
try {
  await atTheClient(page);
  await signIn(page, authorizationUrl, (url) => url.pathname === '/oauth/authorize');
  const answer = await consent(page);
  for (const name of ['code', 'state', 'iss']) {
    console.log(`${name}=${answer.redirected.searchParams.get(name) ?? ''}`);
  }
  console.log(`kept=${answer.kept}`);
  if (opts.pause) {
    step = 'waiting for the caller to redeem the code';
    for await (const _ of createInterface({ input: process.stdin })) break;
  }
  if (opts.again) console.log(`again_code=${await again(page, opts.again)}`);
  await revoke(page, answer);
} catch (err) {
  console.error(`consent.mjs: ${step}: ${err.message}`);
  console.error(`consent.mjs: the page was ${page.url()}; see ${join(artifacts, 'failure.png')}`);
  await shot(page, 'failure').catch(() => {});
  code = 1;
} finally {
  await browser.close();
}
process.exit(code);
