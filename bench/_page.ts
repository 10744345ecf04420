/**
 * The status page's time to first render: from navigation start to the lock
 * table filled (the page's `locks-rendered` performance mark, read from the
 * page), with 50 locked hosts on the local store, in headless Chromium.
 * Baseline, in the same run and from the same server: a static page with
 * the same table already in its HTML and the same style sheet, marking the
 * same point when its (deferred) script runs. The ratio is what fetching
 * the script, opening the event stream and building the table cost.
 *
 * @module
 */

import { lockResource } from "../mod.ts";
import type { ResourceLock } from "../src/resource_lock.ts";
import { createHandler } from "../src/serve/server.ts";
import { CHROMIUM_PATH, haveChromium, launchChromium } from "../tests/serve_page_browser.ts";
import { type Figure, figure, sample } from "./_measure.ts";

/** What {@linkcode pageSection} needs from the benchmark's main. */
export interface PageSectionOptions {
  quick: boolean;
  root: string;
  wants(id: string): boolean;
}

const ID = "serve-page-render";
const HOSTS = 50;

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** The baseline: the fleet document's locks as a static table. */
function staticPage(doc: { locks: Record<string, unknown>[] }): string {
  const cells = (l: Record<string, unknown>) =>
    [l.type, l.caller, l.description, JSON.stringify(l.holder), l.ageSeconds, l.leaseLeftSeconds]
      .map((v) => `<td>${escapeHtml(String(v ?? "-"))}</td>`).join("");
  const rows = doc.locks.map((l) =>
    `<tr><th scope="row">${escapeHtml(String(l.host))}</th>${cells(l)}<td>Held</td></tr>`
  ).join("\n");
  return `<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Resource locks</title>
<link rel="stylesheet" href="/app.css"><script src="/baseline.js" defer></script></head>
<body><main><h1>Resource locks</h1><table class="locks"><caption>Locks</caption><thead><tr>
<th scope="col">Host</th><th scope="col">Type</th><th scope="col">Caller</th><th scope="col">Description</th>
<th scope="col">Holder</th><th scope="col">Age</th><th scope="col">Lease left</th><th scope="col">State</th>
</tr></thead><tbody>
${rows}
</tbody></table></main></body></html>`;
}

const BASELINE_JS =
  `performance.mark("locks-rendered"); document.documentElement.setAttribute("data-rendered", "true");`;

/**
 * The page's first-render figure, or none when not asked for. Without
 * chromium it says so and gives none, except under CI, where it fails.
 */
export async function pageSection(options: PageSectionOptions): Promise<Figure[]> {
  if (!options.wants(ID)) return [];
  if (!await haveChromium()) {
    if (Deno.env.get("CI")) throw new Error(`${ID}: no browser at ${CHROMIUM_PATH}`);
    console.error(
      `${ID}: skipped, no browser at ${CHROMIUM_PATH} (apt-get install chromium; CI fails instead)`,
    );
    return [];
  }
  const folder = `${options.root}/page`;
  await Deno.mkdir(folder);
  const store = `${folder}/{0}`;
  const locks: ResourceLock[] = [];
  const handler = await createHandler({ store, refreshInterval: "1s" });
  let server: Deno.HttpServer<Deno.NetAddr> | undefined;
  try {
    for (let i = 0; i < HOSTS; i++) {
      locks.push(
        await lockResource(`web${String(i).padStart(2, "0")}`, {
          store,
          dependencies: {},
          caller: `deploy-${i}`,
          description: "rolling update",
          ttl: "1h",
        }),
      );
    }
    let baselineHtml = "";
    server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request, info) => {
      const path = new URL(request.url).pathname;
      if (path === "/baseline") {
        return new Response(baselineHtml, { headers: { "content-type": "text/html" } });
      }
      if (path === "/baseline.js") {
        return new Response(BASELINE_JS, { headers: { "content-type": "text/javascript" } });
      }
      return handler.handle(request, info);
    });
    const url = `http://127.0.0.1:${server.addr.port}`;
    baselineHtml = staticPage(await (await fetch(`${url}/v1/locks`)).json());
    await using chromium = await launchChromium();
    const page = await chromium.newPage();
    const load = async (path: string): Promise<number> => {
      await page.goto(url + path, { waitUntil: "domcontentloaded" });
      await page.waitForSelector("html[data-rendered]");
      const rows = await page.$$eval("tr[data-ref], tbody tr", (all) => all.length);
      if (rows < HOSTS) throw new Error(`${ID}: ${path} shows ${rows} rows, not ${HOSTS}`);
      return await page.evaluate(() =>
        performance.getEntriesByName("locks-rendered")[0]!.startTime
      );
    };
    const runs = options.quick ? 3 : 20;
    for (let i = 0; i < 2; i++) {
      await load("/");
      await load("/baseline");
    }
    const subject: number[] = [];
    const baseline: number[] = [];
    for (let i = 0; i < runs; i++) {
      const order = i % 2 === 0 ? ["/", "/baseline"] : ["/baseline", "/"];
      for (const path of order) (path === "/" ? subject : baseline).push(await load(path));
    }
    return [figure({
      id: ID,
      subject:
        `the status page's first render (navigation start to the table filled from /v1/events), ${HOSTS} locked hosts`,
      baseline: "a static page with the same table pre-rendered, from the same server",
      unit: "ms",
      method:
        `headless Chromium, performance mark read from the page, ${runs} interleaved loads each after 2 warm-ups, median`,
      extra: { hosts: HOSTS },
    }, { subject: sample(subject), baseline: sample(baseline) })];
  } finally {
    await server?.shutdown();
    await handler.close();
    for (const lock of locks) await lock.release().catch(() => {});
  }
}
