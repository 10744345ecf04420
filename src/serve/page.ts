/**
 * The status page `resource-locker serve` shows at `/`: plain HTML, CSS and JavaScript kept in this
 * module (no files read at run time, so an install from a URL and `deno compile` carry it).
 *
 * Every response carries a strict Content-Security-Policy (only this
 * server's own script, style and API; no inline code, no frames, no other
 * origin), `X-Content-Type-Options: nosniff`, and an ETag with
 * `Cache-Control: no-cache`, so a browser revalidates and gets `304` while
 * the page is unchanged.
 *
 * @module
 */

import { FAVICON_SVG, PAGE_HTML } from "./page_html.ts";
import { PAGE_JS } from "./page_script.ts";
import { PAGE_CSS } from "./page_style.ts";

/** The Content-Security-Policy of the page's responses. */
export const PAGE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

interface Asset {
  type: string;
  body: Uint8Array<ArrayBuffer>;
  etag: string;
}

/** FNV-1a, 32 bits: enough to tell one build of the page from another. */
function fnv1a(bytes: Uint8Array): string {
  let hash = 0x811c9dc5;
  for (const byte of bytes) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash.toString(16).padStart(8, "0");
}

function asset(type: string, text: string): Asset {
  const body = new TextEncoder().encode(text);
  return { type, body, etag: `"${fnv1a(body)}-${body.length.toString(16)}"` };
}

const ASSETS: ReadonlyMap<string, Asset> = new Map([
  ["/", asset("text/html; charset=utf-8", PAGE_HTML)],
  ["/app.js", asset("text/javascript; charset=utf-8", PAGE_JS)],
  ["/app.css", asset("text/css; charset=utf-8", PAGE_CSS)],
  ["/favicon.svg", asset("image/svg+xml", FAVICON_SVG)],
]);

/** Whether an `If-None-Match` header names this ETag (or is `*`). */
function matches(ifNoneMatch: string | null, etag: string): boolean {
  if (ifNoneMatch === null) return false;
  return ifNoneMatch.split(",").some((tag) => {
    const t = tag.trim();
    return t === "*" || t === etag || t === `W/${etag}`;
  });
}

/**
 * Answers a request for one of the page's own resources (`/`, `/app.js`,
 * `/app.css`, `/favicon.svg`), or `undefined` when the path is not the
 * page's or the method is neither GET nor HEAD (the server answers those).
 *
 * @param request the request
 * @returns the response, or undefined
 *
 * @example Serving the page
 * ```ts
 * import assert from "node:assert/strict";
 * import { servePage } from "./page.ts";
 * const page = servePage(new Request("http://127.0.0.1:8080/"))!;
 * assert.equal(page.status, 200);
 * assert.match(page.headers.get("content-security-policy")!, /script-src 'self'/);
 * assert.match(await page.text(), /<main>/);
 * const again = servePage(new Request("http://127.0.0.1:8080/", {
 *   headers: { "if-none-match": page.headers.get("etag")! },
 * }))!;
 * assert.equal(again.status, 304);
 * assert.equal(servePage(new Request("http://127.0.0.1:8080/v1/locks")), undefined);
 * ```
 */
export function servePage(request: Request): Response | undefined {
  if (request.method !== "GET" && request.method !== "HEAD") return undefined;
  const found = ASSETS.get(new URL(request.url).pathname);
  if (found === undefined) return undefined;
  const headers = new Headers({
    "content-type": found.type,
    "cache-control": "no-cache",
    "etag": found.etag,
    "content-security-policy": PAGE_CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
  });
  if (matches(request.headers.get("if-none-match"), found.etag)) {
    return new Response(null, { status: 304, headers });
  }
  headers.set("content-length", String(found.body.length));
  return new Response(request.method === "HEAD" ? null : found.body, { status: 200, headers });
}
