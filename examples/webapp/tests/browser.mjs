// Browser tests of the reference web application: Debian's headless Chromium driven by
// playwright-core, as a person would use the pages. Run by run-browser-tests.sh (make test), which
// starts a seeded app (MFA_WEB_STEP_UP_SECONDS=5) and its SMS worker.
// Environment: WEB_URL, PGPORT, PGDATABASE, SCREENSHOTS.
import { chromium } from 'playwright-core';
import { execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';

const base = process.env.WEB_URL ?? 'http://127.0.0.1:28871';
const shots = process.env.SCREENSHOTS ?? 'target/webapp-screenshots';
const windowSeconds = 5; // the app's MFA_WEB_STEP_UP_SECONDS in this run
mkdirSync(shots, { recursive: true });

const problems = []; // console errors, page errors, HTTP 5xx: any fails the run
// Every secret the test saw (TOTP keys, recovery codes, SMS codes, cookies): run-browser-tests.sh
// fails if one of them is in the app's, the worker's or the server's log.
function sawSecret(...values) {
  if (process.env.SECRETS_FILE) appendFileSync(process.env.SECRETS_FILE, values.filter(v => v && v.length >= 6).join('\n') + '\n');
}
let passed = 0, failed = 0;
const started = Date.now();

function sql(statement) {
  return execFileSync('psql', ['-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-h', '/tmp', '-p', process.env.PGPORT,
    '-U', 'postgres', '-d', process.env.PGDATABASE, '-c', statement], { encoding: 'utf8' }).trim();
}

// RFC 6238 (SHA1, 6 digits, 30 s), as an authenticator app computes it.
function base32(s) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of s.replace(/=+$/, '').toUpperCase()) bits += alphabet.indexOf(c).toString(2).padStart(5, '0');
  const bytes = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(bytes);
}
function totpAt(secret, step) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = createHmac('sha1', base32(secret)).update(counter).digest();
  const offset = mac[19] & 0xf;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000).padStart(6, '0');
}
// mfa accepts each time step once: a new code is the next unused step (waiting for it if needed).
const lastStep = new Map();
async function nextCode(secret) {
  for (;;) {
    const now = Math.floor(Date.now() / 1000 / 30);
    const step = Math.max(now, (lastStep.get(secret) ?? -1) + 1);
    if (step <= now + 1) {
      lastStep.set(secret, step);
      return totpAt(secret, step);
    }
    await new Promise(r => setTimeout(r, 1000));
  }
}
function wrongCode(secret) {
  const now = Math.floor(Date.now() / 1000 / 30);
  const near = new Set([-1, 0, 1, 2].map(d => totpAt(secret, now + d)));
  for (let n = 0; ; n++) { const c = String(n * 7919 % 1000000).padStart(6, '0'); if (!near.has(c)) return c; }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});

async function newPage() {
  const context = await browser.newContext({ baseURL: base, viewport: { width: 1100, height: 800 } });
  const page = await context.newPage();
  watch(page);
  return page;
}
function watch(page) {
  page.on('console', m => { if (m.type() === 'error') problems.push(`console error on ${page.url()}: ${m.text()}`); });
  page.on('pageerror', e => problems.push(`page error on ${page.url()}: ${e.message}`));
  page.on('response', r => { if (r.status() >= 500) problems.push(`HTTP ${r.status()} for ${r.url()}`); });
}
async function shot(page, name) {
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}
function expect(cond, what) { if (!cond) throw new Error(what); }
async function expectText(page, text) {
  const body = await page.locator('body').innerText();
  expect(body.includes(text), `expected "${text}" on ${page.url()}, page says:\n${body.slice(0, 600)}`);
}
function path(page) { return new URL(page.url()).pathname; }

async function signIn(page, organization, email, password = 'demo-password') {
  await page.goto('/login');
  await page.getByLabel('Organization').fill(organization);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForLoadState();
}
async function signOut(page) {
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(/\/login/);
  await expectText(page, 'You are signed out.');
}
async function typeCode(page, code, { remember = false } = {}) {
  await page.getByLabel('Code', { exact: true }).fill(code);
  if (remember) await page.getByLabel('Remember this device').check();
  await page.getByRole('button', { name: 'Verify' }).click();
  await page.waitForLoadState();
}
// The QR code image, decoded as a phone would scan it (zbarimg on a screenshot of the image).
async function scanQr(page) {
  const img = page.getByAltText(/QR code/);
  const file = join(tmpdir(), `mfa-qr-${process.pid}.png`);
  await img.screenshot({ path: file });
  const uri = execFileSync('zbarimg', ['--raw', '-q', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  expect(uri.startsWith('otpauth://totp/'), `QR code holds ${uri.slice(0, 20)}…`);
  const secret = new URL(uri).searchParams.get('secret');
  expect(secret === (await page.locator('#secret').innerText()).replace(/\s/g, ''), 'the QR code and the key shown agree');
  sawSecret(secret, ...(await page.locator('.codes code').allInnerTexts()));
  return secret;
}
async function smsCode(page, phone) {
  // The development inbox: what the SMS worker posted to the app's webhook.
  const inbox = await page.context().newPage();
  watch(inbox);
  for (let i = 0; i < 40; i++) {
    await inbox.goto('/dev/sms');
    const rows = await inbox.locator('#inbox tbody tr').allInnerTexts();
    const row = rows.find(r => r.includes(phone));
    const code = row?.match(/\b(\d{6})\b/)?.[1];
    if (code) {
      sawSecret(code);
      await shot(inbox, '11-dev-sms-inbox');
      await inbox.close();
      return code;
    }
    await new Promise(r => setTimeout(r, 500));
  }
  throw new Error(`no text message to ${phone} in /dev/sms`);
}
function addUser(organization, email, name) {
  sql(`INSERT INTO app.users SELECT organization_id, '${email}', password_hash, '${name}', false FROM app.users
        WHERE organization_id = '${organization}' LIMIT 1;
       SELECT mfa.member_upsert('${organization}', '${email}');`);
}

async function test(name, fn) {
  const t = Date.now();
  try {
    await fn();
    for (const context of browser.contexts()) sawSecret(...(await context.cookies()).map(c => c.value));
    passed++;
    console.log(`ok ${passed + failed} - ${name} (${((Date.now() - t) / 1000).toFixed(1)} s)`);
  } catch (e) {
    failed++;
    console.log(`not ok ${passed + failed} - ${name}\n  ${String(e.stack ?? e).split('\n').join('\n  ')}`);
  }
}

const ann = { page: null, secret: null, recovery: [], device: null };

await test('sign-in page; a wrong password is a message', async () => {
  const page = await newPage();
  await page.goto('/');
  await shot(page, '01-sign-in');
  await page.locator('main').screenshot({ path: join(shots, 'readme-sign-in.png') }); // docs/images
  await signIn(page, 'acme', 'ann@acme.example', 'not-her-password');
  await expectText(page, 'The organization, email or password is wrong.');
  await shot(page, '02-sign-in-wrong-password');
  ann.page = page;
});

await test('a member with no factor enrolls: QR code decoded, code computed, signed in, factors shown', async () => {
  const page = ann.page;
  await signIn(page, 'acme', 'ann@acme.example');
  expect(path(page) === '/login/enroll', `enrollment asked (at ${page.url()})`);
  await shot(page, '03-enroll-authenticator-app');
  await page.locator('main').screenshot({ path: join(shots, 'readme-enroll.png') }); // docs/images
  ann.secret = await scanQr(page);
  ann.recovery = await page.locator('.codes code').allInnerTexts();
  expect(ann.recovery.length === 10, `10 recovery codes shown (${ann.recovery.length})`);
  await typeCode(page, await nextCode(ann.secret));
  expect(path(page) === '/home', `signed in (at ${page.url()})`);
  expect((await page.locator('#aal').innerText()) === 'aal2', 'aal2');
  await expectText(page, 'authenticator app');
  await expectText(page, 'password');
  await shot(page, '04-home');
  await signOut(page);
  await shot(page, '05-signed-out');
});

await test('a second sign-in with a code from the app; "Remember this device"', async () => {
  const page = ann.page;
  await signIn(page, 'acme', 'ann@acme.example');
  expect(path(page) === '/login/totp', `code asked (at ${page.url()})`);
  await shot(page, '06-code');
  await typeCode(page, await nextCode(ann.secret), { remember: true });
  expect(path(page) === '/home', `signed in (at ${page.url()})`);
  await expectText(page, 'This device is remembered');
  await expectText(page, 'on Linux');
  ann.device = (await page.context().cookies()).find(c => c.name.startsWith('mfa_device_'));
  expect(ann.device && ann.device.httpOnly && ann.device.sameSite === 'Lax', 'an HttpOnly SameSite=Lax device cookie');
  const session = (await page.context().cookies()).find(c => c.name === 'mfa_session');
  expect(session && session.httpOnly && session.sameSite === 'Lax', 'an HttpOnly SameSite=Lax session cookie');
  await shot(page, '07-home-device-remembered');
  await signOut(page);
});

await test('the remembered device skips MFA on the next sign-in (its cookie rotates)', async () => {
  const page = ann.page;
  await signIn(page, 'acme', 'ann@acme.example');
  expect(path(page) === '/home', `no code asked (at ${page.url()})`);
  await expectText(page, 'remembered device');
  const now = (await page.context().cookies()).find(c => c.name === ann.device.name);
  expect(now && now.value !== ann.device.value, 'the device cookie rotated');
  await shot(page, '08-home-remembered-device');
  await signOut(page);
});

await test('the old device cookie replayed from another browser: MFA asked, every device revoked', async () => {
  const other = await newPage();
  await other.context().addCookies([{ name: ann.device.name, value: ann.device.value, url: base }]);
  await signIn(other, 'acme', 'ann@acme.example');
  expect(path(other) === '/login/totp', `the copy is not honoured (at ${other.url()})`);
  await typeCode(other, await nextCode(ann.secret));
  expect(path(other) === '/home', `signed in with a code (at ${other.url()})`);
  await expectText(other, 'No remembered devices.');
  await shot(other, '09-home-devices-revoked');
  await other.context().close();
  // The first browser's current (rotated) cookie is revoked too.
  await signIn(ann.page, 'acme', 'ann@acme.example');
  expect(path(ann.page) === '/login/totp', `the revoked device is not honoured (at ${ann.page.url()})`);
});

await test('a recovery code signs in once', async () => {
  const page = ann.page;
  await page.getByRole('link', { name: 'Use a recovery code' }).click();
  await page.getByLabel('Recovery code').fill(ann.recovery[0]);
  await shot(page, '10-recovery-code');
  await page.getByRole('button', { name: 'Verify' }).click();
  await page.waitForLoadState();
  expect(path(page) === '/home', `signed in (at ${page.url()})`);
  await expectText(page, '9 left');
});

await test('/billing: allowed while MFA is fresh, refused after the window, step-up, allowed again', async () => {
  const page = ann.page;
  await page.goto('/billing');
  await expectText(page, 'Visa');
  await shot(page, '12-billing');
  await new Promise(r => setTimeout(r, (windowSeconds + 1.5) * 1000));
  await page.goto('/billing');
  await expectText(page, "Confirm it's you");
  expect(!(await page.locator('body').innerText()).includes('Visa'), 'the rows are refused');
  await shot(page, '13-billing-refused');
  await page.getByRole('button', { name: "Confirm it's you" }).click();
  await page.waitForLoadState();
  expect(path(page) === '/login/totp', `step-up asks a code (at ${page.url()})`);
  expect((await page.getByLabel('Remember this device').count()) === 0, 'no "remember" on a step-up');
  await shot(page, '14-step-up');
  await typeCode(page, await nextCode(ann.secret));
  expect(path(page) === '/billing', `back at billing (at ${page.url()})`);
  await expectText(page, 'Visa');
});

const bob = { page: null };
await test('SMS sign-in with the code from /dev/sms; "Send again" at once is refused (too_many_requests)', async () => {
  const page = await newPage();
  bob.page = page;
  await signIn(page, 'acme', 'bob@acme.example');
  expect(path(page) === '/login/sms', `an SMS code asked (at ${page.url()})`);
  await expectText(page, '2671');
  await shot(page, '15-sms-code');
  const code = await smsCode(page, '+14155552671');
  await page.getByRole('button', { name: 'Send again' }).click();
  await page.waitForLoadState();
  await expectText(page, 'Wait 30 seconds');
  await shot(page, '16-sms-too-many-requests');
  await typeCode(page, code);
  expect(path(page) === '/home', `signed in (at ${page.url()})`);
  expect((await page.locator('#aal').innerText()) === 'aal2', 'aal2');
  await expectText(page, 'text message');
});

await test('enrollment with a phone number: "Send code", the code from /dev/sms', async () => {
  addUser('acme', 'erin@acme.example', 'Erin Evans');
  const page = await newPage();
  await signIn(page, 'acme', 'erin@acme.example');
  expect(path(page) === '/login/enroll', `enrollment asked (at ${page.url()})`);
  await page.getByRole('link', { name: 'Use a text message instead' }).click();
  await page.getByLabel('Phone number').fill('+1 415 555 0142');
  await shot(page, '17-enroll-phone');
  await page.getByRole('button', { name: 'Send code' }).click();
  await page.waitForLoadState();
  expect(path(page) === '/login/sms', `code asked (at ${page.url()})`);
  await typeCode(page, await smsCode(page, '+14155550142'));
  expect(path(page) === '/home', `signed in (at ${page.url()})`);
  await page.context().close();
});

await test('10 wrong codes lock the member; the organization admin unlocks', async () => {
  addUser('acme', 'dave@acme.example', 'Dave Doyle');
  const page = await newPage();
  await signIn(page, 'acme', 'dave@acme.example');
  const secret = await scanQr(page);
  await typeCode(page, await nextCode(secret));
  expect(path(page) === '/home', `enrolled (at ${page.url()})`);
  await signOut(page);
  await signIn(page, 'acme', 'dave@acme.example');
  let lockedAt = 0;
  for (let i = 1; i <= 11 && !lockedAt; i++) {
    await typeCode(page, wrongCode(secret));
    const body = await page.locator('body').innerText();
    if (body.includes('your account is locked')) lockedAt = i;
    else expect(body.includes('That code is not right'), `attempt ${i}: ${body.slice(0, 300)}`);
    await new Promise(r => setTimeout(r, 300)); // under 5 checks a second: only the lock counts
  }
  expect(lockedAt >= 10, `locked after 10 wrong codes (at attempt ${lockedAt})`);
  await shot(page, '18-locked');
  await typeCode(page, await nextCode(secret));
  await expectText(page, 'your account is locked');
  // Ann administers acme.
  const admin = ann.page;
  await admin.goto('/admin');
  const row = admin.locator('#members tr', { hasText: 'dave@acme.example' });
  for (let i = 0; i < 20 && !(await row.innerText()).includes('locked'); i++) {
    await new Promise(r => setTimeout(r, 250));
    await admin.reload();
  }
  await shot(admin, '19-admin');
  await row.getByRole('button', { name: 'Unlock' }).click();
  await admin.waitForLoadState();
  await expectText(admin, 'The member is unlocked.');
  await signIn(page, 'acme', 'dave@acme.example');
  await typeCode(page, await nextCode(secret));
  expect(path(page) === '/home', `signed in after the unlock (at ${page.url()})`);
  await page.context().close();
});

await test('codes typed faster than mfa checks them (5 a second): too_many_requests is a message', async () => {
  const page = await newPage();
  const secret = ann.secret;
  await signIn(page, 'acme', 'ann@acme.example');
  expect(path(page) === '/login/totp', `code asked (at ${page.url()})`);
  const csrf = await page.locator('input[name=csrf]').first().inputValue();
  // Ten submissions of the code form at once (the browser's cookies, the form's token).
  const answers = await Promise.all(Array.from({ length: 10 }, () =>
    page.request.post('/login/totp', { form: { csrf, code: wrongCode(secret) } }).then(r => r.text())));
  const limited = answers.filter(a => a.includes('Too many attempts in a short time')).length;
  const wrong = answers.filter(a => a.includes('That code is not right')).length;
  expect(limited >= 1 && wrong <= 5 && limited + wrong === 10, `${limited} limited, ${wrong} checked`);
  await page.setContent(answers.find(a => a.includes('Too many attempts'))); // the page as the browser got it
  await shot(page, '23-too-many-requests');
  await new Promise(r => setTimeout(r, 1500));
  await page.goto('/login/totp');
  await typeCode(page, await nextCode(secret));
  expect(path(page) === '/home', `then a right code signs in (at ${page.url()})`);
  await page.context().close();
});

await test('the admin switches globex to REQUIRED_FOR_ALL: carol must enroll', async () => {
  const page = await newPage();
  await signIn(page, 'globex', 'carol@globex.example');
  expect(path(page) === '/home', `MFA optional: signed in (at ${page.url()})`);
  expect((await page.locator('#aal').innerText()) === 'aal1', 'aal1');
  await shot(page, '20-home-optional-mfa');
  await page.getByRole('link', { name: 'Organization' }).click();
  await page.getByLabel('Policy').selectOption('REQUIRED_FOR_ALL');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.waitForLoadState();
  await expectText(page, 'Saved.');
  await shot(page, '21-admin-policy-saved');
  await signOut(page);
  await signIn(page, 'globex', 'carol@globex.example');
  expect(path(page) === '/login/enroll', `carol must enroll (at ${page.url()})`);
  await page.getByAltText(/QR code/).waitFor();
  await page.context().close();
});

await test('a form without its CSRF token (or with another) is refused with 403', async () => {
  const page = await newPage();
  await page.goto('/login');
  const form = { organization: 'acme', email: 'bob@acme.example', password: 'demo-password' };
  const missing = await page.request.post('/login', { form, maxRedirects: 0 });
  expect(missing.status() === 403, `no token: ${missing.status()}`);
  await page.setContent(await missing.text()); // the 403 page as the browser got it
  await shot(page, '24-csrf-refused');
  const wrong = await page.request.post('/login', { form: { ...form, csrf: 'x'.repeat(43) }, maxRedirects: 0 });
  expect(wrong.status() === 403, `another token: ${wrong.status()}`);
  // Signed in, a sign-out without the token is refused and the session lives on.
  const logout = await bob.page.request.post('/logout', { form: {}, maxRedirects: 0 });
  expect(logout.status() === 403, `sign-out without a token: ${logout.status()}`);
  expect((await logout.text()).includes('This form has expired'), 'the 403 page says why');
  await bob.page.goto('/home');
  expect(path(bob.page) === '/home', 'still signed in');
  await page.context().close();
});

await test("a deleted session's cookie signs the browser out", async () => {
  sql(`DELETE FROM app.sessions WHERE member_id = 'bob@acme.example'`);
  await bob.page.goto('/home');
  expect(path(bob.page) === '/login', `signed out (at ${bob.page.url()})`);
  await expectText(bob.page, 'Your session has ended.');
  await shot(bob.page, '22-session-ended');
  const cookie = (await bob.page.context().cookies()).find(c => c.name === 'mfa_session');
  expect(!cookie, 'the session cookie is cleared');
});

// Passkeys need a domain name (browsers refuse an IP address as the relying party): these pages
// are opened at http://localhost, whose origin the seed allowed. Chromium's virtual authenticator
// (the DevTools protocol's WebAuthn domain: CTAP2, internal transport, user verification) stands
// in for the device's platform authenticator.
const localBase = base.replace('127.0.0.1', 'localhost');
const dana = { page: null };
async function withAuthenticator(page) {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', { options: {
    protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true,
    isUserVerified: true, automaticPresenceSimulation: true } });
  return { cdp, authenticatorId };
}

await test('a member enrolls a passkey during sign-in, then signs in with it', async () => {
  const context = await browser.newContext({ baseURL: localBase, viewport: { width: 1100, height: 800 } });
  const page = await context.newPage();
  watch(page);
  dana.page = page;
  dana.authenticator = await withAuthenticator(page);
  await signIn(page, 'acme', 'dana@acme.example');
  expect(path(page) === '/login/enroll', `enrollment offered (at ${page.url()})`);
  sawSecret(...(await page.locator('.codes code').allInnerTexts()));
  await page.getByRole('link', { name: 'Use a passkey instead' }).click();
  await page.waitForURL(/\/login\/enroll\/passkey/);
  await expectText(page, 'It works only on this site');
  await shot(page, '30-passkey-create');
  await page.getByRole('button', { name: 'Create a passkey' }).click();
  await page.getByText('Your passkey is ready').waitFor();
  const codes = await page.locator('.codes code').allInnerTexts();
  expect(codes.length === 10, `10 recovery codes (${codes.length})`);
  sawSecret(...codes);
  await shot(page, '31-passkey-ready');
  const { credentials } = await dana.authenticator.cdp.send('WebAuthn.getCredentials', { authenticatorId: dana.authenticator.authenticatorId });
  expect(credentials.length === 1 && credentials[0].rpId === 'localhost', `one credential for localhost: ${JSON.stringify(credentials.map(c => c.rpId))}`);
  const stored = sql(`SELECT count(*) || ' ' || domain || ' ' || m.default_mfa_method || ' ' || m.mfa_enrolled
                        FROM mfa.webauthn_registrations r JOIN mfa.members m USING (organization_id, member_id)
                       WHERE member_id = 'dana@acme.example' GROUP BY domain, m.default_mfa_method, m.mfa_enrolled`);
  expect(stored === '1 localhost webauthn true', `stored: ${stored}`);
  await page.getByRole('link', { name: 'Continue' }).click();
  await page.waitForURL(/\/home/);
  await expectText(page, 'Dana Diaz');
  await signOut(page);

  // Signing in again: the passkey is the second step.
  await signIn(page, 'acme', 'dana@acme.example');
  expect(path(page) === '/login/passkey', `the passkey is asked for (at ${page.url()})`);
  await shot(page, '32-passkey-sign-in');
  await page.getByRole('button', { name: 'Use your passkey' }).click();
  await page.waitForURL(/\/home/);
  await expectText(page, 'Dana Diaz');
  await expectText(page, 'passkey');
  const factors = sql(`SELECT mfa.session_phishing_resistant(organization_id, member_id, authentication_factors)
                         || ' ' || array_to_string(mfa.session_amr(organization_id, member_id, authentication_factors), ',')
                         FROM app.sessions WHERE member_id = 'dana@acme.example' ORDER BY created_at DESC LIMIT 1`);
  expect(factors === 'true mfa,pwd,swk,user', `the session: ${factors}`);
  await shot(page, '33-passkey-signed-in');
  // Billing after its freshness window: the step-up is the passkey too.
  await new Promise(r => setTimeout(r, (windowSeconds + 1.5) * 1000));
  await page.goto('/billing');
  await page.getByRole('button', { name: "Confirm it's you" }).click();
  await page.waitForURL(/\/login\/passkey/);
  await expectText(page, "Confirm it's you");
  await shot(page, '35-passkey-step-up');
  await page.getByRole('button', { name: 'Use your passkey' }).click();
  await page.waitForURL(/\/billing/);
  await expectText(page, 'Visa');
  await signOut(page);
});

await test('a page served from another origin gets a refusal from the database', async () => {
  // The same pages through a proxy on another port: another origin, the same relying party
  // (localhost), so the browser signs, and mfa refuses the origin it signed for.
  const { createServer, request } = await import('node:http');
  const target = new URL(localBase);
  const proxy = createServer((req, res) => {
    const upstream = request({ host: target.hostname, port: target.port, path: req.url, method: req.method,
      headers: req.headers }, up => { res.writeHead(up.statusCode, up.headers); up.pipe(res); });
    req.pipe(upstream);
  });
  await new Promise(r => proxy.listen(0, 'localhost', r));
  const other = `http://localhost:${proxy.address().port}`;
  try {
    const page = dana.page;
    await page.goto(`${other}/login`);
    await page.getByLabel('Organization').fill('acme');
    await page.getByLabel('Email').fill('dana@acme.example');
    await page.getByLabel('Password').fill('demo-password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(/\/login\/passkey/);
    await page.getByRole('button', { name: 'Use your passkey' }).click();
    await page.getByText('That passkey could not be verified for this site.').waitFor();
    expect(path(page) === '/login/passkey', `still asked for a passkey (at ${page.url()})`);
    await shot(page, '34-passkey-other-origin');
    // Counted and audited by the attempt ledger's worker, in its own transaction: soon after.
    let refused = '';
    for (let i = 0; i < 50 && refused === ''; i++) {
      refused = sql(`SELECT details ->> 'error_type' FROM mfa.events WHERE member_id = 'dana@acme.example'
                       AND event_type = 'webauthn.authenticate' AND details ->> 'outcome' = 'failure'
                     ORDER BY event_id DESC LIMIT 1`);
      if (refused === '') await new Promise(r => setTimeout(r, 100));
    }
    expect(refused === 'unable_to_auth_webauthn', `the refusal is audited: ${refused}`);
  } finally {
    proxy.close();
  }
  await dana.page.context().close();
});

await test('no console error and no HTTP 5xx on any page', async () => {
  expect(problems.length === 0, problems.join('\n'));
});

await browser.close();
const seconds = ((Date.now() - started) / 1000).toFixed(0);
console.log(`browser tests: ${passed} passed, ${failed} failed in ${seconds} s; screenshots in ${shots}`);
process.exit(failed ? 1 : 0);
