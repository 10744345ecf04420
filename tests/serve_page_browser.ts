/**
 * Debian's headless Chromium for the status page's tests and benchmark,
 * driven by puppeteer-core over a pipe (no debugging port; puppeteer-core
 * never downloads a browser). Every launch gets its own temporary profile,
 * removed at dispose; the browser is closed even when a test fails, and
 * killed when it will not close.
 *
 * @module
 */

import puppeteer, { type Browser, type Page } from "npm:puppeteer-core@25.16.0";

/** Where Debian's `chromium` package puts the browser; `CHROMIUM` overrides. */
export const CHROMIUM_PATH: string = Deno.env.get("CHROMIUM") ?? "/usr/bin/chromium";

/** Longest one browser action may take: every wait in the page tests is bounded by it. */
export const STEP_MS = 15_000;

/** Whether the browser is installed. */
export async function haveChromium(): Promise<boolean> {
  try {
    return (await Deno.stat(CHROMIUM_PATH)).isFile;
  } catch {
    return false;
  }
}

/** A running headless browser and its cleanup. */
export interface HeadlessBrowser extends AsyncDisposable {
  /** The driver's handle. */
  browser: Browser;
  /** Opens a tab whose waits are bounded by {@linkcode STEP_MS}. */
  newPage(): Promise<Page>;
}

/**
 * Starts headless Chromium with the flags a root CI run needs (no sandbox,
 * no GPU) and a temporary profile.
 */
export async function launchChromium(): Promise<HeadlessBrowser> {
  const profile = await Deno.makeTempDir({ prefix: "rl-chromium-" });
  let browser: Browser;
  try {
    browser = await puppeteer.launch({
      executablePath: CHROMIUM_PATH,
      pipe: true,
      headless: true,
      timeout: 30_000,
      protocolTimeout: 30_000,
      args: [
        "--no-sandbox",
        "--headless=new",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--metrics-recording-only",
        "--password-store=basic",
        `--user-data-dir=${profile}`,
      ],
    });
  } catch (error) {
    await Deno.remove(profile, { recursive: true }).catch(() => {});
    throw error;
  }
  return {
    browser,
    async newPage() {
      const page = await browser.newPage();
      page.setDefaultTimeout(STEP_MS);
      page.setDefaultNavigationTimeout(STEP_MS);
      return page;
    },
    async [Symbol.asyncDispose]() {
      const process = browser.process();
      let timer: ReturnType<typeof setTimeout> | undefined;
      try {
        await Promise.race([
          browser.close(),
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error("browser did not close")), 10_000);
          }),
        ]);
      } catch {
        process?.kill("SIGKILL");
      } finally {
        clearTimeout(timer);
        await Deno.remove(profile, { recursive: true }).catch(() => {});
      }
    },
  };
}
