// Type-checks dashboard JSON files against types.ts with `tsc --strict`: node check.mjs FILE.json...
// (default: ../dashboards/*.json). Each file becomes `const dashboard: Dashboard = <its JSON>;` in a scratch
// folder here (so @grafana/schema resolves from node_modules); exits with tsc's status.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const given = process.argv.slice(2);
const files = given.length
  ? given.map((f) => resolve(f))
  : readdirSync(join(here, "..", "dashboards"))
      .filter((f) => f.endsWith(".json"))
      .map((f) => join(here, "..", "dashboards", f));
if (!files.length) {
  console.error("no dashboard files to check");
  process.exit(2);
}
const scratch = mkdtempSync(join(here, ".generated-"));
try {
  const sources = files.map((file, i) => {
    const name = join(scratch, `${i}-${basename(file, ".json").replace(/[^A-Za-z0-9_-]/g, "_")}.ts`);
    const json = JSON.stringify(JSON.parse(readFileSync(file, "utf8")), null, 2);
    writeFileSync(name, `// ${file}\nimport type { Dashboard } from "../types";\n\nexport const dashboard: Dashboard = ${json};\n`);
    return name;
  });
  const config = { extends: "../tsconfig.json", files: ["../types.ts", ...sources.map((s) => basename(s))] };
  writeFileSync(join(scratch, "tsconfig.json"), JSON.stringify(config, null, 2));
  const tsc = join(here, "node_modules", "typescript", "bin", "tsc");
  const run = spawnSync(process.execPath, [tsc, "-p", scratch], { encoding: "utf8" });
  process.stdout.write(run.stdout + run.stderr);
  if (run.status === 0) console.log(`${files.length} dashboard(s) match @grafana/schema`);
  process.exitCode = run.status ?? 1;
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
