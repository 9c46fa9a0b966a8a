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
  const pipelines = document.querySelector('#pipelines tbody');
  every(2000, async () => {
    const list = await api('GET', '/v1/pipelines');
    pipelines.replaceChildren(
      ...list.map((p) => {
        const last = p.lastRun;
        return h(
          'tr',
          { 'data-pipeline': p.name },
          h('td', {}, h('a', { href: `/pipelines/${encodeURIComponent(p.name)}` }, p.name)),
          h('td', {}, p.source.branches.join(', ')),
          h('td', {}, p.stages.join(' → ')),
          h('td', {}, p.environments.join(' → ')),
          h(
            'td',
            {},
            last
              ? h(
                  'a',
                  { href: runHref(p.name, last.n) },
                  `#${last.n} ${last.version}: `,
                  h('span', { class: `outcome-${last.state}` }, runState(last)),
                )
              : '',
          ),
        );
      }),
    );
    if (list.length === 0) pipelines.append(h('tr', {}, h('td', { colspan: 5 }, 'No pipelines configured.')));
  });
}

// Pipelines: a pipeline's runs, and one run's steps live.
const TERMINAL_RUN = ['done', 'failed', 'cancelled', 'superseded', 'interrupted'];
const runHref = (pipeline, n) => `/pipelines/${encodeURIComponent(pipeline)}/runs/${n}`;
const runState = (run) => (run.state === 'waiting' ? 'waiting for promote' : run.state);
const took = (from, to) => {
  if (!from) return '';
  const ms = (to ? Date.parse(to) : Date.now()) - Date.parse(from);
  return ms < 60_000
    ? `${(ms / 1000).toFixed(1)} s`
    : `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
};
const firstLine = (text) => (text ?? '').split('\n')[0].slice(0, 120);

function pipelinePage() {
  const name = document.body.dataset.pipeline;
  const base = `/v1/pipelines/${encodeURIComponent(name)}`;
  let current = null;

  every(1000, async () => {
    const [pipelines, runs] = await Promise.all([
      api('GET', '/v1/pipelines'),
      api('GET', `${base}/runs?limit=30`),
    ]);
    const p = pipelines.find((x) => x.name === name);
    if (p) {
      $('pipeline-summary').textContent =
        `${p.source.repo} · branches ${p.source.branches.join(', ')} · stages ${p.stages.join(' → ')} · deploys ${p.environments.join(' → ')}`;
    }
    current = runs.find((r) => !TERMINAL_RUN.includes(r.state)) ?? null;
    $('cancel-run').disabled = current === null;
    $('cancel-run').textContent = current ? `Cancel run #${current.n}` : 'Cancel the run in progress';
    document
      .querySelector('#runs tbody')
      .replaceChildren(
        ...runs.map((r) =>
          h(
            'tr',
            { 'data-n': r.n, 'data-state': r.state },
            h('td', {}, h('a', { href: runHref(name, r.n) }, `#${r.n}`)),
            h('td', { class: `outcome-${r.state}` }, runState(r)),
            h('td', {}, h('code', { title: r.commit }, r.version)),
            h('td', {}, r.branch),
            h('td', { class: 'message' }, firstLine(r.message)),
            h('td', {}, r.trigger.actor),
            h('td', {}, when(r.startedAt ?? r.createdAt)),
            h('td', {}, took(r.startedAt, r.endedAt)),
          ),
        ),
      );
    if (runs.length === 0) {
      document.querySelector('#runs tbody').append(h('tr', {}, h('td', { colspan: 8 }, 'No runs yet.')));
    }
  });

  $('run-pipeline').addEventListener('click', async () => {
    if (
      !(await confirmAction(
        `Run pipeline ${name} on the head of its branch? Its stages run, then it deploys.`,
        'Run',
      ))
    )
      return;
    try {
      const run = await api('POST', `${base}/runs`, {});
      location.assign(runHref(name, run.n));
    } catch (err) {
      notify(`Run failed: ${err.message}`, 'error');
    }
  });
  $('cancel-run').addEventListener('click', async () => {
    if (!current) return;
    const n = current.n;
    if (
      !(await confirmAction(
        `Cancel run #${n} of ${name}? A stage running is killed; a deployment not switched yet is aborted.`,
        'Cancel run',
      ))
    )
      return;
    try {
      const run = await api('POST', `${base}/cancel`, { run: n });
      notify(`Run #${n}: ${runState(run)}`);
    } catch (err) {
      notify(`Cancel failed: ${err.message}`, 'error');
    }
  });
}

function runPage() {
  const name = document.body.dataset.pipeline;
  const n = Number(document.body.dataset.run);
  const base = `/v1/pipelines/${encodeURIComponent(name)}`;
  let run = null;
  let source = null;
  /** The stage whose log is shown, and whether it had ended when last fetched. */
  const log = { stage: null, final: false, loading: false };

  function stepItem(step, i) {
    const parts = [
      h('span', { class: 'step-name' }, step.kind === 'stage' ? step.name : `${step.kind} ${step.name}`),
      ' ',
      h('span', { class: 'step-status' }, step.state),
    ];
    if (step.exitCode !== undefined) parts.push(`, exit ${step.exitCode ?? 'killed'}`);
    if (step.ms !== undefined) parts.push(` (${(step.ms / 1000).toFixed(1)} s)`);
    if (step.kind === 'artifact' && run.artifact) parts.push(`: kept in ${run.artifact}`);
    if (step.kind === 'deploy') {
      parts.push(' ');
      parts.push(
        h(
          'a',
          { href: `/services/${encodeURIComponent(step.service)}`, class: 'service-link' },
          step.deployment ? `${step.service}, deployment #${step.deployment}` : step.service,
        ),
      );
    }
    if (step.detail) parts.push(h('span', { class: 'step-detail' }, `: ${step.detail}`));
    if (step.kind === 'stage') {
      parts.push(
        ' ',
        h(
          'button',
          {
            type: 'button',
            class: 'quiet small',
            'data-log': step.name,
            'aria-label': `Log of stage ${step.name}`,
          },
          'Log',
        ),
      );
    }
    return {
      attrs: {
        'data-i': i,
        'data-kind': step.kind,
        'data-name': step.name,
        'data-state': step.state,
        'data-status': step.state,
      },
      parts,
    };
  }

  function render() {
    $('run-summary').replaceChildren(
      h('span', { class: `outcome-${run.state}`, id: 'run-state' }, runState(run)),
      ` · ${run.version} on ${run.branch}${run.error ? `: ${run.error.message}` : ''}`,
    );
    const facts = [
      ['Commit', h('code', {}, run.commit)],
      ['Branch', run.branch],
      ['Message', run.message ?? ''],
      ['Author', run.author ?? ''],
      ['Triggered by', `${run.trigger.actor} (${run.trigger.kind})`],
      ['Queued', when(run.createdAt)],
      ['Started', when(run.startedAt)],
      ['Ended', when(run.endedAt)],
      ['Took', took(run.startedAt, run.endedAt)],
    ];
    if (run.supersededBy)
      facts.push([
        'Superseded by',
        h('a', { href: runHref(name, run.supersededBy) }, `run #${run.supersededBy}`),
      ]);
    $('run-facts').replaceChildren(...facts.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));

    // Steps are updated in place (not replaced), so the live region announces only what changed.
    const list = $('run-steps');
    run.steps.forEach((step, i) => {
      const { attrs, parts } = stepItem(step, i);
      let li = list.querySelector(`li[data-i="${i}"]`);
      if (!li) {
        li = h('li', { class: 'step' });
        list.append(li);
      }
      for (const [k, v] of Object.entries(attrs)) li.setAttribute(k, String(v));
      li.replaceChildren(...parts);
    });

    const waiting =
      run.state === 'waiting'
        ? run.steps.find((s) => s.kind === 'deploy' && s.state === 'waiting')
        : undefined;
    $('run-promote').disabled = !waiting;
    $('run-abort').disabled = !waiting;
    $('run-promote').dataset.service = waiting?.service ?? '';
    $('gate').textContent = waiting ? `${waiting.service} is verified and waits for promote.` : '';
    $('run-cancel').disabled = TERMINAL_RUN.includes(run.state);
    if (log.stage && !log.final) showLog(log.stage);
  }

  async function showLog(stage) {
    if (log.loading) return;
    const step = run?.steps.find((s) => s.kind === 'stage' && s.name === stage);
    log.stage = stage;
    log.final = Boolean(step && step.state !== 'running');
    log.loading = true;
    $('stage-log-name').textContent =
      `Stage ${stage}${step ? ` (${step.state}${step.exitCode === undefined ? '' : `, exit ${step.exitCode ?? 'killed'}`})` : ''}`;
    try {
      const res = await fetch(`${base}/runs/${n}/logs?stage=${encodeURIComponent(stage)}`, {
        credentials: 'same-origin',
      });
      if (res.status === 401) return loginAgain();
      const text = await res.text();
      $('stage-log').textContent = res.ok
        ? text || '(no output)'
        : `[${JSON.parse(text)?.error?.message ?? `HTTP ${res.status}`}]`;
    } catch (err) {
      $('stage-log').textContent = `[${err.message}]`;
    } finally {
      log.loading = false;
    }
  }
  $('run-steps').addEventListener('click', (e) => {
    const button = e.target.closest('button[data-log]');
    if (button) showLog(button.dataset.log).then(() => $('stage-log').focus());
  });

  // The run's record arrives whole on every change; a dropped stream is opened again and starts
  // with the record as it is then, so nothing is missed.
  function follow() {
    source?.close();
    const es = new EventSource(`${base}/runs/${n}/events`);
    source = es;
    es.addEventListener('run', (e) => {
      run = JSON.parse(e.data);
      render();
    });
    es.addEventListener('end', () => {
      es.close();
      if (log.stage) showLog(log.stage);
    });
    es.addEventListener('error', () => {
      if (source !== es) return;
      es.close();
      if (run && TERMINAL_RUN.includes(run.state)) return;
      setTimeout(() => {
        if (source === es) follow();
      }, 1000);
    });
  }
  follow();

  async function act(question, okLabel, method, path, body, done) {
    if (!(await confirmAction(question, okLabel))) return;
    try {
      const result = await api(method, path, body);
      notify(done(result));
    } catch (err) {
      notify(`${okLabel} failed: ${err.message}`, 'error');
    }
  }
  $('run-promote').addEventListener('click', () => {
    const svc = $('run-promote').dataset.service;
    if (!svc) return;
    act(
      `Promote ${svc} ${run.version}? Traffic switches to it.`,
      'Promote',
      'POST',
      `/v1/services/${encodeURIComponent(svc)}/promote`,
      {},
      (d) => `Promote: ${svc} deployment #${d.n} goes on`,
    );
  });
  $('run-abort').addEventListener('click', () => {
    const svc = $('run-promote').dataset.service;
    if (!svc) return;
    act(
      `Abort the deployment of ${svc} ${run.version}? The live slot keeps serving and the run fails.`,
      'Abort',
      'POST',
      `/v1/services/${encodeURIComponent(svc)}/abort`,
      {},
      (d) => `Abort: ${svc} deployment #${d.n} aborted`,
    );
  });
  $('run-cancel').addEventListener('click', () =>
    act(
      `Cancel run #${n} of ${name}? A stage running is killed; a deployment not switched yet is aborted.`,
      'Cancel run',
      'POST',
      `${base}/cancel`,
      { run: n },
      (r) => `Run #${n}: ${runState(r)}`,
    ),
  );
}

// A service: its slots, traffic, the deployment under way, history, logs and the actions.
function service() {
  const svc = document.body.dataset.service;
  const base = `/v1/services/${encodeURIComponent(svc)}`;
  let status = null;
  let history = [];
  let releases = [];
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
    // A preview link opens the idle slot the preview route serves: verifying, at the gate, or warm.
    $('preview-link').disabled = !['blue', 'green'].some(
      (s) => s !== live && ['verifying', 'warm'].includes(status.slots[s]?.state),
    );
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
    // Releases to roll back to: only those that served users (the API says which), newest first.
    // One that never went live is listed disabled with the reason, so it is plain why it is missing.
    const select = $('rollback-to');
    const chosen = select.value;
    const options = [h('option', { value: '' }, 'the warm slot')];
    for (const r of releases) {
      if (r.running === 'live') continue;
      options.push(
        r.target
          ? h('option', { value: r.n }, `release ${r.n} (${r.version})`)
          : h(
              'option',
              { value: r.n, disabled: true, title: r.why ?? '' },
              `release ${r.n} (${r.version}): never went live`,
            ),
      );
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
      [history, releases] = await Promise.all([
        api('GET', `${base}/deployments?limit=20`),
        api('GET', `${base}/releases`),
      ]);
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
  $('preview-link').addEventListener('click', async () => {
    try {
      const grant = await api('POST', `${base}/previews`, {});
      const out = $('preview-url');
      out.value = grant.link;
      out.hidden = false;
      out.select();
      notify(
        `Preview link for ${svc} ${grant.version} (${grant.slot}), valid until ${when(grant.expiresAt)}`,
      );
    } catch (err) {
      notify(`Preview link failed: ${err.message}`, 'error');
    }
  });
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
if (document.body.dataset.page === 'pipeline') pipelinePage();
if (document.body.dataset.page === 'run') runPage();
