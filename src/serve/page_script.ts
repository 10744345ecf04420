/**
 * The status page's script (`/app.js`): plain JavaScript, no framework, no
 * build step. It renders the fleet status document (`GET /v1/locks`, the
 * `status --all --json` document) and keeps it live from `GET /v1/events`
 * (server-sent events), falling back to polling `/v1/locks` when the stream
 * fails. Everything from the store is written with `textContent` or
 * `setAttribute`, never parsed as HTML.
 *
 * The access token a break needs is kept in one variable of this script
 * (this tab's memory): never in storage, the address or a log.
 *
 * @module
 */

/** The script at `/app.js`. */
export const PAGE_JS = String.raw`"use strict";
(function () {
  var POLL_MS = 2000;
  var RECONNECT_MS = 15000;
  var HISTORY_LIMIT = 20;
  var COLUMNS = ["Host", "Type", "Caller", "Description", "Holder", "Age", "Lease left", "State", "Action"];

  var doc = null;          // the last fleet document
  var receivedAt = 0;      // Date.now() when it came (ages tick from there: no clock skew)
  var previous = null;     // ref -> lock of the document before, for announcements
  var token = "";          // the access token, in memory only
  var breaking = null;     // the lock the break dialog is about
  var historyHost = null;  // the host whose History is shown
  var source = null;       // the EventSource
  var pollTimer = 0;
  var reconnectTimer = 0;
  var rendered = false;

  function byId(id) { return document.getElementById(id); }

  // Makes an element; text is always set as text, attributes as attributes.
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (key) {
        var value = attrs[key];
        if (value === null || value === undefined || value === false) return;
        if (key === "text") node.textContent = String(value);
        else node.setAttribute(key, value === true ? "" : String(value));
      });
    }
    (children || []).forEach(function (child) {
      if (child === null || child === undefined) return;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) return "?";
    var s = Math.max(0, Math.floor(seconds));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
    return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
  }

  function elapsed() { return (Date.now() - receivedAt) / 1000; }

  function ageText(lock) {
    return lock.ageSeconds === null ? "?" : duration(lock.ageSeconds + elapsed());
  }

  function leaseText(lock) {
    if (lock.expiresAt === null) return "never";
    if (lock.expired) return "expired";
    var left = (lock.leaseLeftSeconds === null || lock.leaseLeftSeconds === undefined)
      ? (Date.parse(lock.expiresAt) - Date.now()) / 1000
      : lock.leaseLeftSeconds - elapsed();
    return left <= 0 ? "expired" : duration(left);
  }

  function holderText(holder) {
    if (!holder) return "-";
    return (holder.host || "?") + " (pid " + (holder.pid === undefined ? "?" : holder.pid) + ")";
  }

  function callerText(lock) {
    if (lock.caller !== null) return lock.caller;
    return lock.content === "ok" ? "-" : "(unknown: " + lock.content + " file)";
  }

  var STALE_WHY = {
    expired: "lease expired",
    empty: "empty file",
    powershell: "old PowerShell lock",
  };

  function stateCell(lock) {
    var stale = lock.stale || [];
    if (stale.length > 0) {
      return el("span", {
        "class": "badge stale",
        text: "Stale: " + stale.map(function (r) { return STALE_WHY[r] || r; }).join(", "),
      });
    }
    if (lock.expired) return el("span", { "class": "badge expired", text: "Expired" });
    return el("span", { "class": "badge held", text: "Held" });
  }

  function lockRow(lock) {
    var stale = (lock.stale || []).length > 0;
    var hostButton = el("button", {
      type: "button", "class": "host", "data-host": lock.host,
      "data-focus": "host:" + lock.host, "aria-label": "Show the History of " + lock.host,
      text: lock.host,
    });
    var breakButton = el("button", {
      type: "button", "class": "break", "data-ref": lock.ref, "data-focus": "break:" + lock.ref,
      "aria-label": "Break lock " + lock.ref, text: "Break…",
    });
    var cells = [
      el("th", { scope: "row", "data-label": COLUMNS[0] }, [hostButton]),
      el("td", { "data-label": COLUMNS[1], text: lock.type }),
      el("td", { "data-label": COLUMNS[2], "class": "caller", text: callerText(lock) }),
      el("td", { "data-label": COLUMNS[3], text: lock.description === null ? "-" : lock.description }),
      el("td", { "data-label": COLUMNS[4], text: holderText(lock.holder) }),
      el("td", { "data-label": COLUMNS[5], "class": "age", text: ageText(lock) }),
      el("td", { "data-label": COLUMNS[6], "class": "lease", text: leaseText(lock) }),
      el("td", { "data-label": COLUMNS[7], "class": "state" }, [stateCell(lock)]),
      el("td", { "data-label": COLUMNS[8] }, [breakButton]),
    ];
    return el("tr", { "data-ref": lock.ref, "class": stale ? "is-stale" : null }, cells);
  }

  function lockTable(caption, locks) {
    var head = el("tr", null, COLUMNS.map(function (c) { return el("th", { scope: "col", text: c }); }));
    return el("div", { "class": "table-wrap" }, [
      el("table", { "class": "locks" }, [
        el("caption", { "class": "visually-hidden", text: caption }),
        el("thead", null, [head]),
        el("tbody", null, locks.map(lockRow)),
      ]),
    ]);
  }

  function plural(n, word) { return n + " " + word + (n === 1 ? "" : "s"); }

  function section(id, title, info, locks, emptyText) {
    var headingId = "h-" + id;
    var children = [el("h2", { id: headingId, text: title })];
    if (info) children.push(el("p", { "class": "group-info", text: info }));
    if (locks.length > 0) children.push(lockTable("Locks of " + title, locks));
    else children.push(el("p", { "class": "empty", text: emptyText }));
    return el("section", { "aria-labelledby": headingId, "data-section": id }, children);
  }

  function renderFleet() {
    var fleet = byId("fleet");
    var focusKey = document.activeElement && fleet.contains(document.activeElement)
      ? document.activeElement.getAttribute("data-focus") : null;
    var locks = doc.locks || [];
    var groups = (doc.groups || []).slice().sort(function (a, b) { return a.name < b.name ? -1 : 1; });
    var grouped = {};
    var sections = [];
    groups.forEach(function (group, i) {
      var members = {};
      group.members.forEach(function (m) { members[m] = true; grouped[m] = true; });
      var inGroup = locks.filter(function (l) { return members[l.host]; });
      var inside = (group.slots || []).filter(function (s) {
        return s.slot <= group.max && !s.expired && !s.orphaned;
      }).map(function (s) { return s.member || "?"; });
      var info = group.used + " of " + group.max + " in maintenance" +
        (inside.length ? " (" + inside.join(", ") + ")" : "") + ", " + group.free + " free; members: " +
        group.members.join(", ");
      sections.push(section("group-" + i, "Group " + group.name, info, inGroup, "No locks on its members."));
    });
    var rest = locks.filter(function (l) { return !grouped[l.host]; });
    if (rest.length > 0 || groups.length === 0) {
      sections.push(section("nogroup", groups.length ? "Hosts in no group" : "All hosts", null, rest,
        "No locks."));
    }
    fleet.replaceChildren.apply(fleet, sections);
    fleet.setAttribute("aria-busy", "false");
    var hosts = {};
    locks.forEach(function (l) { hosts[l.host] = true; });
    var staleCount = locks.filter(function (l) { return (l.stale || []).length > 0; }).length;
    byId("summary").textContent = plural(locks.length, "lock") + " on " +
      plural(Object.keys(hosts).length, "host") + " (" + plural((doc.hosts || []).length, "host") +
      " looked at)" + (staleCount ? ", " + staleCount + " stale" : "") + ".";
    var failures = (doc.failures || []).map(function (f) {
      return el("p", { "class": "failure", text: "Cannot read " + (f.group !== undefined ? "group " + f.group : f.host) + ": " + f.message });
    });
    byId("failures").replaceChildren.apply(byId("failures"), failures);
    if (focusKey) {
      var again = fleet.querySelector("[data-focus=\"" + CSS.escape(focusKey) + "\"]");
      if (again) again.focus();
    }
  }

  function announceChanges() {
    var now = {};
    (doc.locks || []).forEach(function (l) { now[l.ref] = l; });
    var messages = [];
    if (previous === null) {
      messages.push(plural((doc.locks || []).length, "lock") + " shown.");
    } else {
      Object.keys(now).forEach(function (ref) {
        if (!previous[ref]) messages.push("Lock " + ref + " taken by " + callerText(now[ref]) + ".");
        else if ((previous[ref].stale || []).length === 0 && (now[ref].stale || []).length > 0) {
          messages.push("Lock " + ref + " is stale.");
        }
      });
      Object.keys(previous).forEach(function (ref) {
        if (!now[ref]) messages.push("Lock " + ref + " released.");
      });
    }
    previous = now;
    if (messages.length) byId("announce").textContent = messages.join(" ");
  }

  function accept(next) {
    if (!next || !Array.isArray(next.locks)) return;
    doc = next;
    receivedAt = Date.now();
    renderFleet();
    announceChanges();
    if (!rendered) {
      rendered = true;
      performance.mark("locks-rendered");
      document.documentElement.setAttribute("data-rendered", "true");
    }
  }

  function tick() {
    if (!doc) return;
    var rows = byId("fleet").querySelectorAll("tr[data-ref]");
    var index = {};
    doc.locks.forEach(function (l) { index[l.ref] = l; });
    rows.forEach(function (row) {
      var lock = index[row.getAttribute("data-ref")];
      if (!lock) return;
      row.querySelector(".age").textContent = ageText(lock);
      row.querySelector(".lease").textContent = leaseText(lock);
    });
  }

  function setMode(mode, text) {
    var p = byId("connection");
    p.setAttribute("data-mode", mode);
    p.textContent = text;
  }

  function stamp() { return new Date().toLocaleTimeString(); }

  // One poll at a time: a poll asked for while one is in flight is that one,
  // which schedules the next when it ends (else each failed stream added a loop).
  var polling = false;
  function poll() {
    clearTimeout(pollTimer);
    if (polling) return;
    polling = true;
    fetch("/v1/locks", { cache: "no-store", headers: { accept: "application/json" } })
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(function (next) {
        accept(next);
        setMode("polling", "Updated every " + POLL_MS / 1000 + " s (live stream unavailable); last " + stamp());
      })
      .catch(function () { setMode("offline", "Cannot reach the server; retrying. Last try " + stamp()); })
      .then(function () {
        polling = false;
        clearTimeout(pollTimer);
        if (!source) pollTimer = setTimeout(poll, POLL_MS);
      });
  }

  function connect() {
    clearTimeout(reconnectTimer);
    if (typeof EventSource === "undefined") { poll(); return; }
    var es = new EventSource("/v1/events");
    source = es;
    // A stream that opens but says nothing must not leave the page empty.
    setTimeout(function () { if (!rendered && source === es) poll(); }, 3000);
    es.addEventListener("locks", function (event) {
      if (source !== es) return;
      clearTimeout(pollTimer);
      var next;
      try { next = JSON.parse(event.data); } catch (_) { return; }
      accept(next);
      setMode("live", "Live");
    });
    es.onerror = function () {
      if (source !== es) return;
      es.close();
      source = null;
      poll();
      reconnectTimer = setTimeout(connect, RECONNECT_MS);
    };
  }

  // History of one host, on click.
  function showHistory(host) {
    historyHost = host;
    var panel = byId("history");
    panel.hidden = false;
    byId("history-title").textContent = "History of " + host;
    byId("history-state").textContent = "Loading…";
    byId("history-body").replaceChildren();
    byId("history-title").focus();
    fetch("/v1/history/" + encodeURIComponent(host) + "?limit=" + HISTORY_LIMIT,
      { cache: "no-store", headers: { accept: "application/json" } })
      .then(function (r) {
        return r.json().then(function (body) { return { ok: r.ok, status: r.status, body: body }; });
      })
      .then(function (res) {
        if (historyHost !== host) return;
        if (!res.ok) throw new Error(res.body && res.body.error ? res.body.error.message : "HTTP " + res.status);
        renderHistory(host, res.body.entries || []);
      })
      .catch(function (error) {
        if (historyHost === host) byId("history-state").textContent = "Cannot load the History: " + error.message;
      });
  }

  function renderHistory(host, entries) {
    byId("history-state").textContent = entries.length === 0
      ? "No released or broken locks recorded for " + host + "."
      : entries.length === 1 ? "The newest entry." : "The " + entries.length + " newest entries, newest first.";
    if (entries.length === 0) return;
    var cols = ["Type", "Caller", "Description", "Locked", "Released", "Held for", "Broken by"];
    var head = el("tr", null, cols.map(function (c) { return el("th", { scope: "col", text: c }); }));
    var rows = entries.map(function (e) {
      var held = e.lockedAt && e.unlockedAt ? (Date.parse(e.unlockedAt) - Date.parse(e.lockedAt)) / 1000 : null;
      var values = [
        e.type, e.caller === null ? "-" : e.caller, e.description === null ? "-" : e.description,
        e.lockedAt || "?", e.unlockedAt || "?", duration(held),
        e.brokenBy ? e.brokenBy + " (" + (e.breakReason || "no reason") + ")" : "-",
      ];
      return el("tr", null, values.map(function (v, i) {
        return el(i === 0 ? "th" : "td", i === 0 ? { scope: "row", "data-label": cols[i], text: v } : { "data-label": cols[i], text: v });
      }));
    });
    byId("history-body").replaceChildren(el("table", { "class": "locks" }, [
      el("caption", { "class": "visually-hidden", text: "History of " + host }),
      el("thead", null, [head]),
      el("tbody", null, rows),
    ]));
  }

  // Breaking a lock: a dialog asking for a reason and the token.
  function openBreak(ref) {
    var lock = (doc.locks || []).filter(function (l) { return l.ref === ref; })[0];
    if (!lock) return;
    breaking = lock;
    byId("break-ref").textContent = lock.ref;
    byId("break-host").textContent = lock.host;
    byId("break-caller").textContent = callerText(lock);
    byId("break-reason").value = "";
    byId("break-token").value = token;
    byId("break-error").textContent = "";
    byId("break-submit").disabled = false;
    byId("break-dialog").showModal();
    byId("break-reason").focus();
  }

  function closeBreak() {
    breaking = null;
    byId("break-token").value = "";
    if (byId("break-dialog").open) byId("break-dialog").close();
  }

  function refPath(ref) {
    return ref.split("/").map(encodeURIComponent).join("/");
  }

  function submitBreak(event) {
    event.preventDefault();
    if (!breaking) return;
    var lock = breaking;
    var reason = byId("break-reason").value.trim();
    var given = byId("break-token").value;
    if (reason === "") { byId("break-error").textContent = "Give a reason: it is recorded in History."; byId("break-reason").focus(); return; }
    if (given === "") { byId("break-error").textContent = "Give the access token."; byId("break-token").focus(); return; }
    byId("break-submit").disabled = true;
    byId("break-error").textContent = "";
    fetch("/v1/locks/" + refPath(lock.ref) + "/break", {
      method: "POST",
      cache: "no-store",
      headers: { "content-type": "application/json", accept: "application/json", authorization: "Bearer " + given },
      body: JSON.stringify({ reason: reason }),
    }).then(function (r) {
      return r.text().then(function (text) {
        var body = null;
        try { body = JSON.parse(text); } catch (_) { /* not JSON */ }
        return { ok: r.ok, status: r.status, body: body };
      });
    }).then(function (res) {
      byId("break-submit").disabled = false;
      if (res.ok) {
        token = given;
        closeBreak();
        byId("announce").textContent = "Broke lock " + lock.ref + ".";
        if (!source) poll();
        return;
      }
      if (res.status === 401) token = "";
      var message = res.body && res.body.error && res.body.error.message
        ? res.body.error.message : "The server refused (HTTP " + res.status + ")";
      byId("break-error").textContent = "Not broken: " + message;
    }).catch(function (error) {
      byId("break-submit").disabled = false;
      byId("break-error").textContent = "Not broken: cannot reach the server (" + error.message + ")";
    });
  }

  function start() {
    byId("fleet").addEventListener("click", function (event) {
      var target = event.target.closest("button");
      if (!target) return;
      if (target.classList.contains("host")) showHistory(target.getAttribute("data-host"));
      else if (target.classList.contains("break")) openBreak(target.getAttribute("data-ref"));
    });
    byId("history-close").addEventListener("click", function () {
      byId("history").hidden = true;
      var back = historyHost && byId("fleet").querySelector("[data-focus=\"" + CSS.escape("host:" + historyHost) + "\"]");
      historyHost = null;
      if (back) back.focus();
    });
    byId("break-form").addEventListener("submit", submitBreak);
    byId("break-cancel").addEventListener("click", closeBreak);
    byId("break-dialog").addEventListener("close", function () { breaking = null; byId("break-token").value = ""; });
    setInterval(tick, 1000);
    connect();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
`;
