// The care team's worklist (fhirlead/app, docs/worklist.md): a SMART App Launch 2.2.0 EHR-launch app using the
// SMART JavaScript client (window.FHIR, fhir-client.js). launch.html asks for authorization; index.html, the
// redirect page, lists the open Tasks of every active CareTeam the signed-in user is on (CareTeam/[id]/$worklist)
// and completes a Task with a versioned update (PUT with If-Match). Everything goes through the FHIR API with
// the user's token; the page builds its DOM with textContent only (no HTML from data).
"use strict";

const CLIENT_ID = "fhirlead-worklist";
const SCOPES = "launch openid fhirUser user/CareTeam.rs user/Task.rus user/Patient.rs";
const GAP_CODE = "CAREGAP";

function element(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value !== undefined && value !== null) {
      node.setAttribute(name, value);
    }
  }
  for (const child of children) {
    if (child !== undefined && child !== null) {
      node.append(child);
    }
  }
  return node;
}

function say(text) {
  document.getElementById("status").textContent = text;
}

function fail(error) {
  document.getElementById("error").textContent = String((error && error.message) || error);
  const list = document.getElementById("worklist");
  if (list) {
    list.dataset.state = "error";
    list.setAttribute("aria-busy", "false");
  }
  say("");
}

function missingClient() {
  fail("The SMART client library (fhir-client.js) is not installed on this server: run `fhirlead app-assets` "
    + "there, then reload this page.");
}

function humanName(patient) {
  const name = (patient && patient.name && patient.name[0]) || {};
  const text = name.text || [...(name.given || []), name.family || ""].join(" ").trim();
  return text || (patient ? `Patient/${patient.id}` : "Unknown patient");
}

function dueOf(task) {
  const end = task.restriction && task.restriction.period && task.restriction.period.end;
  return end ? end.slice(0, 10) : null;
}

function isGap(task) {
  return ((task.code && task.code.coding) || []).some((c) => c.code === GAP_CODE);
}

function title(task) {
  return task.description || (task.code && (task.code.text || (task.code.coding || [])[0]?.display))
    || `Task/${task.id}`;
}

function taskItem(task, onComplete) {
  const today = new Date().toISOString().slice(0, 10);
  const due = dueOf(task);
  const overdue = due !== null && due < today;
  const label = `Complete: ${title(task)}`;
  const button = element("button", { type: "button", "data-complete": task.id, "aria-label": label }, "Complete");
  button.addEventListener("click", () => onComplete(task, button));
  const what = element("div", {},
    isGap(task) ? element("span", { class: "badge gap" }, "Care gap") : null,
    task.priority && task.priority !== "routine"
      ? element("span", { class: `badge priority-${task.priority}` }, task.priority) : null,
    element("span", { class: "title" }, title(task)),
    element("div", { class: "meta" }, `${task.status}${task.owner ? ` · ${task.owner.display
      || task.owner.reference}` : " · unassigned"}`));
  const when = element("div", { class: "due" }, due ? (overdue ? `Overdue ${due}` : `Due ${due}`) : "No due date");
  return element("li", { class: `task${overdue ? " overdue" : ""}`, "data-task-id": task.id,
    "data-due": due || "" }, when, what, button);
}

function teamSection(team, bundle, onComplete) {
  const entries = bundle.entry || [];
  const tasks = entries.filter((e) => e.search && e.search.mode === "match").map((e) => e.resource);
  const patients = entries.filter((e) => e.search && e.search.mode === "include").map((e) => e.resource);
  const patient = patients.find((p) => `Patient/${p.id}` === (team.subject && team.subject.reference));
  const gaps = tasks.filter(isGap).length;
  const heading = `${humanName(patient)}${team.name ? ` — ${team.name}` : ""}`;
  const headingId = `team-${team.id}`;
  const list = element("ol", { class: "tasks", "aria-labelledby": headingId });
  tasks.forEach((task) => list.append(taskItem(task, onComplete)));
  return element("section", { class: "team", "data-team-id": team.id, "aria-labelledby": headingId },
    element("h2", { id: headingId }, heading),
    element("p", { class: "summary" }, `${gaps} open care gap${gaps === 1 ? "" : "s"}, `
      + `${tasks.length - gaps} other open task${tasks.length - gaps === 1 ? "" : "s"}`),
    tasks.length ? list : element("p", {}, "Nothing open."));
}

async function complete(client, task, button) {
  button.disabled = true;
  say(`Completing “${title(task)}”…`);
  const done = { ...task, status: "completed", lastModified: new Date().toISOString() };
  delete done.meta;
  try {
    await client.request({
      url: `Task/${encodeURIComponent(task.id)}`,
      method: "PUT",
      body: JSON.stringify(done),
      headers: { "Content-Type": "application/fhir+json", "If-Match": `W/"${task.meta.versionId}"` },
    });
  } catch (error) {
    button.disabled = false;
    const status = error && error.status;
    fail(status === 412 ? "Someone else changed this task meanwhile: refresh and try again." : error);
    return;
  }
  await load(client, `Completed “${title(task)}”.`);
}

async function load(client, message) {
  const list = document.getElementById("worklist");
  list.dataset.state = "loading";
  list.setAttribute("aria-busy", "true");
  const user = client.getFhirUser();
  if (!user) {
    throw new Error("The token names no user (fhirUser): launch the app from the EHR as a practitioner.");
  }
  document.getElementById("user").textContent = `Signed in as ${user}`;
  const teams = await client.request(
    `CareTeam?participant=${encodeURIComponent(user)}&status=active&_count=100`, { flat: true, pageLimit: 0 });
  const sections = [];
  for (const team of teams.filter((t) => t.resourceType === "CareTeam")) {
    const bundle = await client.request(`CareTeam/${encodeURIComponent(team.id)}/$worklist`);
    sections.push(teamSection(team, bundle, (task, button) => complete(client, task, button).catch(fail)));
  }
  list.replaceChildren(...(sections.length ? sections : [element("p", {}, "You are on no active care team.")]));
  list.dataset.state = "ready";
  list.setAttribute("aria-busy", "false");
  document.getElementById("error").textContent = "";
  say(message || `${sections.length} care team${sections.length === 1 ? "" : "s"}.`);
}

function launch() {
  FHIR.oauth2.authorize({ clientId: CLIENT_ID, scope: SCOPES, redirectUri: "index.html" }).catch(fail);
}

async function worklist() {
  const client = await FHIR.oauth2.ready();
  const reload = document.getElementById("reload");
  reload.hidden = false;
  reload.addEventListener("click", () => load(client).catch(fail));
  await load(client);
}

document.addEventListener("DOMContentLoaded", () => {
  if (typeof window.FHIR === "undefined") {
    missingClient();
    return;
  }
  const page = document.body.dataset.page;
  if (page === "launch") {
    launch();
  } else {
    worklist().catch(fail);
  }
});
