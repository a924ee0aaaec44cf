// Drives the care team's worklist app that fhirlead serves at /app/ (fhirlead/app) in a real headless Chromium
// (Debian's, through playwright-core): EHR launch, fhirlead's sign-in and consent pages, the worklist, and a
// click on one Task's "Complete" button.
//
//   node worklist.mjs '<json>'
//
// where <json> is {"url": "<EHR launch URL>", "username": "…", "password": "…", "complete": "<Task id>",
// "timeoutMs": 20000}. Prints one JSON object: {"before": {"<CareTeam id>": ["<Task id>", …]}, "after": {…},
// "dueBefore": {…}, "steps": […], "consentScopes": […], "status": "…", "csp": "…"} or {"error": "…"} with what
// the browser saw (console messages, failed requests, the last URL and page text) to explain a failure.
import { inPage, signIn, withBrowser } from "./browser.mjs";

const config = JSON.parse(process.argv[2] || "{}");
const timeout = config.timeoutMs || 20000;

async function worklist(page) {
  return page.evaluate(() => {
    const teams = {};
    const due = {};
    for (const section of document.querySelectorAll("section[data-team-id]")) {
      const rows = [...section.querySelectorAll("li[data-task-id]")];
      teams[section.dataset.teamId] = rows.map((row) => row.dataset.taskId);
      due[section.dataset.teamId] = rows.map((row) => row.dataset.due);
    }
    return { teams, due };
  });
}

async function run(browser) {
  return inPage(browser, timeout, async (page, seen) => {
    await signIn(page, seen, config.url, config.username, config.password);
    await page.waitForSelector("button[name=decision][value=allow]");
    seen.steps.push("consent");
    seen.consentScopes = await page.locator("input[name=scope]").evaluateAll((inputs) => inputs.map((i) => i.value));
    const [appPage] = await Promise.all([
      page.waitForResponse((r) => r.url().includes("/app/index.html")),
      page.click("button[name=decision][value=allow]"),
    ]);
    seen.csp = appPage.headers()["content-security-policy"];
    await page.waitForSelector("#worklist[data-state=ready], #worklist[data-state=error]");
    seen.steps.push("worklist");
    const error = await page.textContent("#error");
    if (error) {
      return { error, ...seen, url: page.url() };
    }
    const before = await worklist(page);
    await page.getByRole("button", { name: new RegExp(`^Complete: `) }).first().waitFor();
    await page.click(`button[data-complete="${config.complete}"]`);
    await page.waitForFunction((id) => {
      const list = document.querySelector("#worklist");
      return list.dataset.state !== "loading" && !document.querySelector(`li[data-task-id="${id}"]`);
    }, config.complete);
    seen.steps.push("completed");
    const after = await worklist(page);
    return {
      before: before.teams, dueBefore: before.due, after: after.teams, status: await page.textContent("#status"),
      pageError: await page.textContent("#error"), ...seen, url: page.url(),
    };
  });
}

await withBrowser(timeout, run);
