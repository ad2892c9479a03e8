"""Render a tenant's files without a server: ``python -m letsbe_provisioner.render --tools nextcloud,ghost
--domain example.com --out DIR``.

Writes every file the pipeline would put on the server under DIR at its server path (DIR/opt/letsbe/stacks/…,
DIR/etc/…), and the ten step scripts under DIR/steps/. Secrets are freshly generated for this rendering (files
holding them are 0600); registration tokens are placeholders. deploy/ and reviewers use this instead of a copy.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path

from pydantic import ValidationError

from letsbe_contracts import AutomationMode, OrderSpec, Region, Tier, load_catalog
from letsbe_provisioner.rendering.plan import AGENTS, Plan, Settings, generate_secrets
from letsbe_provisioner.steps import STEPS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m letsbe_provisioner.render", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tools", required=True, help="comma-separated catalog tool names")
    parser.add_argument("--domain", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--tier", default=Tier.BUILD.value, choices=[t.value for t in Tier])
    parser.add_argument("--hub-url", default="https://hub.letsbe.biz")
    parser.add_argument("--ssh-user", default="letsbe")
    args = parser.parse_args(argv)

    catalog = load_catalog()
    tools = tuple(t.strip() for t in args.tools.split(",") if t.strip())
    unknown = catalog.unknown(tools)
    if unknown:
        parser.error(f"unknown tool(s): {', '.join(unknown)}; known: {', '.join(t.name for t in catalog.selectable)}")
    try:
        order = OrderSpec(
            order_id=uuid.uuid4(),
            domain=args.domain,
            tier=Tier(args.tier),
            region=Region.EU,
            tools=tools,
            automation_mode=AutomationMode.AUTO,
            customer_email="render@example.invalid",
        )
    except ValidationError as exc:
        parser.error(str(exc.errors()[0]["msg"]))
    plan = Plan(order, Settings(hub_url=args.hub_url, ssh_user=args.ssh_user), generate_secrets(tools), catalog)
    tokens = {agent: "REGISTRATION-TOKEN-PLACEHOLDER" for agent in AGENTS}
    llm_key = "LLM-RELAY-KEY-PLACEHOLDER"  # issued by the hub when step 10 runs

    out: Path = args.out
    for f in plan.files(tokens, llm_key):
        target = out / f.path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f.content)
        target.chmod(int(f.mode, 8))
    (out / "steps").mkdir(parents=True, exist_ok=True)
    for step in STEPS:
        script = out / "steps" / f"{step.number:02d}-{step.name}.sh"
        script.write_text(plan.step_script(step.number, tokens, llm_key))
        script.chmod(0o700)  # step scripts embed the secrets of the files they write
    count = len(plan.files(tokens, llm_key))
    print(f"rendered {count} files and {len(STEPS)} step scripts for {order.domain} into {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
