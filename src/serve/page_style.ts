/**
 * The status page's style sheet (`/app.css`). Colours are chosen for a
 * contrast of at least 4.5:1 against their background (the browser test
 * measures it); state is always written as text, colour only adds to it.
 * Below 600px the tables become one card per lock.
 *
 * @module
 */

/** The style sheet at `/app.css`. */
export const PAGE_CSS = `:root {
  --text: #1b1b1b;
  --muted: #4a4a4a;
  --bg: #ffffff;
  --panel: #f4f6f9;
  --line: #c4cad3;
  --accent: #0b4fb3;
  --focus: #b35c00;
  --stale-text: #7a1111;
  --stale-bg: #fde8e8;
  --held-text: #0d4a2c;
  --held-bg: #dcefe4;
  --warn-text: #5c3d00;
  --warn-bg: #fff3cd;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif;
  line-height: 1.4;
  color: var(--text);
  background: var(--bg);
}
* { box-sizing: border-box; }
body { margin: 0; padding: 0 1rem 2rem; max-width: 90rem; margin-inline: auto; }
h1 { font-size: 1.5rem; margin: 1rem 0 0.25rem; }
h2 { font-size: 1.2rem; margin: 1.5rem 0 0.25rem; }
a { color: var(--accent); }
.skip { position: absolute; left: -999px; top: 0; background: var(--bg); padding: 0.5rem; }
.skip:focus { left: 0.5rem; z-index: 10; }
.visually-hidden {
  position: absolute; width: 1px; height: 1px; margin: -1px; padding: 0; border: 0;
  overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap;
}
:focus-visible { outline: 3px solid var(--focus); outline-offset: 2px; }
button {
  font: inherit; color: var(--accent); background: var(--bg); border: 1px solid var(--accent);
  border-radius: 4px; padding: 0.2rem 0.6rem; cursor: pointer; min-height: 2rem;
}
button:hover { background: var(--panel); }
button.host { border: 0; padding: 0; min-height: 0; text-decoration: underline; font-weight: 600; }
button.danger { color: #ffffff; background: #9b1c1c; border-color: #9b1c1c; }
button.danger:hover { background: #7a1111; }
button[disabled] { opacity: 0.8; cursor: progress; }
header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 0.25rem 1rem; }
.connection { margin: 0; color: var(--muted); }
.connection[data-mode="live"]::before { content: "● "; color: var(--held-text); }
.connection[data-mode="polling"]::before, .connection[data-mode="offline"]::before {
  content: "○ "; color: var(--warn-text);
}
.summary { color: var(--muted); margin: 0.25rem 0 0; }
.group-info { margin: 0 0 0.5rem; color: var(--muted); }
.notice, .failure { background: var(--warn-bg); color: var(--warn-text); padding: 0.5rem 0.75rem; border-radius: 4px; }
.failure { margin: 0.25rem 0; }
.empty { color: var(--muted); font-style: italic; }
table { border-collapse: collapse; width: 100%; margin-bottom: 0.5rem; }
caption { text-align: left; font-weight: 600; padding: 0.25rem 0; }
th, td { text-align: left; vertical-align: top; padding: 0.35rem 0.5rem; border-bottom: 1px solid var(--line); }
thead th { background: var(--panel); font-weight: 600; }
td, th { overflow-wrap: break-word; }
.table-wrap { overflow-x: auto; }
caption.visually-hidden { position: absolute; }
.badge { display: inline-block; padding: 0 0.4rem; border-radius: 3px; font-weight: 600; white-space: nowrap; }
.badge.stale { color: var(--stale-text); background: var(--stale-bg); border: 1px solid var(--stale-text); }
.badge.held { color: var(--held-text); background: var(--held-bg); }
.badge.expired { color: var(--warn-text); background: var(--warn-bg); }
tr.is-stale > * { background: #fff7f7; }
.error { color: var(--stale-text); font-weight: 600; min-height: 1.4em; margin: 0.5rem 0; }
.history { margin-top: 2rem; border-top: 2px solid var(--line); }
.history-head { display: flex; align-items: baseline; justify-content: space-between; gap: 1rem; }
dialog { border: 1px solid var(--line); border-radius: 6px; max-width: min(32rem, 95vw); width: 100%; padding: 1rem 1.25rem; color: var(--text); background: var(--bg); }
dialog::backdrop { background: rgb(0 0 0 / 0.45); }
dialog h2 { margin-top: 0; }
label { display: block; font-weight: 600; margin-top: 0.75rem; }
input { font: inherit; width: 100%; padding: 0.35rem 0.5rem; border: 1px solid #6b7280; border-radius: 4px; color: var(--text); background: var(--bg); }
.hint { color: var(--muted); font-size: 0.9rem; margin: 0.25rem 0 0; }
.actions { display: flex; gap: 0.75rem; flex-wrap: wrap; margin-top: 0.5rem; }
@media (max-width: 600px) {
  body { padding: 0 0.5rem 1rem; }
  table.locks, table.locks tbody, table.locks tr, table.locks th, table.locks td { display: block; width: 100%; }
  table.locks thead {
    position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0);
  }
  table.locks tr { border: 1px solid var(--line); border-radius: 6px; margin: 0 0 0.75rem; padding: 0.25rem 0.5rem; }
  table.locks th, table.locks td { border: 0; padding: 0.2rem 0; overflow-wrap: anywhere; }
  table.locks [data-label]::before { content: attr(data-label) ": "; font-weight: 600; color: var(--muted); }
}
`;
