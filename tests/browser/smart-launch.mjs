// Drives the tiny SMART app (tests/browser/app) through fhirlead's sign-in, patient picker and consent
// pages in a real headless Chromium (Debian's, through playwright-core), one browser context per flow.
//
//   node smart-launch.mjs '<json>'
//
// where <json> is {"flows": [{"name": "ehr", "url": "<launch URL>", "username": "…", "password": "…",
// "patient": "<id to pick, standalone only>"}, …], "timeoutMs": 20000}. Chromium is $CHROMIUM or
// /usr/bin/chromium. Prints one JSON object: {"<name>": {"result": {…}} or {"error": "…"}, with what the
// browser saw (console messages, failed requests, the last URL and page text) to explain a failure}.
import { inPage, signIn, withBrowser } from "./browser.mjs";

const config = JSON.parse(process.argv[2] || "{}");
const timeout = config.timeoutMs || 20000;

async function runFlow(browser, flow) {
  return inPage(browser, timeout, async (page, seen) => {
    await signIn(page, seen, flow.url, flow.username, flow.password);
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
  });
}

await withBrowser(timeout, async (browser) => {
  const outcome = {};
  for (const flow of config.flows || []) {
    outcome[flow.name] = await runFlow(browser, flow);
  }
  return outcome;
});
