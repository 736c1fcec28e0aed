// Drives headless Chromium through the web explorer, as tests/browser.rs asks:
//
//   node tests/browser/explorer.mjs CONFIG.json
//
// CONFIG names the server (`base_url`), the browser (`chromium`, `playwright_core`), what the
// seeded ledger must show (`checkpoint_size`, `consumer`, `balance_total`, `merchant`,
// `merchant_name`, `entry`), the log key (`verifier_key`, and `other_key` of another log),
// receipts (`good_receipt`, `tampered`: [{name, text}]) and receipts of other logs that must
// verify (`known_answers`: [{name, receipt, key}]), the receipt vectors of the library's verifier
// (`receipt_vectors`: [{name, key, receipt, valid, code}]); `screenshot`, if set, is where to write a
// PNG of the overview. Prints one `ok - ...` or `not ok - ...` line per check and exits
// non-zero if any failed.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';

const STEP_TIMEOUT_MS = 15_000;
const TOTAL_TIMEOUT_MS = 120_000;
// As the test brief fixes them: no sandbox (root in a container), no GPU, no network beyond
// the page's own requests, a profile of its own.
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const { chromium } = createRequire(import.meta.url)(cfg.playwright_core);

setTimeout(() => {
  console.log(`not ok - the whole run took more than ${TOTAL_TIMEOUT_MS / 1000} s`);
  process.exit(2);
}, TOTAL_TIMEOUT_MS).unref();

let passed = 0;
let failed = 0;
async function check(name, fn) {
  try {
    const note = await fn();
    passed += 1;
    console.log(`ok - ${name}${note ? `: ${note}` : ''}`);
  } catch (e) {
    failed += 1;
    const msg = String((e && e.message) || e).split('\n').slice(0, 4).join(' | ');
    console.log(`not ok - ${name}: ${msg}`);
  }
}

function assertEq(actual, expected, what) {
  if (actual !== expected) throw new Error(`${what}: got ${JSON.stringify(actual)}, want ${JSON.stringify(expected)}`);
}

const fmt = (n) => new Intl.NumberFormat('en-US').format(n);

const profile = mkdtempSync(path.join(tmpdir(), 'explorer-chromium-'));
let context;
try {
  // A persistent context is how playwright takes a --user-data-dir of our choosing: a new,
  // empty one for this run.
  context = await chromium.launchPersistentContext(profile, {
    executablePath: cfg.chromium,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 800 },
    timeout: 30_000,
  });
} catch (e) {
  console.log(`not ok - start ${cfg.chromium}: ${String(e.message).split('\n')[0]}`);
  rmSync(profile, { recursive: true, force: true });
  process.exit(1);
}

const page = context.pages()[0] || (await context.newPage());
page.setDefaultTimeout(STEP_TIMEOUT_MS);
// Anything the page logs as an error, except the 404 the error check below provokes on
// purpose, fails the run: a CSP violation or a script error shows up here.
const consoleErrors = [];
page.on('console', (m) => {
  if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) consoleErrors.push(m.text());
});
page.on('pageerror', (e) => consoleErrors.push(`page error: ${e.message}`));

const base = cfg.base_url.replace(/\/$/, '');
const go = async (hash) => {
  await page.goto(`${base}/${hash}`);
};

await check('overview shows the checkpoint size', async () => {
  await go('#/');
  const el = page.locator('#checkpoint-size');
  await el.waitFor();
  assertEq(await el.getAttribute('data-value'), String(cfg.checkpoint_size), 'checkpoint size');
  assertEq((await el.textContent()).trim(), fmt(cfg.checkpoint_size), 'shown size');
  await page.locator('#recent-entries tbody tr').first().waitFor();
  await page.locator('#anchor-status').waitFor();
  return `${cfg.checkpoint_size} entries`;
});

await check("overview shows the checkpoint's witness", async () => {
  await go('#/');
  const li = page.locator(`#witnesses li[data-name="${cfg.witness}"]`);
  await li.waitFor();
  assertEq(await li.getAttribute('data-cosigned'), 'yes', 'the witness cosigned the checkpoint');
  return cfg.witness;
});

await check("the checkpoint history shows each checkpoint's witnesses, checked", async () => {
  await go(`#/checkpoints?from=${cfg.checkpoint_size}`);
  const row = page.locator('#checkpoints tbody tr', { has: page.locator(`[data-size="${cfg.checkpoint_size}"]`) });
  await row.waitFor();
  const li = row.locator(`li.witness[data-name="${cfg.witness}"]`);
  assertEq(await li.getAttribute('data-state'), 'cosigned', 'the cosignature verified under the listed key');
  await go('#/checkpoints');
  await page.locator('#checkpoints tbody tr').first().waitFor();
  return `${await page.locator('#checkpoints tbody tr').count()} on the first page`;
});

if (cfg.screenshot) {
  await check('screenshot of the overview', async () => {
    // Merchant names arrive after the table; wait for them so the picture shows them.
    await page.waitForFunction(() =>
      [...document.querySelectorAll('#recent-entries a[href^="#/merchant/"]')].every((a) => !a.classList.contains('mono')),
    );
    await page.evaluate(() => document.fonts.ready);
    await page.screenshot({ path: cfg.screenshot, fullPage: false });
    return cfg.screenshot;
  });
}

await check("account page shows the consumer's balance and history", async () => {
  await go(`#/account/${cfg.consumer}`);
  const total = page.locator('#balance-total');
  await total.waitFor();
  assertEq(await total.getAttribute('data-value'), String(cfg.balance_total), 'balance');
  assertEq((await total.textContent()).trim(), fmt(cfg.balance_total), 'shown balance');
  const history = await page.locator('#history').textContent();
  for (const reason of ['earn', 'redeem', 'referral reward']) {
    if (!history.includes(reason)) throw new Error(`the history does not mention ${reason}`);
  }
  await page.locator('#lots tbody tr').first().waitFor();
  return `balance ${cfg.balance_total}`;
});

await check('merchant page shows the program', async () => {
  await go(`#/merchant/${cfg.merchant}`);
  await page.locator('#rules').waitFor();
  assertEq((await page.locator('#merchant-name').textContent()).trim(), cfg.merchant_name, 'name');
});

await check('entry page decodes the payload and checks its signature', async () => {
  await go(`#/entry/${cfg.entry}`);
  await page.locator('#payload').waitFor();
  const payload = await page.locator('#payload').textContent();
  if (!payload.includes('order_id')) throw new Error(`no decoded payload: ${payload}`);
  await page.locator('.ok-text', { hasText: 'verif' }).waitFor();
});

await check('a missing entry shows a visible error', async () => {
  await go('#/entry/987654');
  const box = page.locator('.error-box');
  await box.waitFor();
  const text = await box.textContent();
  if (!/not found/i.test(text)) throw new Error(`unexpected message: ${text}`);
});

async function verify(receipt, key, want) {
  await page.fill('#verifier-key', key);
  await page.fill('#receipt', receipt);
  await page.click('#verify-button');
  const verdict = page.locator('#verdict');
  await verdict.waitFor();
  const got = await verdict.getAttribute('data-verdict');
  const word = (await page.locator('#verdict .verdict-word').textContent()).trim();
  const reason = (await page.locator('#verdict-reason').textContent()).trim();
  assertEq(got, want, `verdict (${reason})`);
  assertEq(word, want.toUpperCase(), 'shown verdict');
  return reason;
}

await check('the verify page fills the key only when asked, and says so', async () => {
  await go('#/verify');
  await page.locator('#verify-button').waitFor();
  assertEq(await page.inputValue('#verifier-key'), '', 'key before asking');
  await page.click('#fill-key');
  await page.waitForFunction((k) => {
    const input = document.getElementById('verifier-key');
    return input !== null && input.value === k;
  }, cfg.verifier_key);
  await page.locator('#key-help', { hasText: 'proves nothing' }).waitFor();
  await page.locator('.verify-form', { hasText: 'Filled in from' }).waitFor();
  await page.fill('#verifier-key', '');
});

await check('good receipt is VALID', () => verify(cfg.good_receipt, cfg.verifier_key, 'valid'));

await check('good receipt with its witness is VALID, and INVALID with an absent one required', async () => {
  await page.fill('#witness-keys', cfg.witness_key);
  const reason = await verify(cfg.good_receipt, cfg.verifier_key, 'valid');
  await page.locator('#result', { hasText: `cosigned by ${cfg.witness}` }).waitFor();
  await page.fill('#witness-keys', `${cfg.witness_key}\n${cfg.absent_witness_key}`);
  const refused = await verify(cfg.good_receipt, cfg.verifier_key, 'invalid');
  if (!refused.includes('missing: witness.test/absent')) throw new Error(`reason: ${refused}`);
  await page.fill('#witness-quorum', '1');
  await verify(cfg.good_receipt, cfg.verifier_key, 'valid');
  await page.fill('#witness-keys', '');
  await page.fill('#witness-quorum', '');
  return reason;
});

for (const t of cfg.tampered) {
  await check(`${t.name} is INVALID`, () => verify(t.text, cfg.verifier_key, 'invalid'));
}

for (const k of cfg.known_answers || []) {
  await check(`${k.name} is VALID`, () => verify(k.receipt, k.key, 'valid'));
}

await check('verify.js verifies the cosignature lines of other implementations and of running witnesses', async () => {
  await go('#/verify');
  await page.locator('#verify-button').waitFor();
  const wrong = await page.evaluate(async (vectors) => {
    const m = await import('/explorer/verify.js');
    const out = [];
    for (const v of vectors) {
      const key = await m.parseWitnessKey(v.vkey);
      const note = `${v.body}\n${v.line}\n`;
      const valid = await m.verifyCosignatures(note, v.body, [key], 1);
      if (valid.length !== 1 || valid[0].name !== v.name || valid[0].time !== v.time) out.push(v.name);
      const bent = `${v.body.replace('\n', 'x\n')}\n${v.line}\n`;
      try {
        await m.verifyCosignatures(bent, v.body.replace('\n', 'x\n'), [key], 1);
        out.push(`${v.name} (altered body accepted)`);
      } catch {
        // refused, as it must be
      }
      try {
        await m.verifyCosignatures(note, v.body, [key, key], 2);
        out.push(`${v.name} (one key given twice made a quorum of two)`);
      } catch (e) {
        if (!String(e.message).includes('more than once')) out.push(`${v.name} (${e.message})`);
      }
    }
    return out;
  }, cfg.cosignature_vectors);
  if (wrong.length) throw new Error(`failed: ${wrong.join(', ')}`);
  return `${cfg.cosignature_vectors.length} vectors`;
});

// The known-answer vectors (tests/vectors/receipts/receipts.json), through verify.js as the
// page loads it: each must get the verdict and the failure code the library gives it.
if (cfg.receipt_vectors) {
  await check('verify.js gives every receipt vector its verdict and code', async () => {
    await go('#/verify');
    await page.locator('#verify-button').waitFor();
    const got = await page.evaluate(async (vectors) => {
      const m = await import('/explorer/verify.js');
      const out = [];
      for (const v of vectors) {
        const r = await m.verifyReceipt(v.receipt, v.key);
        out.push({ name: v.name, valid: r.valid, code: r.code });
      }
      return out;
    }, cfg.receipt_vectors);
    const wrong = cfg.receipt_vectors
      .map((v, i) => ({ want: v, got: got[i] }))
      .filter(({ want, got }) => got.valid !== want.valid || got.code !== want.code)
      .map(({ want, got }) => `${want.name}: got ${got.valid}/${got.code}, want ${want.valid}/${want.code}`);
    if (wrong.length) throw new Error(wrong.join('; '));
    return `${got.length} vectors`;
  });
}

if (cfg.other_key) {
  await check("good receipt under another log's key is INVALID", () =>
    verify(cfg.good_receipt, cfg.other_key, 'invalid'),
  );
}

await check('deep link #/verify/N loads the receipt', async () => {
  await go(`#/verify/${cfg.entry}`);
  await page.waitForFunction(() => {
    const r = document.getElementById('receipt');
    return r !== null && r.value.startsWith('c2sp.org/tlog-proof@v1');
  });
  return verify(await page.inputValue('#receipt'), cfg.verifier_key, 'valid');
});

await check('no console errors (CSP violations, script errors)', async () => {
  if (consoleErrors.length) throw new Error(consoleErrors.join(' | '));
});

await context.close();
rmSync(profile, { recursive: true, force: true });
console.log(`explorer.mjs: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
