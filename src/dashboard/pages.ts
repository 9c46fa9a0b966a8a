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
}): string {
  const { title, page, body, session, service } = options;
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
<body data-page="${page}"${service === undefined ? '' : ` data-service="${escapeHtml(service)}"`}>
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
</div>`,
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

<dialog id="confirm" aria-labelledby="confirm-title">
<h2 id="confirm-title">Are you sure?</h2>
<p id="confirm-text"></p>
<div class="inline end">
<button type="button" id="confirm-cancel" class="quiet">Cancel</button>
<button type="button" id="confirm-ok">Confirm</button>
</div>
</dialog>`,
  });
}
