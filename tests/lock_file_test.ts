/**
 * The lock-file format (src/lock_file.ts) and compatibility with the files
 * PowerShell writes: each fixture of tests/_fixtures.ts placed in a local
 * store is seen, shown, obeyed and released by the command line.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  decodeLockContent,
  decodeText,
  encodeLockContent,
  fromLocalTicks,
  toLocalTicks,
} from "../src/lock_file.ts";
import {
  encodeUtf16Le,
  type Fixture,
  ps51Json,
  PS_CALLER,
  PS_DESCRIPTION,
  PS_LOCKED_AT,
  psFields,
  psFixtures,
  windowsPowerShell51Lock,
} from "./_fixtures.ts";
import {
  expectedLocalTicks,
  lines,
  listNames,
  parseJsonExact,
  runCli,
  TEST_TZ,
  TEST_TZ_OFFSET_MINUTES,
  UNIX_EPOCH_TICKS,
} from "./_cli_helpers.ts";

const HOUR_TICKS = 60n * 60n * 10_000_000n;
const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Epoch milliseconds of local-clock ticks, computed with bigints. */
function msOfLocalTicks(ticks: bigint, offsetMinutes: number): number {
  return Number((ticks - UNIX_EPOCH_TICKS) / 10_000n) - offsetMinutes * 60_000;
}

// ---------------------------------------------------------------------------
// Ticks

Deno.test("toLocalTicks() counts 100 ns units since 0001-01-01 on the local clock", () => {
  assert.equal(toLocalTicks(0, 0), UNIX_EPOCH_TICKS);
  const at = Date.UTC(2026, 11, 1, 10, 0, 0, 123);
  assert.equal(toLocalTicks(at, 0), expectedLocalTicks(at, 0));
  // UTC+5:30 reads the wall clock 5.5 hours ahead; UTC-8 eight hours behind.
  assert.equal(toLocalTicks(at, 330) - toLocalTicks(at, 0), 11n * HOUR_TICKS / 2n);
  assert.equal(toLocalTicks(at, -480) - toLocalTicks(at, 0), -8n * HOUR_TICKS);
  // 2026-12-01T10:00:00.123 local is 639,000-odd thousand billion ticks, as PowerShell shows.
  assert.equal(toLocalTicks(at, 0), 639317160001230000n);
});

Deno.test("fromLocalTicks() inverts toLocalTicks() for every offset", () => {
  const times = [0, 1, Date.UTC(2026, 11, 1, 10, 45, 53, 704), 4102444800000];
  for (const offset of [-720, -480, -210, 0, 60, 330, 345, 840]) {
    for (const ms of times) {
      assert.equal(fromLocalTicks(toLocalTicks(ms, offset), offset), ms);
    }
  }
});

Deno.test("fromLocalTicks() reads PowerShell ticks as local time and drops sub-millisecond digits", () => {
  // 1234.5678 ms after the epoch, local clock at UTC.
  assert.equal(fromLocalTicks(UNIX_EPOCH_TICKS + 12_345_678n, 0), 1234);
  assert.equal(
    fromLocalTicks(PS_LOCKED_AT, TEST_TZ_OFFSET_MINUTES),
    msOfLocalTicks(PS_LOCKED_AT, TEST_TZ_OFFSET_MINUTES),
  );
  assert.equal(
    new Date(fromLocalTicks(PS_LOCKED_AT, 0)).toISOString(),
    "2026-12-01T10:45:53.704Z",
  );
});

// ---------------------------------------------------------------------------
// Exact integers, ASCII, CRLF

Deno.test("decodeLockContent() keeps ticks above 2^53 exactly, as bigint, and small integers as numbers", () => {
  const bytes = new TextEncoder().encode(
    '{"LockedAt": 639317187537041237, "UnlockedAt": 639317187537049999, "Holder": {"Pid": 42}}',
  );
  const content = decodeLockContent(bytes, 0);
  assert.equal(content.state, "ok");
  assert.equal(content.fields.LockedAt, 639317187537041237n);
  assert.equal(content.fields.UnlockedAt, 639317187537049999n);
  assert.deepEqual(content.fields.Holder, { Pid: 42 });
  // A double would have rounded it.
  assert.notEqual(BigInt(Number(639317187537041237n)), 639317187537041237n);
});

Deno.test("encodeLockContent() round trips every field exactly, bigints included", () => {
  const fields = {
    Caller: 'Gérard 😀 "quoted" back\\slash',
    Description: "Wartung – Köln €5\ttab",
    LockedAt: 639317187537041237n,
    LockedAtUtc: "2026-12-01T05:15:53.704Z",
    Type: "Host",
    SessionId: "3f2a0c1e-9d7b-4c55-8e21-0a1b2c3d4e5f",
    Holder: { Host: "vm01", Pid: 1234 },
    TtlSeconds: 1.5,
    UnlockedAt: 9223372036854775807n,
  };
  const bytes = encodeLockContent(fields);
  const text = new TextDecoder().decode(bytes);
  assert.match(text, /"LockedAt": 639317187537041237,/);
  assert.match(text, /"UnlockedAt": 9223372036854775807\r\n/);
  assert.deepEqual(decodeLockContent(bytes, 0).fields, fields);
  assert.deepEqual(parseJsonExact(text), fields);
});

Deno.test("encodeLockContent() writes pure ASCII, escaping every other character as \\uXXXX", () => {
  const bytes = encodeLockContent({
    Caller: "Gérard Dupré",
    Description: "€ – 東京 😀 \u007f",
  });
  for (const byte of bytes) assert.ok(byte < 0x80, `byte 0x${byte.toString(16)}`);
  const text = new TextDecoder().decode(bytes);
  assert.ok(text.includes('"G\\u00e9rard Dupr\\u00e9"'), text);
  assert.ok(text.includes("\\u20ac \\u2013 \\u6771\\u4eac \\ud83d\\ude00 \\u007f"), text);
  // Any reader, whatever encoding it assumes, gets the same characters back.
  for (const encoding of ["utf-8", "windows-1252"]) {
    const parsed = JSON.parse(new TextDecoder(encoding).decode(bytes));
    assert.equal(parsed.Caller, "Gérard Dupré");
    assert.equal(parsed.Description, "€ – 東京 😀 \u007f");
  }
});

Deno.test("encodeLockContent() ends every line with CRLF, the last one too", () => {
  const text = new TextDecoder().decode(
    encodeLockContent({ Caller: "a", Holder: { Host: "b", Pid: 1 } }),
  );
  assert.ok(text.endsWith("}\r\n"));
  assert.doesNotMatch(text, /[^\r]\n/);
  assert.doesNotMatch(text, /\r[^\n]/);
  assert.ok(lines(text).length >= 6);
});

// ---------------------------------------------------------------------------
// Reading what PowerShell writes

for (const fixture of psFixtures()) {
  Deno.test(`decodeLockContent() reads a lock file of ${fixture.name}`, () => {
    const content = decodeLockContent(fixture.bytes, TEST_TZ_OFFSET_MINUTES);
    const { expected } = fixture;
    assert.equal(content.state, expected.state);
    assert.equal(content.caller, expected.caller);
    assert.equal(content.description, expected.description);
    assert.deepEqual(content.fields, expected.fields);
    if (expected.state === "ok") {
      assert.equal(content.fields.LockedAt, PS_LOCKED_AT);
      assert.equal(
        content.lockedAt?.getTime(),
        msOfLocalTicks(PS_LOCKED_AT, TEST_TZ_OFFSET_MINUTES),
      );
    } else assert.equal(content.lockedAt, undefined);
  });
}

Deno.test("decodeText() reads Windows PowerShell 5.1 bytes in the Windows-1252 code page, not Latin-1", () => {
  const bytes = windowsPowerShell51Lock();
  assert.ok(bytes.includes(0x80) && bytes.includes(0x96)); // € and – in the ANSI code page
  const text = decodeText(bytes);
  assert.equal(text, ps51Json(psFields()));
  assert.ok(text.includes(PS_CALLER) && text.includes(PS_DESCRIPTION));
});

Deno.test("decodeText() reads UTF-16 with a big-endian BOM and UTF-16 LE without a BOM", () => {
  const json = ps51Json(psFields("Łukasz", "x"));
  const le = encodeUtf16Le(json);
  const be = new Uint8Array(le.length + 2);
  be.set([0xfe, 0xff]);
  for (let i = 0; i < le.length; i += 2) {
    be[i + 2] = le[i + 1]!;
    be[i + 3] = le[i]!;
  }
  assert.equal(decodeText(be), json);
  assert.equal(decodeText(le), json);
});

Deno.test("decodeLockContent() never throws: half-written or foreign content is unreadable, NUL padding is empty, a bare name is the caller", () => {
  const text = (value: string) => new TextEncoder().encode(value);
  const cases: [Uint8Array, string, string?][] = [
    [text('{\r\n    "Caller":  "x",\r\n'), "unreadable"],
    [text("[1, 2]"), "unreadable"],
    [text("42"), "unreadable"],
    [text("Line1\r\nLine2"), "unreadable"],
    [new Uint8Array([0, 0, 0, 0]), "empty"],
    [text(" \r\n\t"), "empty"],
    [new Uint8Array([0xef, 0xbb, 0xbf]), "empty"],
    [new Uint8Array([0xff, 0xfe]), "empty"],
    [text("Invoke-Maintenance\r\n"), "partial", "Invoke-Maintenance"],
    [text('"Invoke-Maintenance"'), "partial", "Invoke-Maintenance"],
  ];
  for (const [bytes, state, caller] of cases) {
    const content = decodeLockContent(bytes, 0);
    assert.equal(content.state, state, `${bytes}`);
    assert.equal(content.caller, caller, `${bytes}`);
    assert.deepEqual(content.fields, {});
  }
});

Deno.test("decodeLockContent() takes the time from LockedAtUtc over LockedAt ticks and reads ExpiresAtUtc", () => {
  const bytes = encodeLockContent({
    LockedAt: 1n,
    LockedAtUtc: "2026-12-01T10:00:00.000Z",
    ExpiresAtUtc: "2026-12-01T10:05:00.000Z",
    SessionId: "s-1",
  });
  const content = decodeLockContent(bytes, 330);
  assert.equal(content.lockedAt?.toISOString(), "2026-12-01T10:00:00.000Z");
  assert.equal(content.expiresAt?.toISOString(), "2026-12-01T10:05:00.000Z");
  assert.equal(content.sessionId, "s-1");
});

Deno.test("decodeText() takes a BOM only whole, and UTF-16 LE without a BOM only from two bytes whose second alone is NUL", () => {
  const cases: [number[], string][] = [
    // A BOM cut short is text in the ANSI code page, not a BOM.
    // After a UTF-8 BOM, UTF-8 even where a byte is not: no fallback to the ANSI code page.
    [[0xef, 0xbb, 0xbf, 0x41, 0xff], "A\ufffd"],
    [[0xef, 0xbb, 0x41], "ï»A"],
    [[0xef, 0x41, 0xbf], "ïA¿"],
    [[0x41, 0xbb, 0xbf], "A»¿"],
    [[0xff, 0x41], "ÿA"],
    [[0x41, 0xfe], "Aþ"],
    [[0xfe, 0x41], "þA"],
    [[0x41, 0xff], "Aÿ"],
    // UTF-16 LE without a BOM: a letter then NUL, from the first two bytes on.
    [[0x41, 0x00], "A"],
    [[0x41, 0x00, 0x42, 0x00], "AB"],
    [[0x41], "A"],
    [[0x00, 0x00, 0x41, 0x00], "\0\0A\0"],
    [[0x41, 0x42], "AB"],
  ];
  for (const [bytes, text] of cases) {
    assert.equal(decodeText(new Uint8Array(bytes)), text, JSON.stringify(bytes));
  }
});

Deno.test("decodeLockContent(): a cut or null document is unreadable; fields of the wrong type are left out", () => {
  const decode = (text: string) => decodeLockContent(new TextEncoder().encode(text), 0);
  // PowerShell 7 writes one line at a time; cut on its first line, it is still no caller name.
  assert.deepEqual(decode('{"Caller": "x",'), { state: "unreadable", fields: {} });
  assert.deepEqual(decode("null"), { state: "unreadable", fields: {} });
  assert.deepEqual(decode('{"Caller": "x"}'), {
    state: "ok",
    fields: { Caller: "x" },
    caller: "x",
  });
  const wrong = {
    Caller: 42,
    Description: false,
    SessionId: 7,
    LockedAtUtc: 0,
    LockedAt: [639317160001230000],
    ExpiresAtUtc: 1e12,
  };
  assert.deepEqual(decode(JSON.stringify(wrong)), {
    state: "ok",
    fields: { ...wrong, LockedAt: [639317160001230000n] },
  });
  const bad = decode(
    '{"LockedAtUtc": "not a date", "LockedAt": 639317160001230000, "ExpiresAtUtc": "soon"}',
  );
  assert.equal(bad.lockedAt?.toISOString(), "2026-12-01T10:00:00.123Z", "from the ticks");
  assert.equal("expiresAt" in bad, false);
  // JSON's 1e400 is Infinity: no ticks, and no RangeError out of a reader that never throws.
  assert.deepEqual(decode('{"LockedAt": 1e400}'), {
    state: "ok",
    fields: { LockedAt: Infinity },
  });
});

Deno.test("decodeLockContent() reads LockedAt ticks written as a string of digits or as a small number", () => {
  const decode = (text: string) => decodeLockContent(new TextEncoder().encode(text), 60);
  assert.equal(
    decode('{"LockedAt": "639317196001230000"}').lockedAt?.toISOString(),
    "2026-12-01T10:00:00.123Z",
  );
  assert.equal(decode('{"LockedAt": "63931719600123000x"}').lockedAt, undefined);
  assert.equal(
    decode('{"LockedAt": 36000000000}').lockedAt?.toISOString(),
    "0001-01-01T00:00:00.000Z",
  );
  assert.equal(
    decode('{"LockedAt": 36000009999.9}').lockedAt?.getTime(),
    fromLocalTicks(36000009999n, 60),
  );
});

// ---------------------------------------------------------------------------
// PowerShell's files in a real store, through the command line

const TZ_ENV = { TZ: TEST_TZ };

async function withStore(
  fn: (root: string, cli: (...args: string[]) => ReturnType<typeof runCli>) => Promise<void>,
): Promise<void> {
  const tmp = await Deno.makeTempDir({ prefix: "rl-lockfile-" });
  try {
    const root = join(tmp, "store");
    await Deno.mkdir(root);
    await Deno.writeTextFile(join(tmp, "no-deps.json"), "{}"); // a named map must exist
    const cli = (...args: string[]) =>
      runCli(args, {
        store: join(root, "{0}"),
        dependencies: join(tmp, "no-deps.json"),
        env: { ...TZ_ENV, XDG_STATE_HOME: join(tmp, "state") },
      });
    await fn(root, cli);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

function ascii(bytes: Uint8Array): string {
  for (const byte of bytes) assert.ok(byte < 0x80, `non-ASCII byte 0x${byte.toString(16)}`);
  return new TextDecoder().decode(bytes);
}

function assertTicksNear(
  actual: unknown,
  before: number,
  after: number,
  offsetMinutes: number,
): void {
  assert.equal(typeof actual, "bigint", `ticks should be a big integer, got ${typeof actual}`);
  const ticks = actual as bigint;
  const low = expectedLocalTicks(before, offsetMinutes) - 10_000n;
  const high = expectedLocalTicks(after, offsetMinutes) + 10_000n;
  assert.ok(ticks >= low && ticks <= high, `${ticks} not in [${low}, ${high}]`);
}

function expectedFields(fixture: Fixture): Record<string, unknown> {
  const fields: Record<string, unknown> = { ...fixture.expected.fields };
  // A file holding only the caller name is released with that name as Caller.
  if (fixture.expected.state === "partial") fields.Caller = fixture.expected.caller;
  return fields;
}

for (const fixture of psFixtures()) {
  Deno.test(`PowerShell Host.lock, ${fixture.name}: test and status see it, it blocks a Generic lock, unlock --force keeps its fields in History`, async () => {
    await withStore(async (root, cli) => {
      const folder = join(root, "dc01");
      await Deno.mkdir(folder);
      await Deno.writeFile(join(folder, "Host.lock"), fixture.bytes);

      const test = await cli("test", "dc01");
      assert.equal(test.code, 0, test.stderr);
      assert.equal(test.stdout, "locked\n");
      assert.equal((await cli("test", "DC01", "--type", "host")).code, 0);
      assert.equal((await cli("test", "dc01", "--type", "generic,file")).code, 1);

      const status = await cli("status", "dc01");
      assert.equal(status.code, 0, status.stderr);
      const [header, row, ...more] = lines(status.stdout);
      assert.match(header!, /^HOST\s+TYPE\s+CALLER/);
      assert.deepEqual(more, []);
      assert.match(row!, /^dc01\s+Host\s+/);
      if (fixture.expected.caller !== undefined) {
        assert.ok(row!.includes(fixture.expected.caller), row);
      } else assert.ok(row!.includes("unknown"), row);

      const json = await cli("status", "dc01", "--json");
      assert.equal(json.code, 0, json.stderr);
      const doc = JSON.parse(json.stdout);
      assert.equal(doc.version, 1);
      assert.equal(doc.locks.length, 1);
      const lock = doc.locks[0];
      assert.equal(lock.type, "Host");
      assert.equal(lock.content, fixture.expected.state);
      assert.equal(lock.caller, fixture.expected.caller ?? null);
      assert.equal(lock.description, fixture.expected.description ?? null);
      assert.equal(
        lock.lockedAt,
        fixture.expected.state === "ok"
          ? new Date(msOfLocalTicks(PS_LOCKED_AT, TEST_TZ_OFFSET_MINUTES)).toISOString()
          : null,
      );

      const blocked = await cli("lock", "dc01", "--retries", "1", "--timeout", "0");
      assert.equal(blocked.code, 3, blocked.stderr);
      assert.equal(blocked.stdout, "");
      const error = lines(blocked.stderr).at(-1)!;
      assert.match(error, /^Error: Cannot lock "dc01": Host lock held by /);
      assert.ok(
        error.includes(
          fixture.expected.caller !== undefined
            ? `"${fixture.expected.caller}"`
            : "an unknown caller",
        ),
        error,
      );
      assert.deepEqual(await listNames(folder), ["Host.lock"]);
      const hard = await cli("lock", "dc01", "--hard", "--retries", "1", "--timeout", "0");
      assert.equal(hard.code, 3, hard.stderr);

      const refused = await cli("unlock", "dc01/Host");
      assert.equal(refused.code, 2, refused.stderr);
      assert.deepEqual(await listNames(folder), ["Host.lock"]);

      const before = Date.now();
      const unlock = await cli("unlock", "dc01/Host", "--force");
      const after = Date.now();
      assert.equal(unlock.code, 0, unlock.stderr);
      assert.deepEqual(await listNames(folder), ["History"]);
      const history = await listNames(join(folder, "History"));
      assert.equal(history.length, 1);
      assert.match(history[0]!, /^Host\.lock-/);
      assert.match(history[0]!.slice("Host.lock-".length), GUID);

      const bytes = await Deno.readFile(join(folder, "History", history[0]!));
      const text = ascii(bytes);
      const fields = parseJsonExact(text) as Record<string, unknown>;
      const { UnlockedAt, UnlockedAtUtc, ...kept } = fields;
      assert.deepEqual(kept, expectedFields(fixture));
      assertTicksNear(UnlockedAt, before, after, TEST_TZ_OFFSET_MINUTES);
      if (fixture.expected.state === "ok") {
        assert.ok(text.includes(`"LockedAt": ${PS_LOCKED_AT},`), text);
      }
      assert.equal(typeof UnlockedAtUtc, "string");

      assert.equal((await cli("test", "dc01")).code, 1);
      const again = await cli("lock", "dc01", "--hard", "--retries", "1");
      assert.equal(again.code, 0, again.stderr);
      assert.equal((await cli("unlock", lines(again.stdout)[0]!)).code, 0);
    });
  });
}

Deno.test("PowerShell Generic-<guid>.lock is shared: Generic locks pass, a draining Host lock times out with exit 3 and leaves no Host.lock, unlock --force keeps its fields", async () => {
  await withStore(async (root, cli) => {
    const session = "0d5e4a7b-1c2f-4e3a-9b8c-7d6e5f4a3b2c";
    const name = `Generic-${session}.lock`;
    const folder = join(root, "hv01");
    await Deno.mkdir(folder);
    await Deno.writeFile(join(folder, name), windowsPowerShell51Lock());

    assert.equal((await cli("test", "hv01")).code, 0);
    assert.equal((await cli("test", "hv01", "--type", "generic")).code, 0);
    assert.equal((await cli("test", "hv01", "--type", "host")).code, 1);
    const status = JSON.parse((await cli("status", "hv01", "--json")).stdout);
    assert.equal(status.locks.length, 1);
    assert.equal(status.locks[0].type, "Generic");
    assert.equal(status.locks[0].caller, PS_CALLER);
    assert.equal(status.locks[0].sessionId, session);
    assert.equal(status.locks[0].ref, `hv01/Generic-${session}`);

    const shared = await cli("lock", "hv01", "--retries", "1");
    assert.equal(shared.code, 0, shared.stderr);
    assert.equal((await cli("unlock", lines(shared.stdout)[0]!)).code, 0);

    const start = Date.now();
    const drained = await cli(
      "lock",
      "hv01",
      "--hard",
      "--retries",
      "1",
      "--timeout",
      "0",
      "--drain-timeout",
      "200ms",
    );
    assert.equal(drained.code, 3, drained.stderr);
    assert.ok(Date.now() - start < 10_000);
    assert.equal(drained.stdout, "");
    const error = lines(drained.stderr).at(-1)!;
    assert.match(error, /^Error: Cannot lock "hv01": shared locks did not drain/);
    assert.ok(error.includes(`"${PS_CALLER}"`), error);
    assert.deepEqual(await listNames(folder), [name, "History"]);

    // --no-drain is the original's behaviour: the Host lock is taken at once.
    const noDrain = await cli("lock", "hv01", "--hard", "--no-drain", "--retries", "1");
    assert.equal(noDrain.code, 0, noDrain.stderr);
    assert.equal((await cli("unlock", lines(noDrain.stdout)[0]!)).code, 0);

    const before = Date.now();
    const unlock = await cli("unlock", `hv01/Generic-${session}`, "--force");
    const after = Date.now();
    assert.equal(unlock.code, 0, unlock.stderr);
    assert.ok(!(await listNames(folder)).includes(name));
    const history = await listNames(join(folder, "History"));
    assert.ok(history.includes(name), history.join());
    const fields = parseJsonExact(
      ascii(await Deno.readFile(join(folder, "History", name))),
    ) as Record<string, unknown>;
    const { UnlockedAt, UnlockedAtUtc: _utc, ...kept } = fields;
    assert.deepEqual(kept, Object.fromEntries(psFields()));
    assertTicksNear(UnlockedAt, before, after, TEST_TZ_OFFSET_MINUTES);
  });
});

Deno.test("lock writes Caller, Description, LockedAt as local-clock ticks, LockedAtUtc, Type, SessionId and Holder, in ASCII with CRLF", async () => {
  await withStore(async (root, cli) => {
    const before = Date.now();
    const result = await cli(
      "lock",
      "dc01",
      "--hard",
      "--caller",
      "Gérard 😀",
      "--description",
      "patch – KB5000",
    );
    const after = Date.now();
    assert.equal(result.code, 0, result.stderr);
    const [ref] = lines(result.stdout);
    const session = /^dc01\/Host@(.+)$/.exec(ref!)?.[1];
    assert.match(session!, GUID);

    const bytes = await Deno.readFile(join(root, "dc01", "Host.lock"));
    const text = ascii(bytes);
    assert.ok(text.endsWith("}\r\n"));
    assert.doesNotMatch(text, /[^\r]\n/);
    assert.match(text, /"LockedAt": \d{18},/);
    const fields = parseJsonExact(text) as Record<string, unknown>;
    assert.equal(fields.Caller, "Gérard 😀");
    assert.equal(fields.Description, "patch – KB5000");
    assert.equal(fields.Type, "Host");
    assert.equal(fields.SessionId, session);
    assertTicksNear(fields.LockedAt, before, after, TEST_TZ_OFFSET_MINUTES);
    const utc = Date.parse(fields.LockedAtUtc as string);
    assert.ok(utc >= before - 1 && utc <= after + 1);
    assert.equal(fields.LockedAtUtc, new Date(utc).toISOString());
    // LockedAt is the same instant on the local clock: 5h30 ahead of UTC.
    assert.equal(fields.LockedAt, expectedLocalTicks(utc, TEST_TZ_OFFSET_MINUTES));
    const holder = fields.Holder as { Host?: unknown; Pid?: unknown };
    assert.equal(holder.Host, Deno.hostname());
    assert.ok(Number.isInteger(holder.Pid) && (holder.Pid as number) > 0);
    assert.equal(fields.ExpiresAtUtc, undefined);

    const release = await cli("unlock", ref!);
    assert.equal(release.code, 0, release.stderr);
    const [entry] = await listNames(join(root, "dc01", "History"));
    const released = parseJsonExact(
      ascii(await Deno.readFile(join(root, "dc01", "History", entry!))),
    ) as Record<string, unknown>;
    const { UnlockedAt, UnlockedAtUtc: _utc, ...kept } = released;
    assert.deepEqual(kept, fields);
    assert.ok((UnlockedAt as bigint) >= (fields.LockedAt as bigint));
  });
});
