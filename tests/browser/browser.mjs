// What the browser scripts share (smart-launch.mjs, worklist.mjs): Debian's headless Chromium through
// playwright-core, one context per flow, a record of what the page saw (console errors and warnings,
// failed requests, steps), fhirlead's sign-in form, and the failure report (last URL and page text).
import { chromium } from "playwright-core";

const ARGS = [
  "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
];

// Runs `work(browser)` in Chromium ($CHROMIUM or /usr/bin/chromium) and prints its JSON result.
export async function withBrowser(timeout, work) {
  const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
  const browser = await chromium.launch({ executablePath, headless: true, args: ARGS, timeout });
  let outcome;
  try {
    outcome = await work(browser);
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(outcome) + "\n");
}

// Runs `steps(page, seen)` on a new page; on failure, what the browser saw explains it.
export async function inPage(browser, timeout, steps) {
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
    return await steps(page, seen);
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

// Opens `url` and signs in on fhirlead's sign-in page.
export async function signIn(page, seen, url, username, password) {
  await page.goto(url);
  await page.waitForSelector("input[name=username]");
  seen.steps.push("sign-in");
  await page.fill("input[name=username]", username);
  await page.fill("input[name=password]", password);
  await Promise.all([page.waitForNavigation(), page.click("form button[type=submit]")]);
}
