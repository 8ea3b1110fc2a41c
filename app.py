#!/usr/bin/env python3
"""Boom Booking infrastructure: `npx cdk synth -c env=dev|staging|prod` (default dev)."""

from __future__ import annotations

import os
import sys

from boom_stacks.config import ConfigError
from boom_stacks.stage import create_app


def main() -> int:
    if "CDK_OUTDIR" not in os.environ:
        # Run bare, the app would miss cdk.json's context (the environment and the feature
        # flags it is built against) and fail deep inside a construct, or build other templates.
        print("app.py runs under the CDK CLI, which passes cdk.json's context: run `make synth`, "
              "or `npx cdk synth -c env=dev|staging|prod` from the project's directory.",
              file=sys.stderr)
        return 2
    try:
        app, _ = create_app(environ=os.environ)
    except ConfigError as err:
        print(f"Configuration error: {err}", file=sys.stderr)
        return 2
    try:
        app.synth()
    except RuntimeError as err:
        if "ValidationFailed" not in str(err):
            raise
        print("Compliance gate failed: fix the findings above, or acknowledge one finding on "
              "one resource with a reason in boom_stacks/compliance.py.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
