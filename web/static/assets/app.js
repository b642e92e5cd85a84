// The try-it page: builds a POST /v1/thumbnails from the form, then follows
// the job on GET /v1/thumbnails/{id}/events, read with fetch() so that the
// Bearer header can go with it (an EventSource cannot send one).
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const KEY = 'thumbnailed.apiKey'; // sessionStorage only: gone with the tab
  const state = {
    file: null, previewURL: '', stream: null, job: null, history: [],
    deliveries: {}, outputsKey: null,
  };

  // ---- API key ----------------------------------------------------------
  function apiKey() {
    try { return sessionStorage.getItem(KEY) || ''; } catch { return ''; }
  }
  function setKey(k) {
    try {
      if (k) sessionStorage.setItem(KEY, k); else sessionStorage.removeItem(KEY);
    } catch { /* storage refused: the key is not kept */ }
  }
  function auth() {
    const k = apiKey();
    return k ? { Authorization: 'Bearer ' + k } : {};
  }
  function showKeyBox(why) {
    $('key-box').hidden = false;
    $('key-why').textContent = why;
    $('key-forget').hidden = !apiKey();
  }
  function askKey(status, p) {
    const code = (p && p.code) || 'unauthorized';
    showKeyBox(apiKey()
      ? `The API did not take the key (${status} ${code}). Enter another one and send again.`
      : `This service needs an API key (${status} ${code}). Enter yours and send again.`);
    $('key').focus();
  }

  // ---- small helpers ----------------------------------------------------
  function el(tag, props, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v == null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of kids.flat()) {
      if (c != null && c !== false) e.append(c.nodeType ? c : String(c));
    }
    return e;
  }
  const sleep = (ms, signal) => new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    if (signal) signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
  });
  function fmtBytes(n) {
    if (typeof n !== 'number') return '';
    const exact = n.toLocaleString('en') + ' bytes';
    if (n < 1024) return exact;
    const v = n < 1048576 ? (n / 1024).toFixed(1) + ' KiB' : (n / 1048576).toFixed(2) + ' MiB';
    return `${v} (${exact})`;
  }
  function fmtTime(s) {
    if (!s) return '';
    const d = new Date(s);
    return isNaN(d) ? s : d.toLocaleTimeString();
  }
  // link keeps only what the API hands out: an http(s) URL or a path.
  const link = (u) => (typeof u === 'string' && /^(https?:\/\/|\/(?!\/))/i.test(u) ? u : '');
  async function readJSON(res) {
    try { return await res.json(); } catch { return null; }
  }

  // ---- the source: a URL or a file ------------------------------------
  const preview = $('preview');
  function showPreview(src) {
    if (state.previewURL) URL.revokeObjectURL(state.previewURL);
    state.previewURL = '';
    if (!src) {
      $('preview-box').hidden = true;
      preview.removeAttribute('src');
      return;
    }
    if (src instanceof Blob) src = state.previewURL = URL.createObjectURL(src);
    preview.src = src;
    $('preview-box').hidden = false;
  }
  preview.addEventListener('error', () => { $('preview-box').hidden = true; });
  function setFile(f) {
    state.file = f || null;
    $('chosen').hidden = !f;
    if (!f) {
      $('file').value = '';
      showPreview($('url').value.trim().match(/^https?:\/\//) ? $('url').value.trim() : null);
      return;
    }
    $('url').value = '';
    $('chosen-name').textContent = `${f.name} (${fmtBytes(f.size)})`;
    showPreview(f);
  }
  $('file').addEventListener('change', (e) => setFile(e.target.files[0]));
  $('clear-file').addEventListener('click', () => { setFile(null); $('file').focus(); });
  $('url').addEventListener('change', () => {
    const u = $('url').value.trim();
    if (u && state.file) { state.file = null; $('file').value = ''; $('chosen').hidden = true; }
    showPreview(/^https?:\/\//.test(u) ? u : null);
  });
  const drop = $('drop');
  for (const t of ['dragenter', 'dragover']) {
    drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add('over'); });
  }
  for (const t of ['dragleave', 'drop']) {
    drop.addEventListener(t, () => drop.classList.remove('over'));
  }
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    const files = e.dataTransfer && e.dataTransfer.files;
    if (!files || !files[0]) return;
    try { $('file').files = files; } catch { /* an older browser: the page still has the file */ }
    setFile(files[0]);
  });
  // A file dropped beside the zone must not make the browser leave the page.
  for (const t of ['dragover', 'drop']) document.addEventListener(t, (e) => e.preventDefault());

  // ---- focal point --------------------------------------------------------
  const round3 = (v) => Math.round(Math.min(1, Math.max(0, v)) * 1000) / 1000;
  function showFocal() {
    const focal = $('gravity').value === 'focal';
    for (const f of document.querySelectorAll('.focal-field')) f.hidden = !focal;
    const mark = $('focal-mark');
    mark.hidden = !focal;
    mark.style.left = (round3(+$('focal-x').value) * 100) + '%';
    mark.style.top = (round3(+$('focal-y').value) * 100) + '%';
  }
  preview.addEventListener('click', (e) => {
    const r = preview.getBoundingClientRect();
    if (!r.width || !r.height) return;
    $('focal-x').value = round3((e.clientX - r.left) / r.width);
    $('focal-y').value = round3((e.clientY - r.top) / r.height);
    $('gravity').value = 'focal';
    showFocal();
    $('preview-caption').textContent = `Focal point x ${$('focal-x').value}, y ${$('focal-y').value} (fractions of the image). Click again to move it.`;
  });
  for (const id of ['gravity', 'focal-x', 'focal-y']) $(id).addEventListener('input', showFocal);
  function showGravityHint() {
    const crops = $('fit').value === 'cover';
    $('gravity-hint').textContent = crops || $('gravity').value === 'center'
      ? 'Gravity chooses what cover keeps when it crops.'
      : `Gravity only matters with fit cover: ${$('fit').value} does not crop.`;
  }
  for (const id of ['fit', 'gravity']) $(id).addEventListener('input', showGravityHint);
  preview.addEventListener('click', showGravityHint);

  // ---- sizes ----------------------------------------------------------------
  function sizeName(w, h) { return (w || '') + 'x' + (h || ''); }
  $('add-size').addEventListener('click', () => {
    const w = parseInt($('custom-width').value, 10) || 0;
    const h = parseInt($('custom-height').value, 10) || 0;
    if (w <= 0 && h <= 0) { $('custom-width').focus(); return; }
    const value = sizeName(w > 0 ? w : '', h > 0 ? h : '');
    let box = [...document.querySelectorAll('input[name=size]')].find((c) => c.value === value);
    if (!box) {
      box = el('input', { type: 'checkbox', name: 'size', value });
      const text = w > 0 && h > 0 ? `${w}\u00d7${h}` : w > 0 ? `width ${w}` : `height ${h}`;
      $('size-list').append(el('label', { class: 'chip' }, box, ' ' + text));
    }
    box.checked = true;
    $('custom-width').value = '';
    $('custom-height').value = '';
  });
  for (const id of ['custom-width', 'custom-height']) {
    $(id).addEventListener('keydown', (e) => {
      if (e.key === 'Enter') { e.preventDefault(); $('add-size').click(); }
    });
  }

  // ---- the request ------------------------------------------------------------
  // build returns the request the form describes: body is the JSON body
  // (fields in a stable order), or, with a file, the same fields as form
  // values with outputs and focal as JSON values.
  function build() {
    const body = {};
    const url = $('url').value.trim();
    if (!state.file && url) body.url = url;
    const sizes = [...document.querySelectorAll('input[name=size]:checked')].map((c) => {
      const [w, h] = c.value.split('x').map((v) => parseInt(v, 10) || 0);
      const o = { name: c.value };
      if (w) o.width = w;
      if (h) o.height = h;
      return o;
    });
    if (sizes.length === 1) {
      if (sizes[0].width) body.width = sizes[0].width;
      if (sizes[0].height) body.height = sizes[0].height;
    }
    body.fit = $('fit').value;
    const gravity = $('gravity').value;
    if (gravity !== 'center') body.gravity = gravity;
    if (gravity === 'focal') body.focal = { x: round3(+$('focal-x').value), y: round3(+$('focal-y').value) };
    body.format = $('format').value;
    const q = $('quality').value.trim();
    if (q !== '' && q !== '80') body.quality = /^\d+$/.test(q) ? +q : q;
    if (sizes.length > 1) body.outputs = sizes;
    const email = $('email').value.trim();
    if (email) body.email = email;
    const cb = $('callback').value.trim();
    if (cb) body.callback_url = cb;
    const req = { body, file: state.file, key: !!apiKey() };
    if (req.file) {
      req.fields = Object.entries(body).map(([k, v]) => [k, typeof v === 'object' ? JSON.stringify(v) : String(v)]);
    }
    return req;
  }

  // curl is the same request for a shell; the key itself is left out.
  const sq = (s) => "'" + String(s).replace(/'/g, "'\\''") + "'";
  function curl(req) {
    const parts = ['curl ' + sq(location.origin + '/v1/thumbnails')];
    if (req.key) parts.push('-H "Authorization: Bearer $THUMBNAILED_KEY"');
    if (req.file) {
      for (const [k, v] of req.fields) {
        // -F reads @file, <file and ;type= in a value; --form-string takes it as it is.
        parts.push((/^[@<]|;/.test(v) ? '--form-string ' : '-F ') + sq(k + '=' + v));
      }
      const name = /^[\w.+-]+$/.test(req.file.name) ? req.file.name : '"' + req.file.name.replace(/["\\]/g, '\\$&') + '"';
      parts.push('-F ' + sq('image=@' + name));
    } else {
      parts.push("-H 'Content-Type: application/json'");
      parts.push('-d ' + sq(JSON.stringify(req.body)));
    }
    return parts.join(' \\\n  ');
  }

  function clearProblem() {
    $('problem').hidden = true;
    $('problem').textContent = '';
    for (const e of document.querySelectorAll('[aria-invalid]')) e.removeAttribute('aria-invalid');
  }
  const fieldInput = {
    url: 'url', image: 'file', width: 'custom-width', height: 'custom-height', fit: 'fit',
    gravity: 'gravity', format: 'format', quality: 'quality', email: 'email', callback_url: 'callback',
    'focal.x': 'focal-x', 'focal.y': 'focal-y', focal: 'focal-x',
  };
  function showProblem(status, p) {
    const box = $('problem');
    box.textContent = '';
    p = p || {};
    box.append(el('p', { class: 'code' }, el('strong', { text: String(status || '') }), ' ',
      el('code', { text: p.code || 'no code' }), ' ', p.title || ''));
    if (p.detail) box.append(el('p', { class: 'detail', text: p.detail }));
    if (Array.isArray(p.errors) && p.errors.length) {
      box.append(el('ul', {}, p.errors.map((e) => el('li', {}, el('code', { text: e.field }), ': ' + e.message))));
      for (const e of p.errors) {
        const input = $(fieldInput[e.field] || '');
        if (input) input.setAttribute('aria-invalid', 'true');
      }
    }
    box.hidden = false;
  }

  let sending = false;
  $('form').addEventListener('submit', async (e) => {
    e.preventDefault();
    if (sending) return;
    const typed = $('key').value.trim();
    if (typed) { setKey(typed); $('key').value = ''; showKeyBox('A key is set for this tab.'); }
    clearProblem();
    const req = build();
    $('curl').textContent = curl(req);
    $('curl-box').hidden = false;
    $('copied').textContent = '';
    let body;
    const headers = auth();
    if (req.file) {
      body = new FormData();
      for (const [k, v] of req.fields) body.append(k, v);
      body.append('image', req.file, req.file.name);
    } else {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(req.body);
    }
    sending = true;
    $('submit').disabled = true;
    $('sending').textContent = 'Sending\u2026';
    let res;
    try {
      res = await fetch('/v1/thumbnails', { method: 'POST', headers, body });
    } catch (err) {
      showProblem('', { title: 'The request did not reach the API.', detail: String(err && err.message || err) });
      return;
    } finally {
      sending = false;
      $('submit').disabled = false;
      $('sending').textContent = '';
    }
    const data = await readJSON(res);
    if (res.status === 401) { askKey(res.status, data); showProblem(res.status, data); return; }
    if (!res.ok || !data || !data.id) {
      const retry = res.headers.get('Retry-After');
      if (retry && data) data.detail = (data.detail || '') + ` (Retry-After: ${retry} s)`;
      showProblem(res.status, data);
      $('problem').scrollIntoView({ block: 'nearest' });
      return;
    }
    follow(data);
    $('job').scrollIntoView({ block: 'start' });
  });

  $('key-use').addEventListener('click', () => $('form').requestSubmit());
  $('key').addEventListener('keydown', (e) => {
    if (e.key === 'Enter') { e.preventDefault(); $('form').requestSubmit(); }
  });
  $('key-forget').addEventListener('click', () => {
    setKey('');
    $('key').value = '';
    showKeyBox('The key is forgotten. The API will ask again if it needs one.');
  });
  if (apiKey()) showKeyBox('A key is set for this tab.');

  // ---- following the job ------------------------------------------------------
  function ended(job) {
    if (!job || (job.status !== 'succeeded' && job.status !== 'failed')) return false;
    return Object.values(state.deliveries).every((d) => d.status !== 'pending');
  }

  function follow(job) {
    if (state.stream) state.stream.abort();
    Object.assign(state, { job: null, history: [], deliveries: {}, outputsKey: null });
    $('job').hidden = false;
    render(job);
    const ctl = new AbortController();
    state.stream = ctl;
    listen(job.id, ctl.signal);
  }

  async function listen(id, signal) {
    let last = '';
    for (let tries = 0; !signal.aborted; tries++) {
      const headers = { ...auth(), Accept: 'text/event-stream' };
      if (last) headers['Last-Event-ID'] = last;
      let res;
      try {
        res = await fetch(`/v1/thumbnails/${encodeURIComponent(id)}/events`, { headers, signal, cache: 'no-store' });
      } catch {
        if (signal.aborted) return;
        await sleep(Math.min(10000, 1000 * 2 ** tries), signal);
        continue;
      }
      if (!res.ok) {
        const p = await readJSON(res);
        if (res.status === 401) { askKey(res.status, p); return; }
        if (res.status === 429 || res.status >= 500) {
          await sleep((parseInt(res.headers.get('Retry-After'), 10) || 5) * 1000, signal);
          continue;
        }
        showJobProblem(res.status, p);
        return;
      }
      try {
        await readEvents(res.body, (ev) => {
          if (signal.aborted) return;
          if (ev.id) last = ev.id;
          if (ev.event === 'status') render(JSON.parse(ev.data));
          if (ev.event === 'delivery') {
            const d = JSON.parse(ev.data);
            state.deliveries[d.channel] = d;
            renderDeliveries();
          }
        });
      } catch {
        if (signal.aborted) return;
      }
      if (ended(state.job)) return;
      tries = 0;
      await sleep(1000, signal);
    }
  }

  // readEvents parses a text/event-stream body and calls on for each event.
  async function readEvents(body, on) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value.replace(/\r\n?/g, '\n');
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const ev = { event: 'message', data: [], id: '' };
        for (const line of block.split('\n')) {
          if (!line || line[0] === ':') continue;
          const c = line.indexOf(':');
          const field = c < 0 ? line : line.slice(0, c);
          let v = c < 0 ? '' : line.slice(c + 1);
          if (v[0] === ' ') v = v.slice(1);
          if (field === 'event') ev.event = v;
          else if (field === 'data') ev.data.push(v);
          else if (field === 'id') ev.id = v;
        }
        if (ev.data.length) on({ ...ev, data: ev.data.join('\n') });
      }
    }
  }

  function showJobProblem(status, p) {
    const box = $('job-error');
    box.textContent = '';
    box.append(el('p', {}, el('strong', { text: String(status) }), ' ', el('code', { text: (p && p.code) || '' }),
      ' ', (p && p.detail) || 'the events stream could not be opened'));
    box.hidden = false;
  }

  function render(job) {
    state.job = job;
    $('job-id').textContent = job.id;
    const s = $('status');
    s.textContent = job.status;
    s.className = 'status status-' + job.status;
    const h = state.history;
    if (!h.length || h[h.length - 1] !== job.status) h.push(job.status);
    $('history').textContent = h.length > 1 ? '(' + h.join(' \u2192 ') + ')' : '';

    const err = $('job-error');
    err.textContent = '';
    err.hidden = !job.error;
    if (job.error) {
      err.append(el('p', { class: 'code' }, el('strong', { text: 'failed' }), ' ', el('code', { text: job.error.code })),
        el('p', { class: 'detail', text: job.error.message }));
    }
    renderResult(job);
    for (const d of job.deliveries || []) state.deliveries[d.channel] = d;
    renderDeliveries();
    $('json').textContent = JSON.stringify(job, null, 2);
  }

  function renderResult(job) {
    const r = job.result || {};
    const outs = r.outputs || [];
    const key = job.status + ' ' + outs.map((o) => o.url).join(' ');
    if (key === state.outputsKey) return;
    state.outputsKey = key;
    const ph = r.placeholder;
    $('placeholder').hidden = !ph;
    if (ph) {
      $('swatch').style.backgroundColor = ph.dominant_color || 'transparent';
      $('dominant').textContent = ph.dominant_color || 'none';
      $('blurhash-text').textContent = ph.blurhash || 'none';
      const first = outs[0] || { width: 4, height: 3 };
      paintBlurhash($('blurhash'), ph.blurhash, first.width, first.height);
    }
    const box = $('outputs');
    box.textContent = '';
    if (!outs.length) {
      box.append(el('p', { class: 'hint', text: job.status === 'failed' ? 'No outputs: the job failed.' : 'The outputs appear here when the job has succeeded.' }));
      return;
    }
    for (const o of outs) {
      const frame = el('div', { class: 'frame loading' });
      frame.style.width = o.width + 'px';
      frame.style.height = o.height + 'px';
      if (ph && ph.dominant_color) frame.style.backgroundColor = ph.dominant_color;
      if (ph && ph.blurhash) {
        const c = el('canvas', { 'aria-hidden': 'true' });
        if (paintBlurhash(c, ph.blurhash, o.width, o.height)) frame.append(c);
      }
      const img = el('img', {
        src: link(o.url), width: o.width, height: o.height, decoding: 'async', 'data-name': o.name,
        alt: `Output ${o.name}: ${o.width} by ${o.height} pixels, ${o.format}`,
      });
      const note = el('span', { class: 'img-note', role: 'status' });
      img.addEventListener('load', () => frame.classList.remove('loading'));
      img.addEventListener('error', () => {
        frame.classList.add('broken');
        note.textContent = ' The image did not load.';
      });
      frame.append(img);
      box.append(el('figure', { class: 'output' },
        el('div', { class: 'scroll' }, frame),
        el('figcaption', {},
          el('strong', { text: o.name }), ' ',
          el('span', { class: 'dims', text: `${o.width} \u00d7 ${o.height} px` }), ' \u00b7 ',
          o.format, ' \u00b7 ', el('span', { class: 'bytes', text: fmtBytes(o.bytes) }), ' \u00b7 ',
          el('a', { href: link(o.url), target: '_blank', rel: 'noopener', text: 'open' }), note)));
    }
  }

  function renderDeliveries() {
    const list = Object.values(state.deliveries);
    $('deliveries-box').hidden = !list.length;
    const box = $('deliveries');
    box.textContent = '';
    for (const d of list) {
      const facts = [`attempts ${d.attempts}`];
      if (d.last_attempt_at) facts.push('last ' + fmtTime(d.last_attempt_at));
      if (d.next_attempt_at && d.status === 'pending') facts.push('next ' + fmtTime(d.next_attempt_at));
      const sec = el('div', { class: 'delivery' },
        el('p', {}, el('strong', { text: d.channel }), ' to ', el('code', { text: d.target }), ' ',
          el('span', { class: 'status status-' + d.status, text: d.status }), ' ',
          el('span', { class: 'hint', text: facts.join(' \u00b7 ') })));
      if (d.error_code || d.last_error) {
        sec.append(el('p', { class: 'problem-line' }, d.error_code ? el('code', { text: d.error_code }) : '', ' ', d.last_error || ''));
      }
      if (d.log && d.log.length) {
        sec.append(el('ol', { class: 'log', 'aria-label': `attempt log of the ${d.channel} delivery` },
          d.log.map((l) => el('li', {},
            el('time', { datetime: l.at, text: fmtTime(l.at) }), ' ',
            el('span', { class: 'status status-' + l.outcome, text: l.outcome }),
            l.status_code ? ` HTTP ${l.status_code}` : '',
            l.duration_ms != null ? ` \u00b7 ${l.duration_ms} ms` : '',
            l.error ? el('span', { class: 'err', text: ' \u00b7 ' + l.error }) : '',
            l.response ? el('span', { class: 'resp' }, 'response: ', el('code', { text: l.response })) : ''))));
      }
      box.append(sec);
    }
  }

  // ---- copy -------------------------------------------------------------------
  $('copy').addEventListener('click', async () => {
    const text = $('curl').textContent;
    const done = (ok) => { $('copied').textContent = ok ? 'Copied.' : 'Select the text and copy it.'; };
    try {
      await navigator.clipboard.writeText(text);
      done(true);
    } catch {
      const r = document.createRange();
      r.selectNodeContents($('curl'));
      const sel = getSelection();
      sel.removeAllRanges();
      sel.addRange(r);
      let ok = false;
      try { ok = document.execCommand('copy'); } catch { /* not allowed */ }
      done(ok);
    }
  });

  // ---- BlurHash (https://blurha.sh), decoded here ----------------------------------
  const B83 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~';
  function d83(s) {
    let v = 0;
    for (const c of s) {
      const i = B83.indexOf(c);
      if (i < 0) throw new Error('not a blurhash');
      v = v * 83 + i;
    }
    return v;
  }
  const toLinear = (v) => { v /= 255; return v <= 0.04045 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  const toSRGB = (v) => {
    v = Math.max(0, Math.min(1, v));
    return Math.round((v <= 0.0031308 ? v * 12.92 : 1.055 * Math.pow(v, 1 / 2.4) - 0.055) * 255);
  };
  const signPow = (v, e) => Math.sign(v) * Math.pow(Math.abs(v), e);
  // decodeBlurhash returns the w x h RGBA pixels of hash.
  function decodeBlurhash(hash, w, h) {
    if (!hash || hash.length < 6) throw new Error('not a blurhash');
    const size = d83(hash[0]);
    const nx = (size % 9) + 1;
    const ny = Math.floor(size / 9) + 1;
    if (hash.length !== 4 + 2 * nx * ny) throw new Error('blurhash length does not match its components');
    const max = (d83(hash[1]) + 1) / 166;
    const colors = [];
    const dc = d83(hash.slice(2, 6));
    colors.push([toLinear(dc >> 16), toLinear((dc >> 8) & 255), toLinear(dc & 255)]);
    for (let i = 1; i < nx * ny; i++) {
      const v = d83(hash.slice(4 + i * 2, 6 + i * 2));
      colors.push([Math.floor(v / 361), Math.floor(v / 19) % 19, v % 19].map((q) => signPow((q - 9) / 9, 2) * max));
    }
    const px = new Uint8ClampedArray(w * h * 4);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        let r = 0, g = 0, b = 0;
        for (let j = 0; j < ny; j++) {
          for (let i = 0; i < nx; i++) {
            const basis = Math.cos(Math.PI * x * i / w) * Math.cos(Math.PI * y * j / h);
            const c = colors[i + j * nx];
            r += c[0] * basis; g += c[1] * basis; b += c[2] * basis;
          }
        }
        const p = 4 * (x + y * w);
        px[p] = toSRGB(r); px[p + 1] = toSRGB(g); px[p + 2] = toSRGB(b); px[p + 3] = 255;
      }
    }
    return px;
  }
  // paintBlurhash draws hash on canvas at a small size with the aspect of
  // w x h; CSS stretches it. It reports whether it could.
  function paintBlurhash(canvas, hash, w, h) {
    if (!hash) return false;
    const long = 32;
    const cw = w >= h ? long : Math.max(1, Math.round(long * w / h));
    const ch = h >= w ? long : Math.max(1, Math.round(long * h / w));
    try {
      const px = decodeBlurhash(hash, cw, ch);
      canvas.width = cw;
      canvas.height = ch;
      canvas.getContext('2d').putImageData(new ImageData(px, cw, ch), 0, 0);
      return true;
    } catch {
      return false;
    }
  }

  // For tests and the curious: the decoder this page paints with.
  window.thumbnailed = Object.freeze({ decodeBlurhash });

  showFocal();
})();
