import type { Session } from '../api/sessions.js';

/**
 * The dashboard's HTML: server-rendered shells that /assets/app.js fills from the API. Nothing
 * inline (the Content-Security-Policy forbids inline script and style), every interpolated value
 * escaped, and the session's CSRF token in a meta tag for the script to send back.
 */

export function escapeHtml(value: string): string {
  return value.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!,
  );
}

function layout(options: {
  title: string;
  page: string;
  body: string;
  session?: Session;
  service?: string;
  /** data-* attributes of the body for the script (pipeline, run), escaped here. */
  data?: Record<string, string>;
}): string {
  const { title, page, body, session, service, data = {} } = options;
  const meta = session
    ? `<meta name="teal-csrf" content="${escapeHtml(session.csrf)}">\n<meta name="teal-actor" content="${escapeHtml(session.actor)}">\n`
    : '';
  const nav = session
    ? `<nav aria-label="Main"><a href="/services">Services</a></nav>
<button type="button" id="logout" class="quiet">Log out</button>`
    : '';
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
${meta}<title>${escapeHtml(title)} · teal</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/assets/style.css">
<script type="module" src="/assets/app.js"></script>
</head>
<body data-page="${page}"${service === undefined ? '' : ` data-service="${escapeHtml(service)}"`}${Object.entries(
    data,
  )
    .map(([k, v]) => ` data-${k}="${escapeHtml(v)}"`)
    .join('')}>
<a class="skip" href="#main">Skip to content</a>
<header class="top"><a class="brand" href="/">teal</a>${nav}</header>
<main id="main">
${body}
</main>
</body>
</html>
`;
}

export function loginPage(options: { next: string; error?: string }): string {
  const error = options.error
    ? `<p class="error" role="alert" id="login-error">${escapeHtml(options.error)}</p>\n`
    : '';
  return layout({
    title: 'Log in',
    page: 'login',
    body: `<h1>Log in</h1>
${error}<form class="login" method="post" action="/login">
<label for="token">API token</label>
<input id="token" name="token" type="password" required autocomplete="current-password" spellcheck="false">
<p class="hint">The daemon's token: <code>TEAL_TOKEN</code>, or the <code>token</code> file in its state dir.</p>
<label for="actor">Your name <span class="hint">(optional; recorded with your actions)</span></label>
<input id="actor" name="actor" type="text" maxlength="100" autocomplete="name">
<input type="hidden" name="next" value="${escapeHtml(options.next)}">
<button type="submit">Log in</button>
</form>`,
  });
}

export function overviewPage(session: Session): string {
  return layout({
    title: 'Services',
    page: 'overview',
    session,
    body: `<h1>Services</h1>
<p id="notice" class="notice" role="status" aria-live="polite"></p>
<div class="table-wrap">
<table id="services">
<thead><tr><th scope="col">Service</th><th scope="col">Live</th><th scope="col">Version</th><th scope="col">Last deployment</th></tr></thead>
<tbody></tbody>
</table>
</div>
<h2 id="pipelines-title">Pipelines</h2>
<div class="table-wrap">
<table id="pipelines" aria-labelledby="pipelines-title">
<thead><tr><th scope="col">Pipeline</th><th scope="col">Branches</th><th scope="col">Stages</th><th scope="col">Environments</th><th scope="col">Last run</th></tr></thead>
<tbody></tbody>
</table>
</div>`,
  });
}

const CONFIRM_DIALOG = `<dialog id="confirm" aria-labelledby="confirm-title">
<h2 id="confirm-title">Are you sure?</h2>
<p id="confirm-text"></p>
<div class="inline end">
<button type="button" id="confirm-cancel" class="quiet">Cancel</button>
<button type="button" id="confirm-ok">Confirm</button>
</div>
</dialog>`;

/** A pipeline: its runs, newest first, and the buttons to start one or cancel the one in progress. */
export function pipelinePage(session: Session, pipeline: string): string {
  const name = escapeHtml(pipeline);
  return layout({
    title: `Pipeline ${pipeline}`,
    page: 'pipeline',
    session,
    data: { pipeline },
    body: `<p class="crumbs"><a href="/services">Overview</a> › pipeline</p>
<h1>Pipeline ${name}</h1>
<p id="pipeline-summary" class="hint">Loading…</p>
<p id="notice" class="notice" role="status" aria-live="polite"></p>

<section aria-labelledby="pipeline-actions-title">
<h2 id="pipeline-actions-title">Actions</h2>
<div class="inline">
<button type="button" id="run-pipeline">Run the head of its branch</button>
<button type="button" id="cancel-run" disabled>Cancel the run in progress</button>
</div>
</section>

<section aria-labelledby="runs-title">
<h2 id="runs-title">Runs</h2>
<div class="table-wrap">
<table id="runs">
<thead><tr><th scope="col">#</th><th scope="col">State</th><th scope="col">Commit</th><th scope="col">Branch</th><th scope="col">Message</th><th scope="col">Triggered by</th><th scope="col">Started</th><th scope="col">Took</th></tr></thead>
<tbody></tbody>
</table>
</div>
</section>

${CONFIRM_DIALOG}`,
  });
}

/** One run: its steps live over server-sent events, a stage's log, cancel and the manual gate. */
export function runPage(session: Session, pipeline: string, run: number): string {
  const name = escapeHtml(pipeline);
  return layout({
    title: `${pipeline} run #${run}`,
    page: 'run',
    session,
    data: { pipeline, run: String(run) },
    body: `<p class="crumbs"><a href="/services">Overview</a> › <a href="/pipelines/${encodeURIComponent(pipeline)}">pipeline ${name}</a></p>
<h1>${name} run #${run}</h1>
<p id="run-summary" class="live-summary">Loading…</p>
<p id="notice" class="notice" role="status" aria-live="polite"></p>
<dl id="run-facts" class="facts"></dl>

<section aria-labelledby="run-actions-title">
<h2 id="run-actions-title">Actions</h2>
<div class="inline">
<button type="button" id="run-promote" disabled>Promote</button>
<button type="button" id="run-abort" disabled>Abort</button>
<button type="button" id="run-cancel" disabled>Cancel this run</button>
</div>
<p id="gate" class="hint"></p>
</section>

<section aria-labelledby="run-steps-title">
<h2 id="run-steps-title">Steps</h2>
<ol id="run-steps" class="steps" aria-live="polite" aria-relevant="additions text" aria-label="Steps"></ol>
</section>

<section aria-labelledby="stage-log-title">
<h2 id="stage-log-title">Stage log</h2>
<p id="stage-log-name" class="hint">Choose a stage’s “Log” button above.</p>
<pre id="stage-log" class="logs" role="log" tabindex="0" aria-label="Stage log"></pre>
</section>

${CONFIRM_DIALOG}`,
  });
}

export function servicePage(session: Session, service: string): string {
  const svc = escapeHtml(service);
  return layout({
    title: service,
    page: 'service',
    session,
    service,
    body: `<h1>${svc}</h1>
<p id="live-summary" class="live-summary">Loading…</p>
<p id="notice" class="notice" role="status" aria-live="polite"></p>

<section aria-labelledby="slots-title">
<h2 id="slots-title">Slots</h2>
<div id="slots" class="slots"></div>
</section>

<section aria-labelledby="actions-title">
<h2 id="actions-title">Actions</h2>
<div class="actions">
<form id="deploy-form" class="inline">
<label for="deploy-version">Version</label>
<input id="deploy-version" name="version" type="text" required autocomplete="off" spellcheck="false">
<button type="submit">Deploy</button>
</form>
<div class="inline">
<button type="button" id="promote" disabled>Promote</button>
<button type="button" id="abort" disabled>Abort</button>
</div>
<div class="inline">
<button type="button" id="preview-link" disabled title="A link to the idle slot through the public port, for a tester: it works for an hour">Preview link</button>
<input id="preview-url" type="text" readonly hidden aria-label="Preview link" spellcheck="false">
</div>
<form id="rollback-form" class="inline">
<label for="rollback-to">Roll back to</label>
<select id="rollback-to" name="to"><option value="">the warm slot</option></select>
<button type="submit">Roll back</button>
</form>
</div>
</section>

<section aria-labelledby="deployment-title">
<h2 id="deployment-title">Deployment</h2>
<p id="deployment-summary">None yet.</p>
<ol id="steps" class="steps" aria-live="polite" aria-relevant="additions" aria-label="Steps"></ol>
</section>

<section aria-labelledby="history-title">
<h2 id="history-title">History</h2>
<div class="table-wrap">
<table id="history">
<thead><tr><th scope="col">#</th><th scope="col">Kind</th><th scope="col">Version</th><th scope="col">Outcome</th><th scope="col">Who asked</th><th scope="col">When</th></tr></thead>
<tbody></tbody>
</table>
</div>
</section>

<section aria-labelledby="logs-title">
<h2 id="logs-title">Logs</h2>
<div class="inline">
<label for="log-slot">Slot</label>
<select id="log-slot"><option value="">live</option><option value="blue">blue</option><option value="green">green</option></select>
<button type="button" id="log-follow" aria-pressed="false">Follow logs</button>
</div>
<pre id="logs" class="logs" role="log" tabindex="0" aria-label="Instance logs"></pre>
</section>

${CONFIRM_DIALOG}`,
  });
}
