// Passkeys in a real browser (issue 3 #3 and #10, IDM-5): headless Chromium with its virtual
// authenticator (CTAP2, user verification) drives the /account pages and the OIDC login page of a
// live server. Called by tests/browser.rs with a JSON config; prints `ok <check>` or
// `FAIL <check>: why` per step and `code <authorization code>` for the Rust side to redeem.
'use strict';
const fs = require('fs');
const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const { chromium } = require(cfg.playwright);

let failed = false;
function check(name, ok, why) {
  if (ok) console.log(`ok ${name}`);
  else {
    failed = true;
    console.log(`FAIL ${name}: ${why}`);
  }
}

async function main() {
  const browser = await chromium.launch({
    executablePath: cfg.chromium,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      // Trust the test server's certificate by its key, as a city would trust its own CA:
      // browsers refuse WebAuthn on pages with certificate errors.
      `--ignore-certificate-errors-spki-list=${cfg.spki}`,
    ],
  });
  const context = await browser.newContext();
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2', transport: 'internal', hasResidentKey: true,
      hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true,
    },
  });
  // Scripts the pages did not allow would show up here as CSP violations.
  const violations = [];
  page.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) violations.push(m.text()); });

  // 1. Password sign-in on /account, then enrol a passkey from the page.
  await page.goto(`${cfg.base}/account`);
  await page.fill('#username', cfg.username);
  await page.fill('#password', cfg.password);
  await page.click('form[action="/account/login"] button[type=submit]');
  await page.waitForLoadState();
  check('password_sign_in', (await page.content()).includes('Signed in as'), await page.content());
  await page.fill('#pk_name', 'work laptop');
  await page.click('form[action="/account/passkeys"] button');
  await page.waitForSelector('#cf-go');
  check('ceremony_page_has_one_nonced_script',
    (await page.$$eval('script', (s) => s.filter((x) => x.nonce).length)) === 1, 'script count');
  await page.click('#cf-go');
  await page.waitForURL('**/account/passkeys/finish');
  const added = await page.content();
  check('passkey_enrolled_from_the_page', added.includes('Passkey “work laptop” added.'), added);
  check('passkey_listed', /<ul id="passkeys"><li>work laptop/.test(added), added);
  const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
  check('authenticator_holds_one_credential', credentials.length === 1, JSON.stringify(credentials));
  check('the_passkey_is_discoverable', credentials.length === 1 && credentials[0].isResidentCredential, JSON.stringify(credentials));

  // 2. Sign out, then sign in to /account with the passkey alone.
  await page.click('form[action="/account/logout"] button');
  await page.waitForLoadState();
  check('signed_out', (await page.$('#pk_username')) !== null, await page.content());
  await page.fill('#pk_username', cfg.username);
  await page.click('form[action="/account/passkey"] button');
  await page.waitForSelector('#cf-go');
  await page.click('#cf-go');
  await page.waitForURL('**/account');
  const back = await page.content();
  check('passkey_sign_in_on_account', back.includes(`Signed in as <b>${cfg.username}</b>`), back);

  // 2b. Without a username: the authenticator offers its passkey, which names its account.
  await context.clearCookies();
  await page.goto(`${cfg.base}/account`);
  await page.click('form[action="/account/passkey"] button');
  await page.waitForSelector('#cf-go');
  await page.click('#cf-go');
  await page.waitForURL('**/account');
  const anyone = await page.content();
  check('usernameless_passkey_sign_in', anyone.includes(`Signed in as <b>${cfg.username}</b>`), anyone);

  // 3. A passkey that is not the account's: the page says so and no session starts.
  await context.clearCookies();
  await page.goto(`${cfg.base}/account`);
  await page.fill('#pk_username', cfg.other_username);
  await page.click('form[action="/account/passkey"] button');
  await page.waitForSelector('#cf-go');
  await page.click('#cf-go');
  // The authenticator has no credential for the other account: the browser reports it.
  await page.waitForFunction(() => document.getElementById('cf-status').textContent.length > 0
    && !document.getElementById('cf-go').disabled);
  const refusedStatus = await page.textContent('#cf-status');
  check('passkey_for_another_account_not_offered',
    refusedStatus.includes('did not answer') && new URL(page.url()).pathname === '/account/passkey'
      && (await context.cookies()).every((c) => c.name !== 'cf_sso'),
    `${refusedStatus} at ${page.url()}`);

  // 4. Single sign-on: an application's authorization request, answered with the passkey.
  await context.clearCookies();
  await page.goto(cfg.authorize_url);
  check('login_page_offers_passkeys', (await page.$('form[action="/oidc/passkey"]')) !== null, await page.content());
  await page.fill('#pk_username', cfg.username);
  await page.click('form[action="/oidc/passkey"] button');
  await page.waitForSelector('#cf-go');
  // The application is not reachable from here: the redirect to it is what counts.
  const toApp = page.waitForRequest((r) => r.url().startsWith(`${cfg.redirect_origin}/`));
  await page.click('#cf-go');
  const url = new URL((await toApp).url());
  check('sso_redirects_with_a_code', url.searchParams.get('code') && url.searchParams.get('state') === cfg.state, url.toString());
  if (url.searchParams.get('code')) console.log(`code ${url.searchParams.get('code')}`);
  check('no_csp_violations', violations.length === 0, violations.join(' | '));
  await browser.close();
}

main().then(() => process.exit(failed ? 1 : 0), (e) => {
  console.log(`FAIL exception: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
});
