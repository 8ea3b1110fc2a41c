"""Prints what `cdk synth` produced: stacks, where they go, and how close they are to quotas."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from boom_stacks.compliance import PACK_NAMES

RESOURCE_QUOTA = 500  # CloudFormation resources per stack
TEMPLATE_QUOTA = 1_000_000  # bytes, for a template uploaded through S3 (cdk deploy does)
ACK_METADATA = "aws:cdk:acknowledged-rules"
# compliance.py's acknowledgements are of the packs' findings, which CDK records as
# annotations. CDK acknowledges a few findings of its own (its FlowLog construct two of
# CloudFormation-Validate's); those are not counted as ours.
PACK_ACK_PREFIX = "Annotation::"


def summarize(outdir: Path) -> str:
    if not (outdir / "manifest.json").is_file():
        raise SystemExit(f"synth summary: {outdir}/manifest.json not found: run `make synth` "
                         "(or `npx cdk synth`) first")
    manifest = json.loads((outdir / "manifest.json").read_text())
    lines, acknowledged = [], 0
    for name, artifact in sorted(manifest["artifacts"].items()):
        if artifact["type"] != "aws:cloudformation:stack":
            continue
        template_file = outdir / artifact["properties"]["templateFile"]
        template = json.loads(template_file.read_text())
        resources = len(template.get("Resources", {}))
        size = template_file.stat().st_size
        lines.append(f"  {name:<22} {artifact['environment']:<32} "
                     f"{resources:>4}/{RESOURCE_QUOTA} resources  "
                     f"{size / 1000:>7.1f} kB/{TEMPLATE_QUOTA // 1000} kB")
        metadata = dict(artifact.get("metadata", {}))
        if "additionalMetadataFile" in artifact:
            metadata.update(json.loads((outdir / artifact["additionalMetadataFile"]).read_text()))
        for entries in metadata.values():
            acknowledged += sum(rule.startswith(PACK_ACK_PREFIX) for e in entries
                                if e["type"] == ACK_METADATA for rule in e["data"])
    header = f"Synthesized {len(lines)} stacks into {outdir}/ (stack, account/region, quotas):"
    gate = (f"Compliance: {', '.join(PACK_NAMES)}: 0 unacknowledged findings, "
            f"{acknowledged} acknowledged (boom_stacks/compliance.py)")
    return "\n".join([header, *lines, gate])


if __name__ == "__main__":
    print(summarize(Path(sys.argv[1] if len(sys.argv) > 1 else "cdk.out")))
