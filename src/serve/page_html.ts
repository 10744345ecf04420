/**
 * The status page's HTML: a static shell with no data in it. The script
 * (`/app.js`) fills it from the JSON API, so nothing from a store is ever
 * written into this text, and the Content-Security-Policy can forbid every
 * inline script and style.
 *
 * @module
 */

/** The page at `/`. */
export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light">
<title>Resource locks</title>
<link rel="icon" href="/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/app.css">
<script src="/app.js" defer></script>
</head>
<body>
<a class="skip" href="#fleet">Skip to the locks</a>
<header>
<h1>Resource locks</h1>
<p id="connection" class="connection" data-mode="connecting">Connecting…</p>
</header>
<main>
<noscript><p class="notice">This page needs JavaScript to show the locks live.
The same data is at <a href="/v1/locks">/v1/locks</a> (JSON).</p></noscript>
<p id="summary" class="summary"></p>
<div id="failures"></div>
<div id="fleet" aria-busy="true"></div>
<section id="history" class="history" aria-labelledby="history-title" hidden>
<div class="history-head">
<h2 id="history-title" tabindex="-1">History</h2>
<button type="button" id="history-close">Close history</button>
</div>
<p id="history-state"></p>
<div id="history-body"></div>
</section>
</main>
<div id="announce" class="visually-hidden" role="status" aria-live="polite" aria-atomic="true"></div>
<dialog id="break-dialog" aria-labelledby="break-title">
<form id="break-form" method="dialog" novalidate>
<h2 id="break-title">Break a lock</h2>
<p>Lock <strong id="break-ref"></strong> on <strong id="break-host"></strong>,
held by <span id="break-caller"></span>. Breaking moves it into History with your reason.</p>
<label for="break-reason">Reason (recorded in History)</label>
<input id="break-reason" name="reason" type="text" maxlength="500" autocomplete="off" required>
<label for="break-token">Access token</label>
<input id="break-token" name="token" type="password" autocomplete="off" spellcheck="false" required>
<p class="hint" id="break-token-hint">Sent only in the Authorization header of this request and kept
in this tab's memory until the page is closed or reloaded; never stored or put in the address.</p>
<p id="break-error" class="error" role="alert"></p>
<div class="actions">
<button type="submit" id="break-submit" class="danger">Break lock</button>
<button type="button" id="break-cancel">Cancel</button>
</div>
</form>
</dialog>
</body>
</html>
`;

/** The page's icon: a padlock, so the tab is found among others. */
export const FAVICON_SVG =
  `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect x="2" y="7" width="12" height="8" rx="1.5" fill="#1f3a68"/><path d="M5 7V5a3 3 0 0 1 6 0v2" fill="none" stroke="#1f3a68" stroke-width="2"/></svg>
`;
