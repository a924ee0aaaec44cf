// Drives the tiny SMART app (tests/browser/app) through fhirlead's sign-in, patient picker and consent
// pages in a real headless Chromium (Debian's, through playwright-core), one browser context per flow.
//
//   node smart-launch.mjs '<json>'
//
// where <json> is {"flows": [{"name": "ehr", "url": "<launch URL>", "username": "…", "password": "…",
// "patient": "<id to pick, standalone only>"}, …], "timeoutMs": 20000}. Chromium is $CHROMIUM or
// /usr/bin/chromium. Prints one JSON object: {"<name>": {"result": {…}} or {"error": "…"}, with what the
// browser saw (console messages, failed requests, the last URL and page text) to explain a failure}.
import { chromium } from "playwright-core";

const config = JSON.parse(process.argv[2] || "{}");
const timeout = config.timeoutMs || 20000;
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const ARGS = [
  "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
];

async function runFlow(browser, flow) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(timeout);
  const seen = { console: [], failedRequests: [], steps: [] };
  page.on("console", (message) => {
    if (message.type() === "error" || message.type() === "warning") {
      seen.console.push(`${message.type()}: ${message.text()}`);
    }
  });
  page.on("pageerror", (error) => seen.console.push(`pageerror: ${error.message}`));
  page.on("requestfailed", (request) => {
    seen.failedRequests.push(`${request.method()} ${request.url()}: ${request.failure()?.errorText}`);
  });
  try {
    await page.goto(flow.url);
    await page.waitForSelector("input[name=username]");
    seen.steps.push("sign-in");
    await page.fill("input[name=username]", flow.username);
    await page.fill("input[name=password]", flow.password);
    await Promise.all([page.waitForNavigation(), page.click("form button[type=submit]")]);
    if (await page.locator("input[name=patient]").count()) {
      seen.steps.push("picker");
      seen.offered = await page.locator("input[name=patient]").evaluateAll((inputs) => inputs.map((i) => i.value));
      await page.check(`input[name=patient][value="${flow.patient}"]`);
      await Promise.all([page.waitForNavigation(), page.click("form button[type=submit]")]);
    }
    await page.waitForSelector("button[name=decision][value=allow]");
    seen.steps.push("consent");
    seen.consentScopes = await page.locator("input[name=scope]").evaluateAll((inputs) => inputs.map((i) => i.value));
    await page.click("button[name=decision][value=allow]");
    await page.waitForSelector("#result:not(:empty), #error:not(:empty)");
    seen.steps.push("app");
    const error = await page.textContent("#error");
    if (error) {
      return { error, ...seen, url: page.url() };
    }
    return { result: JSON.parse(await page.textContent("#result")), ...seen, url: page.url() };
  } catch (error) {
    let text = "";
    try {
      text = (await page.textContent("body")) || "";
    } catch {
      // the page is gone
    }
    return { error: String(error.message || error), ...seen, url: page.url(), pageText: text.slice(0, 2000) };
  } finally {
    await context.close();
  }
}

const browser = await chromium.launch({ executablePath, headless: true, args: ARGS, timeout });
const outcome = {};
try {
  for (const flow of config.flows || []) {
    outcome[flow.name] = await runFlow(browser, flow);
  }
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(outcome) + "\n");
