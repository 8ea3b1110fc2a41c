// Validates custom resources (the Kubernetes objects kubernetes-validate has no schema for)
// against their projects' published CRD schemas, as compiled by the pinned @kubernetes-models
// packages (package.json). Checks types, enums and required fields; like the API server's
// schemas, these do not reject unknown fields, so tests assert the fields that matter too.
// Usage: node scripts/validate_crds.mjs objects.json   (a JSON array of objects)
// Exit 0 when every object is valid; 1 with one line per problem otherwise.
import { readFileSync } from "node:fs";
import { Certificate } from "@kubernetes-models/cert-manager/cert-manager.io/v1/Certificate";
import { ExternalSecret } from "@kubernetes-models/external-secrets/external-secrets.io/v1/ExternalSecret";

const MODELS = {
  "cert-manager.io/v1 Certificate": Certificate,
  "external-secrets.io/v1 ExternalSecret": ExternalSecret,
};

const problems = [];
for (const object of JSON.parse(readFileSync(process.argv[2], "utf8"))) {
  const type = `${object.apiVersion} ${object.kind}`;
  const name = `${object.kind}/${object.metadata?.name}`;
  const Model = MODELS[type];
  if (!Model) {
    problems.push(`${name}: no schema for ${type}; add its model to scripts/validate_crds.mjs`);
    continue;
  }
  try {
    new Model(object).validate();
  } catch (error) {
    problems.push(`${name}: ${error.message}`);
  }
}
for (const problem of problems) console.log(`ERROR ${problem}`);
process.exit(problems.length ? 1 : 0);
