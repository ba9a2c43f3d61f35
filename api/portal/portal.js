// Trellis admin portal: a page over the Trellis API. It holds the token the
// user pastes (in this tab's sessionStorage only) and sends it with every
// call, so it can do exactly what that token can do through the API. Text
// from the API is only ever set as textContent, never parsed as HTML.
'use strict';

const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem('trellis.token') || '';

async function api(method, path, body) {
  const headers = { Authorization: 'Bearer ' + token };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let data = {};
  try { data = text ? JSON.parse(text) : {}; } catch (e) { data = { detail: text }; }
  if (!res.ok) {
    const err = new Error((data.detail || res.statusText) + (data.field ? ' (' + data.field + ')' : ''));
    err.status = res.status;
    throw err;
  }
  return data;
}

// all follows nextCursor, at most pages pages.
async function all(path, key, pages = 20) {
  let out = [], cursor = '';
  for (let i = 0; i < pages; i++) {
    const sep = path.includes('?') ? '&' : '?';
    const page = await api('GET', path + (cursor ? sep + 'cursor=' + encodeURIComponent(cursor) : ''));
    out = out.concat(page[key] || []);
    cursor = page.nextCursor || '';
    if (!cursor) break;
  }
  return out;
}

function showError(err) {
  if (err && err.status === 401) { // a bad or expired token: ask for another, keep the message
    token = '';
    sessionStorage.removeItem('trellis.token');
    show('signin');
  }
  $('error').textContent = err ? String(err.message || err) : '';
  $('error').hidden = !err;
}

function row(tbody, cells) {
  const tr = document.createElement('tr');
  for (const c of cells) {
    const td = document.createElement('td');
    if (c instanceof Node) td.appendChild(c); else td.textContent = c == null ? '' : String(c);
    tr.appendChild(td);
  }
  tbody.appendChild(tr);
  return tr;
}

function show(section) {
  for (const id of ['signin', 'orgs', 'org']) $(id).hidden = id !== section;
  $('nav').hidden = section === 'signin';
}

function signOut() {
  token = '';
  sessionStorage.removeItem('trellis.token');
  location.hash = '#/signin';
}

const roles = (s) => s.split(',').map((r) => r.trim()).filter(Boolean);

async function orgsView() {
  show('orgs');
  const tbody = $('org-rows');
  tbody.replaceChildren();
  for (const o of await all('/v1/organizations?pageSize=100', 'organizations')) {
    const a = document.createElement('a');
    a.href = '#/orgs/' + encodeURIComponent(o.slug || o.id) + '/members';
    a.textContent = o.name;
    row(tbody, [a, o.slug, (o.path || []).join(' / '), o.status]);
  }
}

async function orgView(ref, tab) {
  show('org');
  const base = '/v1/organizations/' + encodeURIComponent(ref);
  const o = await api('GET', base);
  $('org-name').textContent = o.name;
  $('org-meta').textContent = o.slug + ' · ' + o.status + ' · ' + o.id;
  for (const t of ['members', 'invitations', 'audit']) {
    $('tab-' + t).href = '#/orgs/' + encodeURIComponent(ref) + '/' + t;
    if (t === tab) $('tab-' + t).setAttribute('aria-current', 'page'); else $('tab-' + t).removeAttribute('aria-current');
    $('pane-' + t).hidden = t !== tab;
  }
  if (tab === 'members') await membersPane(base);
  if (tab === 'invitations') await invitationsPane(base);
  if (tab === 'audit') await auditPane(base);
}

async function membersPane(base) {
  const tbody = $('member-rows');
  tbody.replaceChildren();
  const members = await all(base + '/members?pageSize=100', 'members', 5);
  for (const m of members) {
    const remove = document.createElement('button');
    remove.type = 'button';
    remove.textContent = 'Remove';
    remove.addEventListener('click', () => run(async () => {
      await api('DELETE', base + '/members/' + encodeURIComponent(m.user));
      await membersPane(base);
    }));
    const tr = row(tbody, [m.user, '', (m.roles || []).join(', '), m.status, remove]);
    tr.dataset.user = m.user;
    // the email is the user's, which the caller may not be allowed to read
    api('GET', '/v1/users/' + encodeURIComponent(m.user)).then((u) => { tr.children[1].textContent = u.email; }, () => {});
  }
  $('member-form').onsubmit = (ev) => { ev.preventDefault(); run(async () => {
    await api('PUT', base + '/members/' + encodeURIComponent($('member-user').value.trim()), { roles: roles($('member-roles').value) });
    await membersPane(base);
  }); };
}

async function invitationsPane(base) {
  const tbody = $('invitation-rows');
  tbody.replaceChildren();
  for (const inv of (await api('GET', base + '/invitations')).invitations || []) {
    row(tbody, [inv.email, (inv.roles || []).join(', '), inv.status, inv.expiresAt]);
  }
  $('invite-form').onsubmit = (ev) => { ev.preventDefault(); run(async () => {
    const inv = await api('POST', base + '/invitations', { email: $('invite-email').value.trim(), roles: roles($('invite-roles').value) });
    await invitationsPane(base);
    $('invite-token').textContent = inv.token;
    $('invite-link').hidden = false;
  }); };
}

async function auditPane(base) {
  const tbody = $('audit-rows');
  tbody.replaceChildren();
  $('verify-result').textContent = '';
  for (const e of await all(base + '/audit?pageSize=100', 'events', 5)) {
    row(tbody, [e.seq, e.at, e.actor + (e.impersonator ? ' (by ' + e.impersonator + ')' : ''), e.action, e.target]);
  }
  $('verify').onclick = () => run(async () => {
    const v = await api('GET', base + '/audit/verify');
    $('verify-result').textContent = v.valid ? 'valid: ' + v.events + ' events' : 'BROKEN at event ' + v.brokenAt;
  });
}

async function run(fn) {
  showError(null);
  try { await fn(); } catch (err) { showError(err); }
}

function route() {
  run(async () => {
    const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
    if (!token || parts[0] === 'signin') { show('signin'); return; }
    if (parts[0] === 'orgs' && parts[1]) {
      // an organization id or slug, never a path ("." or "..") into another route
      if (!/^[A-Za-z0-9_-]+$/.test(parts[1])) throw new Error('not found: no organization ' + parts[1]);
      await orgView(parts[1], parts[2] || 'members');
      return;
    }
    await orgsView();
  });
}

document.addEventListener('DOMContentLoaded', () => {
  $('signin-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    run(async () => {
      token = $('token').value.trim();
      await api('GET', '/v1/organizations?pageSize=1'); // a bad token is a 401 here
      sessionStorage.setItem('trellis.token', token);
      $('token').value = '';
      location.hash = '#/orgs';
      route();
    });
  });
  $('signout').addEventListener('click', signOut);
  window.addEventListener('hashchange', route);
  route();
});
