import {
  assertEquals,
  assertNoRawControl,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from "./_assert.ts";
import { getResourceDependence, InputError } from "../mod.ts";
import {
  readDependencyMap,
  resolveDependencies,
  validateDependencyMap,
} from "../src/dependencies.ts";

const README_MAP = { hv01: ["dc01", "vmm01"], dc01: ["dc02"], dc02: ["dc01"] };

Deno.test("resolveDependencies() gives the original README's answers", () => {
  assertEquals(resolveDependencies("dc01", README_MAP), ["dc02", "hv01"]);
  assertEquals(resolveDependencies("dc02", README_MAP), ["dc01", "hv01"]);
  assertEquals(resolveDependencies("vmm01", README_MAP), ["hv01"]);
  assertEquals(resolveDependencies("hv01", README_MAP), []);
});

Deno.test("resolveDependencies() orders direct hosts by name, then each further level by name", () => {
  const map = { z1: ["a"], b1: ["a"], y2: ["z1"], c2: ["b1"], x3: ["c2", "y2"] };
  assertEquals(resolveDependencies("a", map), ["b1", "z1", "c2", "y2", "x3"]);
});

Deno.test("resolveDependencies() survives cycles and never lists the host itself", () => {
  const map = { a: ["b"], b: ["c"], c: ["a"] };
  assertEquals(resolveDependencies("a", map), ["c", "b"]);
  assertEquals(resolveDependencies("b", map), ["a", "c"]);
});

Deno.test("resolveDependencies() ignores case as PowerShell's -in does", () => {
  const map = validateDependencyMap({ HV01: ["DC01"] }, "test");
  assertEquals(resolveDependencies("dc01", map), ["hv01"]);
  assertEquals(resolveDependencies("Dc01", map), ["hv01"]);
});

Deno.test("validateDependencyMap() accepts PowerShell's single string for a one-element array", () => {
  assertEquals(resolveDependencies("dc01", validateDependencyMap({ hv01: "dc01" }, "t")), ["hv01"]);
});

Deno.test("readDependencyMap() treats a missing optional file as no dependencies, a missing named one as an error", async () => {
  const path = "/nonexistent/ResourceLocker-Dependencies.json";
  assertEquals(await readDependencyMap(path, { optional: true }), {});
  const error = await assertRejects(() => readDependencyMap(path), InputError);
  assertStringIncludes(error.message, path);
});

Deno.test("readDependencyMap() names the file and the place of a malformed map", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const cases: [string, RegExp][] = [
      ["{ not json", /not JSON/],
      ['["hv01"]', /expected an object/],
      ['{"hv01": 5}', /at "hv01": expected an array/],
      ['{"hv01": ["dc01", 7]}', /at "hv01"\[1\]: expected a host name/],
      ['{"hv01": ["../etc"]}', /at "hv01"\[0\]: Invalid host name/],
      ['{"a/b": []}', /at "a\/b": Invalid host name/],
    ];
    for (const [text, pattern] of cases) {
      const path = `${dir}/map.json`;
      await Deno.writeTextFile(path, text);
      const error = await assertRejects(() => readDependencyMap(path), InputError);
      assertEquals(pattern.test(error.message), true, `${text}: ${error.message}`);
      assertEquals(error.message.includes(path), true, error.message);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readDependencyMap() shows the control characters of a hostile map's JSON error escaped, never raw", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/map.json`;
    // JSON.parse's message quotes the text around the fault
    await Deno.writeTextFile(path, '{"hv01": \u001b[2J\u001b]0;owned\u0007}');
    const error = await assertRejects(() => readDependencyMap(path), InputError);
    assertStringIncludes(error.message, "not JSON");
    assertNoRawControl(error.message, "the error");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readDependencyMap() reads a file with a UTF-8 BOM as PowerShell writes it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/map.json`;
    await Deno.writeTextFile(path, "\uFEFF" + JSON.stringify(README_MAP));
    assertEquals(resolveDependencies("dc01", await readDependencyMap(path)), ["dc02", "hv01"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("getResourceDependence() reads the file it is given", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/deps.json`;
    await Deno.writeTextFile(file, JSON.stringify(README_MAP));
    assertEquals(await getResourceDependence("DC02", { file }), ["dc01", "hv01"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("getResourceDependence() rejects a bad host name", () => {
  assertThrows(() => resolveDependencies("../x", README_MAP), InputError);
});
