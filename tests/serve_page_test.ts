/// <reference lib="dom" />
/**
 * The status page of `resource-locker serve` (issue 17): its responses'
 * headers, and the page itself in a real browser (Debian's headless
 * Chromium driven by puppeteer-core) over real HTTP against a local store:
 * a lock taken and released by the command line appears and goes without a
 * reload; a break without the token is refused with the server's message
 * and the lock stays; with the token it goes; stale locks are marked in
 * text; a hostile caller name shows as text; a host's History opens on
 * click; at 375px there is no horizontal scroll; the text's contrast is at
 * least 4.5:1; the stream failing falls back to polling.
 *
 * `deno test -A tests/serve_page_test.ts -- --update` (or `UPDATE=1`)
 * rewrites docs/serve.png; a normal run writes the screenshot to a
 * temporary file.
 *
 * @module
 */

import { join } from "node:path";
import type { Page } from "npm:puppeteer-core@25.16.0";
import { assertEquals, assertOk, assertStringIncludes } from "./_assert.ts";
import { lockResource } from "../mod.ts";
import { servePage } from "../src/serve/page.ts";
import { FakeClock, tempStore, underCi } from "./_helpers.ts";
import { REPO_ROOT, runCli } from "./_cli_helpers.ts";
import { createHandler, startServer } from "../src/serve/server.ts";
import { haveChromium, launchChromium, STEP_MS } from "./serve_page_browser.ts";

const ORIGIN = "http://127.0.0.1:8080";

Deno.test("servePage() answers its four resources with a strict CSP, nosniff and an ETag", async () => {
  const types: Record<string, RegExp> = {
    "/": /^text\/html; charset=utf-8$/,
    "/app.js": /^text\/javascript; charset=utf-8$/,
    "/app.css": /^text\/css; charset=utf-8$/,
    "/favicon.svg": /^image\/svg\+xml$/,
  };
  for (const [path, type] of Object.entries(types)) {
    const response = servePage(new Request(ORIGIN + path))!;
    assertEquals(response.status, 200, path);
    assertOk(type.test(response.headers.get("content-type")!), path);
    const csp = response.headers.get("content-security-policy")!;
    assertStringIncludes(csp, "default-src 'none'");
    assertStringIncludes(csp, "script-src 'self'");
    assertStringIncludes(csp, "style-src 'self'");
    assertStringIncludes(csp, "frame-ancestors 'none'");
    assertOk(!/unsafe-inline|unsafe-eval|\*/.test(csp), csp);
    assertEquals(response.headers.get("x-content-type-options"), "nosniff");
    assertEquals(response.headers.get("cache-control"), "no-cache");
    const etag = response.headers.get("etag")!;
    assertOk(/^"[0-9a-f]+-[0-9a-f]+"$/.test(etag), etag);
    const body = await response.text();
    assertEquals(
      Number(response.headers.get("content-length")),
      new TextEncoder().encode(body).length,
    );
    const again = servePage(
      new Request(ORIGIN + path, { headers: { "if-none-match": `"other", W/${etag}` } }),
    )!;
    assertEquals(again.status, 304);
    assertEquals(await again.text(), "");
    const stale = servePage(new Request(ORIGIN + path, { headers: { "if-none-match": '"x"' } }))!;
    assertEquals(stale.status, 200);
    await stale.body?.cancel();
    const head = servePage(new Request(ORIGIN + path, { method: "HEAD" }))!;
    assertEquals(head.status, 200);
    assertEquals(head.body, null);
    assertEquals(head.headers.get("etag"), etag);
  }
});

Deno.test("servePage() leaves the API, other paths and other methods to the server", () => {
  for (const path of ["/v1/locks", "/metrics", "/index.htm", "/app.js/x", "/../app.js.map"]) {
    assertEquals(servePage(new Request(ORIGIN + path)), undefined, path);
  }
  for (const method of ["POST", "PUT", "DELETE", "OPTIONS"]) {
    assertEquals(servePage(new Request(ORIGIN + "/", { method })), undefined, method);
  }
});

Deno.test("the page's HTML has no inline script, style or handler, so the CSP needs no exception", async () => {
  const html = await servePage(new Request(ORIGIN + "/"))!.text();
  for (const match of html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)) {
    assertOk(/\bsrc="\/app\.js"/.test(match[1]!), match[0]);
    assertEquals(match[2], "");
  }
  assertOk(!/<style\b/i.test(html), "a <style> element");
  assertOk(!/\sstyle=/i.test(html), "a style attribute");
  assertOk(!/\son[a-z]+=/i.test(html), "an event handler attribute");
  assertOk(/<meta name="viewport" content="width=device-width, initial-scale=1">/.test(html));
  assertOk(/<html lang="en">/.test(html));
  const js = await servePage(new Request(ORIGIN + "/app.js"))!.text();
  assertOk(
    !/innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(/.test(js),
    "HTML parsing",
  );
  assertOk(!/localStorage|console\./.test(js), "token storage or logging");
});

// ---------------------------------------------------------------------------------------------
// The page in a real browser.

const TOKEN = "page-test-token-7f3a9c";
const HOSTILE = `<img src=x onerror="window.__pwned=1">`;

/** The server of `resource-locker serve` over a local store, with the test's token. */
function serverOptions(store: string, map: string) {
  return {
    store,
    dependenciesFile: map,
    port: 0,
    tokens: [{ name: "page-test", token: TOKEN }],
    refreshInterval: "200ms",
  };
}

/**
 * The same server's handler behind a listener whose event stream always
 * fails (404), as a proxy that cuts streams would: the page must poll.
 */
async function startServerWithoutEvents(store: string, map: string) {
  const handler = await createHandler(serverOptions(store, map));
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (request, info) =>
      new URL(request.url).pathname === "/v1/events"
        ? new Response("no streams here", { status: 404 })
        : handler.handle(request, info),
  );
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    async [Symbol.asyncDispose]() {
      await handler.close();
      await server.shutdown();
    },
  };
}

/** A store with a group `web` (web01, web02; max 1), an expired lock on web01 and a hostile caller on db01. */
async function world() {
  const t = await tempStore();
  const map = join(t.root, "map.json");
  await Deno.writeTextFile(
    map,
    JSON.stringify({ "@groups": [{ name: "web", members: ["web01", "web02"], max: 1 }] }),
  );
  const options = { store: t.store, dependencies: {} };
  // A lock taken an hour ago with a one-minute lease that nobody renewed: expired, so stale.
  const past = new FakeClock(Date.now() - 3_600_000);
  await lockResource("web01", { ...options, caller: "patch-run", ttl: "1m", clock: past });
  const hostile = await lockResource("db01", {
    ...options,
    caller: HOSTILE,
    description: "nightly backup",
  });
  const earlier = await lockResource("db01", { ...options, caller: "earlier-job" });
  await earlier.release();
  // A host that cannot be read: a folder where its Host lock file should be.
  await Deno.mkdir(join(t.root, "nas01", "Host.lock"), { recursive: true });
  return { t, map, hostile };
}

function cliEnv(store: string, map: string) {
  return { store, dependencies: map };
}

async function rowText(page: Page, caller: string): Promise<string | undefined> {
  return await page.evaluate((c) => {
    for (const row of document.querySelectorAll("#fleet tr[data-ref]")) {
      if (row.querySelector(".caller")?.textContent === c) return row.textContent ?? "";
    }
    return undefined;
  }, caller);
}

function waitForRow(page: Page, caller: string, present: boolean) {
  return page.waitForFunction(
    (c, p) =>
      [...document.querySelectorAll("#fleet tr[data-ref] .caller")].some((e) =>
        e.textContent === c
      ) === p,
    { timeout: STEP_MS, polling: 100 },
    caller,
    present,
  );
}

/** Text elements whose contrast with their background is below 4.5:1. */
function lowContrast(page: Page): Promise<string[]> {
  return page.evaluate(() => {
    function rgb(value: string): number[] | undefined {
      const m = /rgba?\(([\d.]+),? ([\d.]+),? ([\d.]+)(?:,? \/? ?([\d.]+))?\)/.exec(value);
      if (!m) return undefined;
      return [Number(m[1]), Number(m[2]), Number(m[3]), m[4] === undefined ? 1 : Number(m[4])];
    }
    function luminance(c: number[]): number {
      const [r, g, b] = c.slice(0, 3).map((v) => {
        const s = v / 255;
        return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
      });
      return 0.2126 * r! + 0.7152 * g! + 0.0722 * b!;
    }
    function background(el: Element | null): number[] {
      for (; el; el = el.parentElement) {
        const c = rgb(getComputedStyle(el).backgroundColor);
        if (c && c[3]! > 0.5) return c;
      }
      return [255, 255, 255, 1];
    }
    const bad: string[] = [];
    for (const el of document.querySelectorAll("body *")) {
      const own = [...el.childNodes].some((n) =>
        n.nodeType === Node.TEXT_NODE && n.textContent!.trim() !== ""
      );
      const box = el.getBoundingClientRect();
      if (!own || box.width <= 1 || box.height <= 1) continue;
      const fg = rgb(getComputedStyle(el).color)!;
      const l1 = luminance(fg);
      const l2 = luminance(background(el));
      const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
      if (ratio < 4.5) bad.push(`${el.tagName} "${el.textContent!.trim()}" ${ratio.toFixed(2)}`);
    }
    return bad;
  });
}

const UPDATE = Deno.args.includes("--update") || Deno.env.get("UPDATE") === "1";

async function browserOrSkip(): Promise<boolean> {
  if (await haveChromium()) return true;
  if (underCi()) {
    throw new Error("chromium is missing: .ci/run installs Debian's chromium");
  }
  console.warn("chromium is missing: the page's browser tests are skipped (CI fails instead)");
  return false;
}

Deno.test("the status page in headless Chromium: live locks, stale marks, escaping, History, break with and without the token", async (t) => {
  if (!await browserOrSkip()) return;
  const { t: store, map, hostile } = await world();
  await using _store = store;
  await using server = await startServer(serverOptions(store.store, map));
  await using chromium = await launchChromium();
  const page = await chromium.newPage();
  const problems: string[] = [];
  page.on("console", (m) => {
    // The browser itself logs the refused break's 401; anything else is a fault of the page.
    const expected = /^Failed to load resource: .* 401 \(Unauthorized\)$/.test(m.text());
    if ((m.type() === "error" || m.type() === "warn") && !expected) {
      problems.push(`console ${m.type()}: ${m.text()}`);
    }
  });
  page.on("pageerror", (e) => problems.push(`page error: ${(e as Error).message}`));
  await page.setViewport({ width: 1100, height: 800 });
  await page.goto(server.url + "/");
  await page.waitForSelector("html[data-rendered]");
  await page.evaluate(() => (window as unknown as { __sameLoad: number }).__sameLoad = 1);

  await t.step(
    "groups the hosts: web01 under its group, db01 among the hosts in no group",
    async () => {
      const sections = await page.$$eval("#fleet section", (all) =>
        all.map((s) => ({
          title: s.querySelector("h2")!.textContent,
          hosts: [...s.querySelectorAll("tbody th[scope=row]")].map((h) => h.textContent),
          caption: s.querySelector("caption")?.textContent ?? null,
        })));
      assertEquals(sections, [
        { title: "Group web", hosts: ["web01"], caption: "Locks of Group web" },
        { title: "Hosts in no group", hosts: ["db01"], caption: "Locks of Hosts in no group" },
      ]);
      const top = await page.evaluate(() => ({
        summary: document.getElementById("summary")!.textContent,
        failures: [...document.querySelectorAll("#failures p")].map((p) => p.textContent),
      }));
      assertEquals(top.summary, "2 locks on 2 hosts (3 hosts looked at), 1 stale.");
      assertEquals(top.failures.length, 1, top.failures.join("\n"));
      assertOk(top.failures[0]!.startsWith("Cannot read nas01: "), top.failures[0]);
      assertStringIncludes(top.failures[0]!, "Host.lock");
      const info = await page.$eval("#fleet section .group-info", (p) => p.textContent);
      assertEquals(info, "0 of 1 in maintenance, 1 free; members: web01, web02");
      const headers = await page.$$eval(
        "#fleet thead th",
        (ths) => ths.slice(0, 9).map((th) => `${th.getAttribute("scope")}:${th.textContent}`),
      );
      assertEquals(headers, [
        "col:Host",
        "col:Type",
        "col:Caller",
        "col:Description",
        "col:Holder",
        "col:Age",
        "col:Lease left",
        "col:State",
        "col:Action",
      ]);
    },
  );

  await t.step("marks the expired lock stale in words, and the others held", async () => {
    const stale = (await rowText(page, "patch-run"))!;
    assertStringIncludes(stale, "Stale: lease expired");
    assertStringIncludes(stale, "expired");
    const held = (await rowText(page, HOSTILE))!;
    assertStringIncludes(held, "Held");
    assertStringIncludes(held, "never");
    assertStringIncludes(held, `(pid ${Deno.pid})`);
    assertStringIncludes(held, "nightly backup");
  });

  await t.step("shows a hostile caller name as text: no element made, no script run", async () => {
    const seen = await page.evaluate(() => ({
      images: document.querySelectorAll("img").length,
      pwned: (window as unknown as { __pwned?: number }).__pwned ?? null,
    }));
    assertEquals(seen, { images: 0, pwned: null });
    assertOk(await rowText(page, HOSTILE) !== undefined, "the caller's text is in a cell");
  });

  await t.step("the ages tick without a new document", async () => {
    // The lock on db01 is seconds old, so its age changes every second.
    const age = () =>
      document.querySelector("#fleet section[data-section=nogroup] .age")!.textContent;
    const before = await page.evaluate(age);
    assertOk(/^\d+s$/.test(before!), before!);
    await page.waitForFunction(
      (b) => document.querySelector("#fleet section[data-section=nogroup] .age")!.textContent !== b,
      { timeout: 5_000 },
      before,
    );
  });

  let liveRefs = "";
  await t.step(
    "a Host lock taken by the command line appears without a reload, takes its group's slot, and is announced",
    async () => {
      const taken = await runCli(
        ["lock", "web02", "--hard", "--caller", "live-test", "--description", "kernel update"],
        cliEnv(store.store, map),
      );
      assertEquals(taken.code, 0, taken.stderr);
      liveRefs = taken.stdout;
      const liveRef = liveRefs.trim().split("\n").at(-1)!;
      await waitForRow(page, "live-test", true);
      const row = (await rowText(page, "live-test"))!;
      assertStringIncludes(row, "web02");
      assertStringIncludes(row, "Host");
      await page.waitForFunction(
        () =>
          document.querySelector("#fleet .group-info")!.textContent ===
            "1 of 1 in maintenance (web02), 0 free; members: web01, web02",
        { timeout: STEP_MS },
      );
      assertStringIncludes(row, "kernel update");
      await page.waitForFunction(
        (r) =>
          document.getElementById("announce")!.textContent!.includes(
            `Lock ${r} taken by live-test`,
          ),
        { timeout: STEP_MS },
        liveRef,
      );
      assertEquals(
        await page.evaluate(() => (window as unknown as { __sameLoad?: number }).__sameLoad),
        1,
      );
    },
  );

  await t.step("a host's History opens on click", async () => {
    await page.click('#fleet button.host[data-host="db01"]');
    await page.waitForSelector("#history-body table");
    const history = await page.evaluate(() => ({
      hidden: document.getElementById("history")!.hidden,
      title: document.getElementById("history-title")!.textContent,
      focused: document.activeElement?.id,
      callers: [...document.querySelectorAll("#history-body tbody tr td:nth-child(2)")].map((e) =>
        e.textContent
      ),
    }));
    assertEquals(history, {
      hidden: false,
      title: "History of db01",
      focused: "history-title",
      callers: ["earlier-job"],
    });
  });

  await t.step("screenshot", async () => {
    await page.evaluate(() => globalThis.scrollTo(0, 0));
    const path = UPDATE
      ? join(REPO_ROOT, "docs", "serve.png")
      : await Deno.makeTempFile({ prefix: "rl-serve-", suffix: ".png" });
    if (UPDATE) await Deno.mkdir(join(REPO_ROOT, "docs"), { recursive: true });
    await page.screenshot({ path: path as `${string}.png`, fullPage: true });
    const size = (await Deno.stat(path)).size;
    if (!UPDATE) await Deno.remove(path);
    assertOk(size > 5_000, `screenshot of ${size} bytes`);
  });

  await t.step("the text has a contrast of at least 4.5:1", async () => {
    assertEquals(await lowContrast(page), []);
  });

  await t.step("a lock released by the command line disappears without a reload", async () => {
    const released = await runCli(["unlock", "-"], {
      ...cliEnv(store.store, map),
      stdin: liveRefs,
    });
    assertEquals(released.code, 0, released.stderr);
    await waitForRow(page, "live-test", false);
    assertEquals(
      await page.evaluate(() => (window as unknown as { __sameLoad?: number }).__sameLoad),
      1,
    );
  });

  await t.step(
    "a break with a wrong token is refused: the server's message shown, the lock kept",
    async () => {
      await page.click(`#fleet button.break[data-ref="${hostile.refs[0]}"]`);
      await page.waitForSelector("#break-dialog[open]");
      assertEquals(await page.evaluate(() => document.activeElement?.id), "break-reason");
      await page.type("#break-reason", "stuck backup");
      // No token at all: the page asks for one and sends nothing.
      let posted = 0;
      const count = (r: { method(): string }) => void (r.method() === "POST" && posted++);
      page.on("request", count);
      await page.click("#break-submit");
      assertEquals(
        await page.$eval("#break-error", (e) => e.textContent),
        "Give the access token.",
      );
      assertEquals(await page.evaluate(() => document.activeElement?.id), "break-token");
      assertEquals(posted, 0);
      await page.type("#break-token", "not-the-token");
      await page.click("#break-submit");
      await page.waitForFunction(
        () => document.getElementById("break-error")!.textContent !== "",
        { timeout: STEP_MS },
      );
      assertEquals(
        await page.$eval("#break-error", (e) => e.textContent),
        "Not broken: Unauthorized: a valid bearer token is needed to write",
      );
      page.off("request", count);
      assertEquals(posted, 1);
      const still = await runCli(["status", "db01", "--json"], cliEnv(store.store, map));
      assertStringIncludes(still.stdout, hostile.refs[0]!);
      assertOk(await rowText(page, HOSTILE) !== undefined, "the row is still there");
    },
  );

  await t.step("a break with the token moves the lock into History with the reason", async () => {
    await page.$eval("#break-token", (e) => (e as HTMLInputElement).value = "");
    await page.type("#break-token", TOKEN);
    await page.click("#break-submit");
    await page.waitForSelector("#break-dialog", { hidden: true });
    await waitForRow(page, HOSTILE, false);
    const history = await runCli(["history", "db01", "--json"], cliEnv(store.store, map));
    const entry = JSON.parse(history.stdout).entries[0];
    assertEquals([entry.caller, entry.breakReason], [
      HOSTILE,
      "stuck backup (by serve/page-test@127.0.0.1)",
    ]);
  });

  await t.step(
    "works with the keyboard: Tab reaches a Break button, Enter opens, Escape closes",
    async () => {
      await page.focus("#fleet button.host");
      let name = "";
      for (let i = 0; i < 5 && !name.startsWith("Break lock"); i++) {
        await page.keyboard.press("Tab");
        name = await page.evaluate(() => document.activeElement?.getAttribute("aria-label") ?? "");
      }
      assertOk(name.startsWith("Break lock"), name);
      await page.keyboard.press("Enter");
      await page.waitForSelector("#break-dialog[open]");
      await page.keyboard.press("Escape");
      await page.waitForSelector("#break-dialog", { hidden: true });
    },
  );

  await t.step("at 375px wide there is no horizontal scroll; each lock is a card", async () => {
    await page.setViewport({ width: 375, height: 740, isMobile: true, hasTouch: true });
    await page.reload();
    await page.waitForSelector("html[data-rendered]");
    const layout = await page.evaluate(() => ({
      scroll: document.documentElement.scrollWidth,
      client: document.documentElement.clientWidth,
      display: getComputedStyle(document.querySelector("#fleet tr[data-ref]")!).display,
      label: getComputedStyle(document.querySelector("#fleet td[data-label]")!, "::before").content,
    }));
    assertOk(layout.scroll <= layout.client, JSON.stringify(layout));
    assertEquals(layout.display, "block");
    assertEquals(layout.label, '"Type: "');
    assertEquals(await lowContrast(page), []);
  });

  assertEquals(problems, []);
});

Deno.test("the status page falls back to polling /v1/locks when the event stream fails", async () => {
  if (!await browserOrSkip()) return;
  const { t: store, map, hostile } = await world();
  await using _store = store;
  await using server = await startServerWithoutEvents(store.store, map);
  await using chromium = await launchChromium();
  const page = await chromium.newPage();
  await page.goto(server.url + "/");
  await page.waitForSelector("html[data-rendered]");
  assertOk(await rowText(page, HOSTILE) !== undefined);
  assertEquals(await page.$eval("#connection", (e) => e.getAttribute("data-mode")), "polling");
  await hostile.release();
  await waitForRow(page, HOSTILE, false);
});

Deno.test("the serve command's server delivers the page over HTTP with its headers, HEAD and 304", async () => {
  await using store = await tempStore();
  await using server = await startServer({ store: store.store, port: 0 });
  for (const path of ["/", "/app.js", "/app.css", "/favicon.svg"]) {
    const got = await fetch(server.url + path);
    const body = await got.text();
    assertEquals(got.status, 200, path);
    assertEquals(body, await servePage(new Request(ORIGIN + path))!.text());
    assertStringIncludes(got.headers.get("content-security-policy")!, "script-src 'self'");
    assertEquals(got.headers.get("x-content-type-options"), "nosniff");
    const etag = got.headers.get("etag")!;
    const again = await fetch(server.url + path, { headers: { "if-none-match": etag } });
    await again.body?.cancel();
    assertEquals(again.status, 304, path);
    const head = await fetch(server.url + path, { method: "HEAD" });
    assertEquals([head.status, head.headers.get("etag"), await head.text()], [200, etag, ""]);
  }
});
