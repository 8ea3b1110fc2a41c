// Validates custom resources (the Kubernetes objects kubernetes-validate has no schema for)
// against their projects' published CRD schemas, as the pinned @kubernetes-models packages
// (package.json) carry them, in two passes:
// 1. the compiled schema validators: types, enums, patterns and required fields;
// 2. unknown fields, which those schemas (like the API server's) let through and
//    `kubectl apply` refuses with its default strict field validation: each object is
//    type-checked by the pinned TypeScript compiler as a literal of the model's interface,
//    generated from the same schema, and tsc names any field the interface does not have.
// Usage: node scripts/validate_crds.mjs objects.json   (a JSON array of objects)
// Exit 0 when every object is valid; 1 with one line per problem otherwise.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Certificate } from "@kubernetes-models/cert-manager/cert-manager.io/v1/Certificate";
import { ExternalSecret } from "@kubernetes-models/external-secrets/external-secrets.io/v1/ExternalSecret";

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const MODULES = {
  "cert-manager.io/v1 Certificate": {
    model: Certificate,
    type: "ICertificate",
    from: "@kubernetes-models/cert-manager/cert-manager.io/v1/Certificate",
  },
  "external-secrets.io/v1 ExternalSecret": {
    model: ExternalSecret,
    type: "IExternalSecret",
    from: "@kubernetes-models/external-secrets/external-secrets.io/v1/ExternalSecret",
  },
};

const nameOf = (object) => `${object.kind}/${object.metadata?.name}`;

function schemaProblems(objects) {
  const problems = [];
  for (const object of objects) {
    const known = MODULES[`${object.apiVersion} ${object.kind}`];
    if (!known) {
      problems.push(`${nameOf(object)}: no schema for ${object.apiVersion} ${object.kind}; ` +
                    "add its model to scripts/validate_crds.mjs");
      continue;
    }
    try {
      new known.model(object).validate();
    } catch (error) {
      problems.push(`${nameOf(object)}: ${error.message}`);
    }
  }
  return problems;
}

function unknownFieldProblems(objects) {
  const lines = [];
  const spans = [];  // [first line, last line, object] of each literal, 1-based
  for (const known of Object.values(MODULES)) {
    lines.push(`import type { ${known.type} } from "${known.from}";`);
  }
  objects.forEach((object, index) => {
    const literal = JSON.stringify(object, null, 1).split("\n");
    const { type } = MODULES[`${object.apiVersion} ${object.kind}`];
    spans.push([lines.length + 1, lines.length + literal.length, object]);
    literal[0] = `export const o${index}: ${type} = ${literal[0]}`;
    lines.push(...literal.slice(0, -1), `${literal.at(-1)};`);
  });
  const directory = mkdtempSync(join(tmpdir(), "crd-fields-"));
  try {
    writeFileSync(join(directory, "objects.ts"), `${lines.join("\n")}\n`);
    writeFileSync(join(directory, "tsconfig.json"), JSON.stringify({
      compilerOptions: {
        strict: true, noEmit: true, skipLibCheck: true, types: [],
        module: "nodenext", moduleResolution: "nodenext",
        paths: { "@kubernetes-models/*": [join(ROOT, "node_modules/@kubernetes-models/*")] },
      },
      files: ["objects.ts"],
    }));
    const tsc = spawnSync(process.execPath,
                          [join(ROOT, "node_modules/typescript/bin/tsc"), "-p", "."],
                          { cwd: directory, encoding: "utf8" });
    if (tsc.status === 0) return [];
    const problems = [];
    for (const output of tsc.stdout.split("\n").filter(Boolean)) {
      const at = /^objects\.ts\((\d+),\d+\): error TS\d+: (.*)$/.exec(output);
      const span = at && spans.find(([first, last]) => first <= +at[1] && +at[1] <= last);
      problems.push(span ? `${nameOf(span[2])}: ${at[2]}` : `tsc: ${output}`);
    }
    return problems.length ? problems : [`tsc failed: ${tsc.stderr || tsc.error}`];
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
}

const objects = JSON.parse(readFileSync(process.argv[2], "utf8"));
const problems = schemaProblems(objects);
if (!problems.some((problem) => problem.includes("no schema for"))) {
  problems.push(...unknownFieldProblems(objects));
}
for (const problem of problems) console.log(`ERROR ${problem}`);
process.exit(problems.length ? 1 : 0);
