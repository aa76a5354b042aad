// Drives booking-service's Swagger UI in Debian's Chromium, as a user would:
// POST /api/flights with the sample body ("Try it out" -> "Execute") must show a
// live 201 with the booking (PENDING_PAYMENT); GET /api/flights/{id} must then show
// its status change to CONFIRMED (payment-service's answer, back through the
// second queue); POST /api/flights/{id}/cancel a live 200, CANCELLED; GET
// /api/flights a 401 until the operator token is given with "Authorize"; and GET
// /api/outbox a live 200 with a page of events.
// Run by scripts/browser-test.sh: `node --test swagger.test.mjs` with BOOKING_URL
// pointing at a running booking-service. Screenshots go to .local/artifacts/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const ARTIFACTS = process.env.ARTIFACTS_DIR ?? join(ROOT, ".local/artifacts");
const BOOKING_URL = (process.env.BOOKING_URL ?? "http://127.0.0.1:8080").replace(/\/$/, "");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
// The flags that work on our machines (shared/LOCAL-STACK.md); Playwright adds --headless.
const CHROMIUM_FLAGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];
// The body of the AWS sample's `POST /api/flights`.
const SAMPLE_BODY = {
  departureAirport: "Paris",
  arrivalAirport: "London",
  departureDateTime: "2023-09-01T08:00:00.000Z",
  arrivalDateTime: "2023-09-01T08:15:00.000Z",
};
const STEP_TIMEOUT = 20_000;

let profileDir;
let context;
let page;
let pageHeaders;
// What the browser blocked under the page's Content-Security-Policy.
const cspViolations = [];
/** The flight booked through Swagger UI by the first test. */
let bookedId;

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  profileDir = mkdtempSync(join(tmpdir(), "outbox-chromium-")); // a new, empty user-data-dir
  context = await chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_FLAGS,
    viewport: { width: 1280, height: 1000 },
    timeout: 60_000,
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(STEP_TIMEOUT);
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  page.on("console", (message) => {
    if (/Content Security Policy/i.test(message.text())) cspViolations.push(message.text());
  });
  const response = await page.goto(`${BOOKING_URL}/swagger-ui/index.html`);
  assert.equal(response?.status(), 200, "Swagger UI's index.html should load");
  pageHeaders = response.headers();
  await page.locator(".swagger-ui .info .title").waitFor();
});

after(async () => {
  await context?.close();
  if (profileDir) rmSync(profileDir, { recursive: true, force: true });
});

/** Expands an operation, clicks "Try it out"; returns its block. */
async function open(operationId, label) {
  const block = page.locator(`.opblock[id$="-${operationId}"]`);
  await block.waitFor();
  const summary = block.locator(".opblock-summary");
  assert.match((await summary.innerText()).replace(/\s+/g, " "), label, `the operation ${operationId}`);
  await summary.locator(".opblock-summary-control").click();
  await block.locator("button.try-out__btn").click();
  return block;
}

/** Clicks "Execute"; returns the live response's status and body text. */
async function execute(block) {
  await block.locator("button.execute").click();
  const live = block.locator(".live-responses-table tbody tr.response");
  await live.waitFor();
  const status = (await live.locator(".response-col_status").innerText()).trim();
  const body = await live.locator(".response-col_description pre.microlight").first().innerText();
  return { status, body, live };
}

/** Screenshots the operation from its summary down to the live response (the
 *  documented responses below it would make the image unreadably long). */
async function screenshot(block, name) {
  const path = join(ARTIFACTS, name);
  const live = block.locator(".live-responses-table");
  await live.scrollIntoViewIfNeeded();
  const scrollY = await page.evaluate(() => window.scrollY);
  const top = await block.boundingBox();
  const bottom = await live.boundingBox();
  const y = top.y + scrollY;
  const clip = { x: top.x, y, width: top.width, height: bottom.y + scrollY + bottom.height + 12 - y };
  await page.screenshot({ path, fullPage: true, clip });
  console.log(`screenshot: ${path}`);
}

test("POST /api/flights in Swagger UI books a flight: live 201 with the booking", { timeout: 60_000 }, async () => {
  const block = await open("book_flight", /POST\s*\/api\/flights/);

  // Swagger UI fills the editor from the schema's example; type the AWS sample if it did not.
  const editor = block.locator("textarea.body-param__text");
  await editor.waitFor();
  let body;
  try {
    body = JSON.parse(await editor.inputValue());
  } catch {
    body = null;
  }
  const isSample = body && Object.entries(SAMPLE_BODY).every(([k, v]) => body[k] === v);
  if (!isSample) {
    console.log(`the editor held ${JSON.stringify(body)}: typing the AWS sample body`);
    await editor.fill(JSON.stringify(SAMPLE_BODY, null, 2));
  }
  const sent = JSON.parse(await editor.inputValue());
  assert.deepEqual(
    Object.fromEntries(Object.keys(SAMPLE_BODY).map((k) => [k, sent[k]])),
    SAMPLE_BODY,
    "the request body editor holds the sample body",
  );

  const { status, body: text, live } = await execute(block);
  await screenshot(block, "swagger-post-flights.png");
  assert.equal(status, "201", `the live response's status (body: ${text})`);
  const flight = JSON.parse(text);
  assert.match(flight.id, /^[0-9a-f-]{36}$/, "the booking has an id");
  assert.equal(flight.departureAirport, "Paris");
  assert.equal(flight.arrivalAirport, "London");
  assert.equal(flight.status, "PENDING_PAYMENT", "a new booking waits for its payment");
  bookedId = flight.id;
  const headers = await live.locator(".response-col_description").innerText();
  assert.match(headers, new RegExp(`location: /api/flights/${flight.id}`, "i"), "the Location header is shown");
  console.log(`booked flight ${flight.id}`);
});

/** Fills a path parameter of an opened operation. */
async function fillPath(block, name, value) {
  const input = block.locator(`tr[data-param-name="${name}"] input`);
  await input.waitFor();
  await input.fill(value);
}

test("GET /api/flights/{id} in Swagger UI shows the booking's status change to CONFIRMED", { timeout: 60_000 }, async () => {
  assert.ok(bookedId, "the first test booked a flight");
  const block = await open("get_flight", /GET\s*\/api\/flights\/\{id\}/);
  await fillPath(block, "id", bookedId);
  // payment-service approves it and says so on the payment events queue: Execute
  // again until the live response shows the new status (a few hundred ms).
  const deadline = Date.now() + 30_000;
  let flight;
  for (;;) {
    const { status, body } = await execute(block);
    assert.equal(status, "200", `the live response's status (body: ${body})`);
    flight = JSON.parse(body);
    if (flight.status !== "PENDING_PAYMENT") break;
    assert.ok(Date.now() < deadline, "the booking is still PENDING_PAYMENT after 30 s");
    await page.waitForTimeout(300);
  }
  await screenshot(block, "swagger-get-flight-confirmed.png");
  assert.equal(flight.status, "CONFIRMED", `the booking's status (${JSON.stringify(flight)})`);
  assert.equal(flight.payment.status, "APPROVED");
  console.log(`flight ${bookedId}: PENDING_PAYMENT -> CONFIRMED, payment ${flight.payment.id}`);
});

test("POST /api/flights/{id}/cancel in Swagger UI cancels the booking: live 200, CANCELLED", { timeout: 60_000 }, async () => {
  assert.ok(bookedId, "the first test booked a flight");
  const block = await open("cancel_flight", /POST\s*\/api\/flights\/\{id\}\/cancel/);
  await fillPath(block, "id", bookedId);
  const { status, body } = await execute(block);
  await screenshot(block, "swagger-post-cancel.png");
  assert.equal(status, "200", `the live response's status (body: ${body})`);
  const flight = JSON.parse(body);
  assert.equal(flight.id, bookedId);
  assert.equal(flight.status, "CANCELLED");
  assert.match(flight.cancelledAt, /^\d{4}-/, "the cancellation's time is shown");
  console.log(`flight ${bookedId}: CONFIRMED -> CANCELLED`);
});

test("Swagger UI works under its Content-Security-Policy: nothing blocked", async () => {
  const csp = pageHeaders["content-security-policy"] ?? "";
  assert.match(csp, /default-src 'self'/, "the page is served with a CSP");
  assert.equal(pageHeaders["x-frame-options"], "DENY");
  assert.equal(pageHeaders["x-content-type-options"], "nosniff");
  assert.deepEqual(cspViolations, [], "no resource or script blocked by the CSP");
});

test("GET /api/flights in Swagger UI: 401 until the operator token is given with \"Authorize\", then 200", { timeout: 60_000 }, async () => {
  const token = process.env.ADMIN_TOKEN;
  assert.ok(token, "browser-test.sh passes the system's ADMIN_TOKEN");
  const block = await open("list_flights", /GET\s*\/api\/flights/);
  let { status, body: text } = await execute(block);
  assert.equal(status, "401", `without the token (body: ${text})`);

  await page.locator(".swagger-ui .auth-wrapper button.authorize").click();
  const modal = page.locator(".swagger-ui .modal-ux");
  await modal.locator("input").first().fill(token);
  await modal.locator("button.modal-btn.auth.authorize").click();
  await modal.locator("button.modal-btn.btn-done").click();

  ({ status, body: text } = await execute(block));
  await screenshot(block, "swagger-get-flights.png");
  assert.equal(status, "200", `with the token (body: ${text})`);
  const flights = JSON.parse(text);
  assert.ok(flights.items.length >= 1, "the booking made above is listed");
});

// After "Authorize" above: the outbox listing is an operator action too.
test("GET /api/outbox in Swagger UI shows a live 200 with a page of unpublished events", { timeout: 60_000 }, async () => {
  const block = await open("list_outbox", /GET\s*\/api\/outbox/);
  const { status, body: text } = await execute(block);
  await screenshot(block, "swagger-get-outbox.png");
  assert.equal(status, "200", `the live response's status (body: ${text})`);
  const outbox = JSON.parse(text);
  assert.ok(Array.isArray(outbox.items), "the page has an items array");
  for (const e of outbox.items) {
    assert.match(e.eventId, /^[0-9a-f-]{36}$/, "each event has an eventId");
    assert.ok(["PENDING", "IN_FLIGHT", "BACKING_OFF", "PARKED"].includes(e.state), `state ${e.state}`);
    assert.equal(typeof e.attempts, "number");
  }
  assert.ok(!("nextCursor" in outbox) || outbox.nextCursor === null || typeof outbox.nextCursor === "string");
  console.log(`the outbox lists ${outbox.items.length} unpublished event(s)`);
});
