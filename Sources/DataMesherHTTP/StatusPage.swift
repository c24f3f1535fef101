/// The status page served at `GET /`: one self-contained HTML document (no CDN, no build step)
/// that reads `/v1/info`, `/v1/members`, `/v1/files` and follows `/v1/events`.
enum StatusPage {
    static let html: String = #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width,initial-scale=1">
        <title>data-mesher</title>
        <link rel="icon" href="data:,">
        <style>
        :root{--bg:#f4f6f9;--fg:#1c2330;--mut:#687186;--card:#fff;--line:#e2e6ed;--head:#f8f9fb;--ok:#1e9e58;--warn:#d48806;--bad:#d4443c;--off:#8a909c;--acc:#2e6bd9}
        @media (prefers-color-scheme:dark){:root{--bg:#13161b;--fg:#e3e7ee;--mut:#98a1b3;--card:#1b1f26;--line:#2b313b;--head:#20252d}}
        *{box-sizing:border-box}
        body{margin:0;font:14px/1.45 system-ui,"Segoe UI",Roboto,sans-serif;background:var(--bg);color:var(--fg)}
        header{display:flex;align-items:flex-start;gap:16px;padding:16px 24px;background:var(--card);border-bottom:1px solid var(--line)}
        #node{flex:1;min-width:0}
        h1{margin:0 0 6px;font-size:20px;font-weight:600}
        h1 small{color:var(--mut);font-weight:400;font-size:13px;margin-left:8px}
        dl{display:flex;flex-wrap:wrap;gap:4px 20px;margin:0;font-size:13px}
        dl div{display:flex;gap:6px}
        dt{color:var(--mut)}
        dd{margin:0;font-variant-numeric:tabular-nums}
        dd.warn{color:var(--warn);font-weight:600}
        .mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
        #live{padding:3px 10px;border-radius:12px;font-size:12px;font-weight:600;white-space:nowrap;background:var(--off);color:#fff}
        #live.live{background:var(--ok)}#live.reconnecting,#live.connecting{background:var(--warn)}#live.offline{background:var(--bad)}
        #live::before{content:"\25CF  "}
        #msg{color:var(--bad);font-size:13px;margin-top:4px}
        main{display:grid;grid-template-columns:minmax(0,3fr) minmax(0,2fr);gap:20px;padding:20px 24px}
        @media (max-width:960px){main{grid-template-columns:minmax(0,1fr)}}
        section{background:var(--card);border:1px solid var(--line);border-radius:8px;overflow:hidden;margin-bottom:20px;align-self:start}
        h2{margin:0;padding:10px 14px;font-size:14px;font-weight:600;border-bottom:1px solid var(--line);display:flex;justify-content:space-between}
        h2 span{color:var(--mut);font-weight:400}
        table{width:100%;border-collapse:collapse}
        th,td{text-align:left;padding:7px 14px;border-bottom:1px solid var(--line);vertical-align:middle;overflow-wrap:anywhere}
        th{background:var(--head);color:var(--mut);font-weight:500;font-size:12px}
        tr:last-child td{border-bottom:0}
        td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
        td.empty{color:var(--mut);text-align:center}
        .st{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;color:#fff;background:var(--off)}
        .st-alive,.st-accepted,.st-member_joined{background:var(--ok)}
        .st-suspect,.st-expired{background:var(--warn)}
        .st-dead,.st-refused,.st-member_failed,.st-deleted{background:var(--bad)}
        .st-left,.st-member_left{background:var(--off)}
        tr.gone td.name span.n{color:var(--mut);text-decoration:line-through}
        td.name .st{margin-left:6px}
        .mut{color:var(--mut)}
        #events{list-style:none;margin:0;padding:0;max-height:70vh;overflow:auto}
        #events li{padding:7px 14px;border-bottom:1px solid var(--line);display:grid;grid-template-columns:auto auto minmax(0,1fr);gap:2px 10px;align-items:baseline}
        #events li:last-child{border-bottom:0}
        #events li.empty{display:block;color:var(--mut);text-align:center}
        #events .d{grid-column:3;font-size:12px;color:var(--mut);overflow-wrap:anywhere}
        #events .t{font-variant-numeric:tabular-nums;color:var(--mut);font-size:12px}
        </style>
        </head>
        <body>
        <header>
        <div id="node"><h1>data-mesher <small>connecting&hellip;</small></h1><div id="msg"></div></div>
        <span id="live" class="connecting">connecting</span>
        </header>
        <main>
        <div>
        <section><h2>Members <span id="members-count"></span></h2>
        <table><thead><tr><th>Name</th><th>State</th><th class="num">Incarnation</th><th>Addresses</th></tr></thead>
        <tbody id="members"></tbody></table></section>
        <section><h2>Files <span id="files-count"></span></h2>
        <table><thead><tr><th>Name</th><th>Version</th><th class="num">Size</th><th>Signer</th><th class="num">Age</th></tr></thead>
        <tbody id="files"></tbody></table></section>
        </div>
        <section><h2>Events <span>latest 50</span></h2><ul id="events"><li class="empty">waiting for events&hellip;</li></ul></section>
        </main>
        <script>
        'use strict';
        const KINDS = ['accepted', 'deleted', 'expired', 'refused', 'member_joined', 'member_left', 'member_failed'];
        const MAX_EVENTS = 50;
        const $ = (s) => document.querySelector(s);

        // Builds an element; text children become text nodes, so user data is never parsed as HTML.
        function el(tag, attrs, ...kids) {
          const e = document.createElement(tag);
          for (const [k, v] of Object.entries(attrs || {})) if (v != null) e.setAttribute(k, String(v));
          for (const c of kids) if (c != null) e.append(c instanceof Node ? c : String(c));
          return e;
        }
        const pad = (n) => String(n).padStart(2, '0');
        const nsToMs = (ns) => Number(ns) / 1e6;
        function fmtDate(ms) {
          const d = new Date(ms);
          if (isNaN(d)) return '?';
          return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' +
            pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
        }
        function fmtTime(ms) { const d = new Date(ms); return pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds()); }
        function fmtAge(ms) {
          let s = Math.floor((Date.now() - ms) / 1000);
          if (s < 0) return 'in ' + (-s) + ' s';
          if (s < 90) return s + ' s ago';
          if (s < 5400) return Math.round(s / 60) + ' min ago';
          if (s < 172800) return Math.round(s / 3600) + ' h ago';
          return Math.round(s / 86400) + ' d ago';
        }
        function fmtSize(n) {
          n = Number(n);
          const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
          let i = 0;
          while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
          return (i ? n.toFixed(n < 10 ? 1 : 0) : n) + ' ' + u[i];
        }
        const short = (s, n) => (s && s.length > n ? s.slice(0, n) + '\u2026' : s || '');
        const badge = (text) => el('span', { class: 'st st-' + text }, String(text).replace('_', ' '));

        async function getJSON(path) {
          const r = await fetch(path, { cache: 'no-store' });
          if (!r.ok) throw new Error(path + ': HTTP ' + r.status);
          return r.json();
        }

        // "until 2026-02-26T12:00:00Z (89 days)", or "expired at ..." once it has ended.
        function certificateText(i) {
          const left = i.certificate_expires_in_seconds;
          if (left <= 0) return 'expired at ' + i.certificate_expires_at;
          const span = left >= 2 * 86400 ? Math.round(left / 86400) + ' days'
            : left >= 7200 ? Math.floor(left / 3600) + ' hours' : Math.max(1, Math.floor(left / 60)) + ' minutes';
          return 'until ' + i.certificate_expires_at + ' (' + span + ')';
        }

        function renderInfo(i) {
          const c = i.counts || {};
          const fact = (k, v, cls) => el('div', null, el('dt', null, k), el('dd', cls ? { class: cls } : null, v));
          const node = $('#node');
          node.replaceChildren(
            el('h1', null, i.node_name, el('small', null, 'data-mesher ' + i.version)),
            el('dl', null,
              fact('id', i.node_id, 'mono'),
              fact('network', i.network_id === '' ? '(default)' : i.network_id),
              fact('members', c.members),
              fact('files', c.files),
              fact('bytes', fmtSize(c.bytes)),
              fact('tombstones', c.tombstones),
              fact('expired', c.expired),
              ...(i.certificate_expires_at
                ? [fact('certificate', certificateText(i), i.certificate_expires_in_seconds < 14 * 86400 ? 'warn' : null)]
                : []),
              // This node's clock against its peers' median: loud past 5 minutes (half the default skew).
              ...(typeof i.clock_offset_seconds === 'number'
                ? [fact('clock', (i.clock_offset_seconds >= 0 ? '+' : '') + i.clock_offset_seconds.toFixed(1)
                    + ' s against its peers', Math.abs(i.clock_offset_seconds) > 300 ? 'warn' : null)]
                : [])),
            el('div', { id: 'msg' }));
          document.title = i.node_name + ' \u00b7 data-mesher';
        }

        function renderMembers(list) {
          list.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
          const rows = list.map((m) =>
            el('tr', { 'data-member-name': m.name, 'data-state': m.state },
              el('td', { class: 'name', title: m.id }, m.name),
              el('td', null, badge(m.state)),
              el('td', { class: 'num' }, m.incarnation),
              el('td', { class: 'mono' }, (m.addresses || []).join(', '))));
          if (!rows.length) rows.push(el('tr', null, el('td', { class: 'empty', colspan: 4 }, 'no members')));
          $('#members').replaceChildren(...rows);
          const alive = list.filter((m) => m.state === 'alive').length;
          $('#members-count').textContent = alive + ' alive / ' + list.length;
        }

        function renderFiles(list) {
          list.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
          const rows = list.map((f) => {
            const ms = nsToMs(f.timestamp);
            const gone = f.deleted ? 'deleted' : f.expired ? 'expired' : null;
            return el('tr', { 'data-file-name': f.name, class: gone ? 'gone' : null },
              el('td', { class: 'name' }, el('span', { class: 'n' }, f.name), gone ? badge(gone) : null),
              el('td', { title: String(f.timestamp) + ' ns' }, fmtDate(ms)),
              el('td', { class: 'num', title: f.size + ' bytes' }, fmtSize(f.size)),
              el('td', { class: 'mono', title: f.signer }, short(f.signer, 10)),
              el('td', { class: 'num age', 'data-ms': ms }, fmtAge(ms)));
          });
          if (!rows.length) rows.push(el('tr', null, el('td', { class: 'empty', colspan: 5 }, 'no files')));
          $('#files').replaceChildren(...rows);
          const served = list.filter((f) => !f.deleted && !f.expired).length;
          $('#files-count').textContent = served + ' served / ' + list.length;
        }

        function tickAges() {
          for (const td of document.querySelectorAll('#files td.age')) td.textContent = fmtAge(Number(td.dataset.ms));
        }

        function describe(d) {
          const m = d.member;
          if (m) return [m.name, [m.state, (m.addresses || []).join(', ')].filter(Boolean).join(' \u00b7 ')];
          const parts = [d.origin];
          if (d.size != null && d.kind === 'accepted') parts.push(fmtSize(d.size));
          if (d.timestamp != null) parts.push('version ' + fmtDate(nsToMs(d.timestamp)));
          if (d.signer) parts.push('signer ' + short(d.signer, 10));
          if (d.reason) parts.push(d.reason);
          return [d.name, parts.filter(Boolean).join(' \u00b7 ')];
        }

        function addEvent(d) {
          const ul = $('#events');
          const empty = ul.querySelector('.empty');
          if (empty) empty.remove();
          const [subject, detail] = describe(d);
          const ms = d.time != null ? nsToMs(d.time) : Date.now();
          ul.prepend(el('li', { 'data-kind': d.kind, class: 'ev ev-' + d.kind },
            el('span', { class: 't', title: fmtDate(ms) }, fmtTime(ms)),
            badge(d.kind),
            el('span', { class: 'name' }, subject == null ? '' : subject),
            detail ? el('span', { class: 'd' }, detail) : null));
          while (ul.children.length > MAX_EVENTS) ul.lastElementChild.remove();
        }

        // Coalesces re-fetches: a burst of events costs one request per list.
        const pending = new Set();
        let timer = null;
        function refresh(...what) {
          what.forEach((w) => pending.add(w));
          if (!timer) timer = setTimeout(load, 150);
        }
        async function load() {
          timer = null;
          const what = [...pending];
          pending.clear();
          const jobs = [];
          if (what.includes('info')) jobs.push(getJSON('v1/info').then(renderInfo));
          if (what.includes('members')) jobs.push(getJSON('v1/members').then(renderMembers));
          if (what.includes('files')) jobs.push(getJSON('v1/files').then(renderFiles));
          const res = await Promise.allSettled(jobs);
          const bad = res.find((r) => r.status === 'rejected');
          const msg = $('#msg');
          if (msg) msg.textContent = bad ? 'cannot reach the node: ' + bad.reason.message : '';
        }
        const ALL = ['info', 'members', 'files'];

        function onEvent(e) {
          let d;
          try { d = JSON.parse(e.data); } catch (err) { return; }
          if (!d || typeof d !== 'object') return;
          d.kind = d.kind || e.type;
          addEvent(d);
          if (d.kind.startsWith('member_')) refresh('info', 'members');
          else if (d.kind !== 'refused') refresh('info', 'files');
        }

        function setLive(state) {
          const l = $('#live');
          l.className = state;
          l.textContent = state;
        }

        let source = null;
        let opened = false;
        function connect() {
          if (source) source.close();
          setLive(opened ? 'reconnecting' : 'connecting');
          // The node replays its latest events first; each (re)connect restarts the list, no duplicates.
          source = new EventSource('v1/events?recent=' + MAX_EVENTS);
          source.onopen = () => {
            setLive('live');
            $('#events').replaceChildren(el('li', { class: 'empty' }, 'no events yet'));
            if (opened) refresh(...ALL); // catch up on what happened while we were away
            opened = true;
          };
          source.onerror = () => {
            if (source.readyState === EventSource.CLOSED) {
              setLive('offline'); // the browser gave up (e.g. not an event stream): try again ourselves
              setTimeout(connect, 5000);
            } else {
              setLive('reconnecting');
            }
          };
          for (const k of KINDS) source.addEventListener(k, onEvent);
          source.onmessage = onEvent;
        }

        refresh(...ALL);
        connect();
        setInterval(tickAges, 1000);
        setInterval(() => refresh(...ALL), 15000); // suspicions and expiries need no event to show
        </script>
        </body>
        </html>
        """#
}
