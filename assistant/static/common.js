// Shared by every page: the API client (session cookie, CSRF token, errors in Chinese), a
// small DOM builder, times, and the guide dialog that opens a citation. A page sets
// `window.LOGIN_NEXT` (e.g. '/console') when a 401 should send the user to the sign-in page.
'use strict';

const $ = (id) => document.getElementById(id);

// The remembered font size (放大字體), applied before first paint: this file loads in <head>.
try { if (localStorage.getItem('hotline.largeText') === '1') document.documentElement.classList.add('large'); } catch (e) {}

let csrf = '';
let sessionReady = null;

class ApiError extends Error {
  constructor(message, code, status) { super(message); this.code = code; this.status = status; }
}

async function errorFrom(res) {
  const retry = parseInt(res.headers.get('Retry-After') || '', 10);
  let body = null;
  try { body = await res.json(); } catch (e) { /* not JSON */ }
  if ((res.status === 503 || res.status === 429) && retry > 0) {
    // A login lock says how long itself; other limits are "busy, try again in N seconds".
    if (body && body.code === 'login_locked') return new ApiError(body.error, body.code, res.status);
    return new ApiError(`目前使用人數較多，請於 ${retry} 秒後再試`, 'busy', res.status);
  }
  return new ApiError((body && body.error) || `系統發生錯誤（${res.status}），請稍後再試`,
    (body && body.code) || 'http_error', res.status);
}

// Fetches the session (sets the cookie on first visit) and its CSRF token.
function loadSession() {
  sessionReady = fetch('/api/session', { credentials: 'same-origin', headers: { Accept: 'application/json' } })
    .then(async (res) => {
      if (!res.ok) throw await errorFrom(res);
      const s = await res.json();
      csrf = s.csrf || '';
      return s;
    });
  return sessionReady;
}

// Performs a request and returns the raw Response; retries once with a fresh CSRF token.
// A Blob or File body (an upload) is sent as it is; anything else as JSON.
// opts: { accept, signal }.
async function request(method, url, body, opts = {}, retried = false) {
  try { await sessionReady; } catch (e) { await loadSession(); }
  const init = { method, credentials: 'same-origin', headers: { Accept: opts.accept || 'application/json' }, signal: opts.signal };
  if (method !== 'GET') {
    init.headers['X-CSRF-Token'] = csrf;
    if (body instanceof Blob) {
      init.headers['Content-Type'] = 'application/octet-stream';
      init.body = body;
    } else {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body === undefined ? {} : body);
    }
  }
  let res;
  try { res = await fetch(url, init); }
  catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError('網路連線發生問題，請確認網路後再試', 'network', 0);
  }
  if (res.status === 401 && window.LOGIN_NEXT) {
    location.href = '/login?next=' + encodeURIComponent(window.LOGIN_NEXT);
    throw new ApiError('請重新登入', 'unauthorized', 401);
  }
  if (!res.ok) {
    const err = await errorFrom(res);
    if (res.status === 403 && /csrf/i.test(err.code) && !retried) {
      await loadSession();
      return request(method, url, body, opts, true);
    }
    throw err;
  }
  return res;
}

// A JSON request; null for 204.
async function api(method, url, body, opts) {
  const res = await request(method, url, body, opts);
  return res.status === 204 ? null : res.json();
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') node.className = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c != null) node.append(c);
  return node;
}

function formatTime(unixSeconds, opts = {}) {
  if (unixSeconds == null || unixSeconds === '') return '';
  const n = Number(unixSeconds);
  const d = Number.isFinite(n) ? new Date(n * 1000) : new Date(unixSeconds);
  if (isNaN(d.getTime())) return String(unixSeconds);
  const o = { month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hour12: false };
  if (opts.year) o.year = 'numeric';
  if (opts.seconds) o.second = '2-digit';
  return d.toLocaleString('zh-TW', o);
}

// The page's error line (the element whose id is `window.ERROR_LINE`).
function showError(msg) { $(window.ERROR_LINE).textContent = msg; }
function clearError() { $(window.ERROR_LINE).textContent = ''; }

// ---------- Page controls: 放大字體 (#large-text, remembered) and 登出 (#logout) ----------
document.addEventListener('DOMContentLoaded', () => {
  const large = $('large-text');
  if (large) {
    const sync = () => large.setAttribute('aria-pressed', String(document.documentElement.classList.contains('large')));
    large.addEventListener('click', () => {
      const on = document.documentElement.classList.toggle('large');
      try { localStorage.setItem('hotline.largeText', on ? '1' : '0'); } catch (e) {}
      sync();
    });
    sync();
  }
  const logout = $('logout');
  if (logout) {
    logout.addEventListener('click', async () => {
      try { await api('POST', '/api/logout'); } catch (e) { /* leave anyway */ }
      location.href = '/login';
    });
  }
});

// ---------- Guide dialog (built on first use) ----------
const guideCache = new Map();
let guideOpener = null;

// The dialog that shows a cited guide; closing it returns focus to what opened it.
function guideDialog() {
  let dialog = $('guide-dialog');
  if (dialog) return dialog;
  const close = el('button', { type: 'button', id: 'guide-close' }, '關閉');
  dialog = el('dialog', { id: 'guide-dialog', 'aria-labelledby': 'guide-title' },
    el('div', { class: 'dialog-head' },
      el('div', {}, el('h2', { id: 'guide-title' }, '服務說明'), el('p', { id: 'guide-bureau' })), close),
    el('div', { id: 'guide-body' }));
  close.addEventListener('click', () => dialog.close());
  dialog.addEventListener('close', () => { if (guideOpener) guideOpener.focus(); guideOpener = null; });
  document.body.append(dialog);
  return dialog;
}

// Opens the cited guide with the cited section highlighted and focused.
async function openGuide(citation, opener) {
  const dialog = guideDialog();
  guideOpener = opener || document.activeElement;
  const body = $('guide-body');
  $('guide-title').textContent = citation.title || '服務說明';
  $('guide-bureau').textContent = '';
  body.replaceChildren(el('p', {}, '載入中…'));
  if (!dialog.open) dialog.showModal();
  $('guide-close').focus();
  try {
    let guide = guideCache.get(citation.doc_id);
    if (!guide) {
      guide = await api('GET', '/api/guides/' + encodeURIComponent(citation.doc_id));
      guideCache.set(citation.doc_id, guide);
    }
    $('guide-title').textContent = guide.title;
    $('guide-bureau').textContent = guide.bureau ? '承辦單位：' + guide.bureau : '';
    const secs = guide.sections || [];
    const nodes = secs.map((s) => el('section', { class: 'guide-section', tabindex: '-1', 'data-chunk-id': s.chunk_id || '' },
      el('h3', {}, s.section), el('p', {}, s.text)));
    let idx = citation.chunk_id ? secs.findIndex((s) => s.chunk_id === citation.chunk_id) : -1;
    if (idx < 0 && citation.section) idx = secs.findIndex((s) => s.section === citation.section);
    body.replaceChildren(...nodes);
    if (idx >= 0) {
      const target = nodes[idx];
      target.classList.add('highlight');
      target.setAttribute('aria-current', 'true');
      target.prepend(el('span', { class: 'visually-hidden' }, '引用段落：'));
      target.scrollIntoView({ block: 'start' });
      target.focus({ preventScroll: true });
    }
  } catch (e) {
    body.replaceChildren(el('p', { role: 'alert' }, e.message));
  }
}

// Renders text safely into `target`, turning [n] markers into buttons for known citations.
function renderAnswerText(target, text, citations) {
  const byNumber = new Map((citations || []).map((c) => [c.number, c]));
  target.replaceChildren();
  const re = /\[(\d+)\]/g;
  let last = 0, m;
  while ((m = re.exec(text)) !== null) {
    const cit = byNumber.get(Number(m[1]));
    if (!cit) continue;
    target.append(text.slice(last, m.index));
    const btn = el('button', { type: 'button', class: 'cite-ref', 'aria-label': `參考資料 ${cit.number}：${cit.title}` }, `[${cit.number}]`);
    btn.addEventListener('click', () => openGuide(cit, btn));
    target.append(el('sup', {}, btn));
    last = re.lastIndex;
  }
  target.append(text.slice(last));
}

// 「您可能可以申請」: benefits for someone who described their situation, each with its guide
// (opened like a citation), what is still needed, and the online application where there is one.
function renderBenefits(benefits, withApply) {
  if (!benefits || !benefits.length) return null;
  const list = el('ul', { class: 'benefits' });
  for (const b of benefits) {
    const status = b.status === 'eligible' ? '看起來符合' : '可能符合，還需要確認';
    const guideBtn = el('button', { type: 'button', class: 'citation' }, `${b.name}（${b.bureau}）`);
    guideBtn.addEventListener('click', () => openGuide({ doc_id: b.benefit, title: b.name, section: b.section }, guideBtn));
    const item = el('li', { class: 'benefit ' + b.status }, guideBtn, el('span', { class: 'benefit-status' }, status));
    if (b.amount) item.append(el('p', { class: 'benefit-detail' }, '金額：' + b.amount));
    if (b.missing && b.missing.length) item.append(el('p', { class: 'benefit-detail' }, '需要確認：' + b.missing.join('、')));
    if (b.verify) item.append(el('p', { class: 'benefit-detail muted' }, '條件與金額以本市公告為準。'));
    if (withApply && b.apply_form) {
      item.append(el('a', { class: 'benefit-apply', href: '/apply?form=' + encodeURIComponent(b.apply_form) }, '線上申請（可用 MyData 帶入資料）'));
    }
    list.append(item);
  }
  // Residents read 「您」; agents read about the caller.
  const title = withApply ? '您可能可以申請' : '來電者可能可以申請';
  return el('section', { class: 'benefits-box', 'aria-label': title },
    el('p', { class: 'benefits-title' }, title), list);
}
