// teal's dashboard: one hand-written module, no framework. The server renders each page's shell;
// this fills it from the same API the CLI uses, with the session cookie for reads and the page's
// CSRF token for every call that changes something. Data only ever goes into the page as text
// (textContent, never innerHTML), so a version string or log line cannot become markup.

const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.getAttribute('content') ?? '';
const csrf = meta('teal-csrf');
const actor = meta('teal-actor');
const $ = (id) => document.getElementById(id);

function loginAgain() {
  location.assign(`/login?next=${encodeURIComponent(location.pathname)}`);
}

async function api(method, path, body) {
  const headers = { accept: 'application/json' };
  if (method !== 'GET') {
    headers['x-teal-csrf'] = csrf;
    headers['x-teal-actor'] = actor;
    headers['content-type'] = 'application/json';
  }
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
  });
  if (res.status === 401) {
    loginAgain();
    throw new Error('the session ended: log in again');
  }
  const data = await res.json().catch(() => null);
  if (!res.ok) throw new Error(data?.error?.message ?? `HTTP ${res.status}`);
  return data;
}

/** h('li', { class: 'step' }, 'text', child): an element with attributes and text or element children. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

function notify(text, kind = 'info') {
  const el = $('notice');
  if (!el) return;
  el.textContent = text;
  el.className = `notice ${kind}`;
}

/** Runs fn now and then `ms` after each run ends, so a slow daemon never gets overlapping polls. */
function every(ms, fn) {
  let timer;
  const run = async () => {
    clearTimeout(timer);
    try {
      await fn();
    } catch (err) {
      notify(err.message, 'error');
    }
    timer = setTimeout(run, ms);
  };
  run();
  return run;
}

const when = (iso) => (iso ? new Date(iso).toLocaleString() : '');
const BEFORE_SWITCH = ['queued', 'starting', 'verifying', 'verified'];

/** A modal asking to confirm an action; resolves true only on the confirm button. */
function confirmAction(text, okLabel) {
  const dialog = $('confirm');
  $('confirm-text').textContent = text;
  $('confirm-ok').textContent = okLabel;
  dialog.returnValue = '';
  dialog.showModal();
  // Cancel takes the focus: Enter on an accidental open does nothing harmful.
  $('confirm-cancel').focus();
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
  });
}

function setupConfirm() {
  const dialog = $('confirm');
  if (!dialog) return;
  $('confirm-ok').addEventListener('click', () => dialog.close('ok'));
  $('confirm-cancel').addEventListener('click', () => dialog.close('cancel'));
}

function setupLogout() {
  $('logout')?.addEventListener('click', async () => {
    await fetch('/logout', { method: 'POST', headers: { 'x-teal-csrf': csrf }, credentials: 'same-origin' });
    location.assign('/login');
  });
}

// The overview: every service, its live colour and version, and how its last deployment went.
function overview() {
  const tbody = document.querySelector('#services tbody');
  every(2000, async () => {
    const services = await api('GET', '/v1/services');
    tbody.replaceChildren(
      ...services.map((s) => {
        const live = s.live ? s.slots[s.live] : null;
        const last = s.lastDeployment;
        return h(
          'tr',
          { 'data-service': s.service },
          h('td', {}, h('a', { href: `/services/${encodeURIComponent(s.service)}` }, s.service)),
          h('td', {}, s.live ? h('span', { class: `badge ${s.live}` }, s.live) : 'none'),
          h('td', {}, live?.version ?? ''),
          h('td', {}, last ? `#${last.n} ${last.kind} ${last.version ?? ''}: ${last.state}` : ''),
        );
      }),
    );
    if (services.length === 0) tbody.append(h('tr', {}, h('td', { colspan: 4 }, 'No services configured.')));
  });
}

// A service: its slots, traffic, the deployment under way, history, logs and the actions.
function service() {
  const svc = document.body.dataset.service;
  const base = `/v1/services/${encodeURIComponent(svc)}`;
  let status = null;
  let history = [];
  const rates = {};
  let lastSample = null;
  let historyKey = null;
  const stream = { n: null, source: null, received: 0 };

  function renderSlots() {
    if (!status) return;
    const live = status.live;
    const liveView = live ? status.slots[live] : null;
    $('live-summary').replaceChildren(
      ...(live
        ? [
            h('span', { class: `badge ${live}`, id: 'live-colour' }, live),
            ` is live with ${liveView.version}`,
          ]
        : ['Nothing is live yet: deploy a version.']),
    );
    $('slots').replaceChildren(
      ...['blue', 'green'].map((slot) => {
        const v = status.slots[slot];
        const isLive = live === slot;
        const r = rates[slot];
        return h(
          'article',
          {
            class: `slot slot-${slot}`,
            'data-slot': slot,
            'data-live': String(isLive),
            'aria-label': `${slot} slot`,
          },
          h('h3', {}, slot, isLive ? h('span', { class: `badge ${slot}` }, 'live') : null),
          h(
            'dl',
            { class: 'facts' },
            h('dt', {}, 'Version'),
            h('dd', { class: 'slot-version' }, v.version ?? '—'),
            h('dt', {}, 'State'),
            h('dd', { class: 'slot-state' }, v.state),
            h('dt', {}, 'Release'),
            h('dd', {}, v.release ?? '—'),
            h('dt', {}, 'Since'),
            h('dd', {}, when(v.since)),
            v.warmUntil ? [h('dt', {}, 'Warm until'), h('dd', {}, when(v.warmUntil))] : null,
            h('dt', {}, 'Requests'),
            h('dd', { class: 'slot-rate' }, r ? `${r.rps.toFixed(1)}/s` : '—'),
            h('dt', {}, 'Errors'),
            h('dd', { class: 'slot-errors' }, r ? `${(r.errorRate * 100).toFixed(1)}%` : '—'),
          ),
          v.instances.length
            ? h(
                'ul',
                { class: 'instances', 'aria-label': `${slot} instances` },
                v.instances.map((i) => h('li', {}, `${i.id} · ${i.host}:${i.port} · ${i.status}`)),
              )
            : h('p', { class: 'hint' }, 'No instances.'),
        );
      }),
    );
    const last = status.lastDeployment;
    $('promote').disabled = !(last && last.state === 'verified');
    $('abort').disabled = !(last && BEFORE_SWITCH.includes(last.state));
  }

  function renderHistory() {
    $('history')
      .querySelector('tbody')
      .replaceChildren(
        ...history.map((d) =>
          h(
            'tr',
            { 'data-n': d.n },
            h('td', {}, d.n),
            h('td', {}, d.kind),
            h('td', {}, `${d.fromVersion ? `${d.fromVersion} → ` : ''}${d.version ?? ''}`),
            h('td', { class: `outcome-${d.state}` }, d.state),
            h('td', {}, d.actor),
            h('td', {}, when(d.createdAt)),
          ),
        ),
      );
    // Releases to roll back to: each one a deployment of this history started, newest first.
    const select = $('rollback-to');
    const chosen = select.value;
    const liveRelease = status?.live ? status.slots[status.live].release : null;
    const seen = new Set();
    const options = [h('option', { value: '' }, 'the warm slot')];
    for (const d of history) {
      if (d.release === null || seen.has(d.release) || d.release === liveRelease) continue;
      seen.add(d.release);
      options.push(h('option', { value: d.release }, `release ${d.release} (${d.version})`));
    }
    select.replaceChildren(...options);
    select.value = [...select.options].some((o) => o.value === chosen) ? chosen : '';
  }

  async function refresh() {
    status = await api('GET', base);
    renderSlots();
    const last = status.lastDeployment;
    if (last && stream.n !== last.n) follow(last.n);
    const key = last ? `${last.n}:${last.state}` : '';
    if (key !== historyKey) {
      historyKey = key;
      history = await api('GET', `${base}/deployments?limit=20`);
      renderHistory();
    }
  }
  const refreshNow = every(1000, refresh);

  async function sampleTraffic() {
    const sample = await api('GET', `${base}/traffic`);
    if (lastSample) {
      const seconds = Math.max((sample.at - lastSample.at) / 1000, 0.001);
      for (const slot of ['blue', 'green']) {
        const now = sample.slots[slot];
        const before = lastSample.slots[slot];
        // A data plane that restarted starts its counters again from zero.
        const requests = Math.max(now.requests - before.requests, 0);
        const responses = Math.max(now.responses - before.responses, 0);
        const errors = Math.max(now.errors - before.errors, 0);
        rates[slot] = { rps: requests / seconds, errorRate: responses ? errors / responses : 0 };
      }
      renderSlots();
    }
    lastSample = sample;
  }
  every(2000, sampleTraffic);

  // The deployment's steps, live: the server sends every event from `from` on, then ends the stream
  // when the deployment ends. EventSource would reconnect from the start on its own, so a dropped
  // stream is reopened here from the last step received instead.
  function follow(n, from = 0) {
    stream.source?.close();
    if (stream.n !== n) {
      stream.n = n;
      stream.received = 0;
      $('steps').replaceChildren();
    }
    const summary = $('deployment-summary');
    const describe = (state) => {
      const last = status?.lastDeployment;
      return last && last.n === n
        ? `#${n}: ${last.kind} ${last.version ?? ''}, asked by ${last.actor}: ${state}`
        : `#${n}: ${state}`;
    };
    summary.textContent = describe(status?.lastDeployment?.n === n ? status.lastDeployment.state : '');
    const source = new EventSource(`${base}/deployments/${n}/events?from=${from}`);
    stream.source = source;
    source.addEventListener('step', (e) => {
      const ev = JSON.parse(e.data);
      stream.received++;
      $('steps').append(
        h(
          'li',
          { class: 'step', 'data-step': ev.step, 'data-status': ev.status },
          h('span', { class: 'step-name' }, ev.step),
          ' ',
          h('span', { class: 'step-status' }, ev.status),
          `: ${ev.message}`,
          ev.ms === undefined ? '' : ` (${ev.ms} ms)`,
        ),
      );
      // A switch or a drain changes the slots: show it now, not at the next poll.
      if (ev.step === 'switch' || ev.status !== 'started') refreshNow();
    });
    source.addEventListener('state', (e) => {
      summary.textContent = describe(JSON.parse(e.data).state);
    });
    source.addEventListener('end', (e) => {
      source.close();
      const d = JSON.parse(e.data);
      summary.textContent = `#${d.n}: ${d.kind} ${d.version ?? ''}, asked by ${d.actor}: ${d.state}`;
      refreshNow();
    });
    source.addEventListener('error', () => {
      if (stream.source !== source) return;
      source.close();
      setTimeout(() => {
        if (stream.source === source) follow(n, stream.received);
      }, 1000);
    });
  }

  async function act(question, okLabel, method, path, body) {
    if (!(await confirmAction(question, okLabel))) return;
    try {
      const result = await api(method, path, body);
      notify(`${okLabel}: deployment #${result.n} started (${when(result.createdAt)})`);
      // Promote and abort answer with the deployment already followed.
      if (result.n && result.n !== stream.n) follow(result.n);
      refreshNow();
    } catch (err) {
      notify(`${okLabel} failed: ${err.message}`, 'error');
    }
  }

  $('deploy-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const version = $('deploy-version').value.trim();
    if (!version) return;
    act(
      `Deploy ${svc} ${version}? It starts next to the live slot and takes traffic once verified.`,
      'Deploy',
      'POST',
      `${base}/deployments`,
      {
        version,
      },
    );
  });
  $('promote').addEventListener('click', () =>
    act(
      `Promote the verified release of ${svc}? Traffic switches to it.`,
      'Promote',
      'POST',
      `${base}/promote`,
      {},
    ),
  );
  $('abort').addEventListener('click', () =>
    act(`Abort the deployment of ${svc}? The live slot keeps serving.`, 'Abort', 'POST', `${base}/abort`, {}),
  );
  $('rollback-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const to = $('rollback-to').value;
    act(
      to
        ? `Roll ${svc} back to release ${to}?`
        : `Roll ${svc} back to the warm slot? Traffic switches at once.`,
      'Roll back',
      'POST',
      `${base}/rollback`,
      to ? { to: Number(to) } : {},
    );
  });

  // Logs follow over a streamed fetch (text, not SSE), aborted when stopped or the slot changes.
  let logs = null;
  const logsEl = $('logs');
  const button = $('log-follow');
  function stopLogs() {
    logs?.abort();
    logs = null;
    button.textContent = 'Follow logs';
    button.setAttribute('aria-pressed', 'false');
  }
  function append(text) {
    const atBottom = logsEl.scrollTop + logsEl.clientHeight >= logsEl.scrollHeight - 4;
    // Keep the last 200 KB: a page left following for a day must not grow without end.
    logsEl.textContent = (logsEl.textContent + text).slice(-200_000);
    if (atBottom) logsEl.scrollTop = logsEl.scrollHeight;
  }
  async function followLogs() {
    stopLogs();
    const controller = new AbortController();
    logs = controller;
    button.textContent = 'Stop';
    button.setAttribute('aria-pressed', 'true');
    logsEl.textContent = '';
    const slot = $('log-slot').value;
    try {
      const res = await fetch(`${base}/logs?follow=1&tail=100${slot ? `&slot=${slot}` : ''}`, {
        signal: controller.signal,
        credentials: 'same-origin',
      });
      if (res.status === 401) return loginAgain();
      if (!res.ok) {
        const data = await res.json().catch(() => null);
        throw new Error(data?.error?.message ?? `HTTP ${res.status}`);
      }
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        append(value);
      }
      append('\n[the log stream ended]\n');
    } catch (err) {
      if (err.name !== 'AbortError') append(`\n[${err.message}]\n`);
    } finally {
      if (logs === controller) stopLogs();
    }
  }
  button.addEventListener('click', () => (logs ? stopLogs() : followLogs()));
  $('log-slot').addEventListener('change', () => {
    if (logs) followLogs();
  });
}

setupConfirm();
setupLogout();
if (document.body.dataset.page === 'overview') overview();
if (document.body.dataset.page === 'service') service();
