/**
 * The status page `resource-locker serve` shows at `/`: plain HTML, CSS and JavaScript kept in this
 * module (no files read at run time, so an install from a URL and `deno compile` carry it).
 *
 * @module
 */

/**
 * Answers a request for one of the page's own resources (`/`, its script, its style sheet), or
 * `undefined` when the path is not the page's.
 */
export function servePage(_request: Request): Response | undefined {
  return undefined;
}
