"""The cloud-init user data of an overflow server: the provisioner's user, key-only, passwordless sudo.

Values go in as JSON strings (valid YAML scalars), so nothing in settings can inject YAML.
"""

from __future__ import annotations

import json


def render_cloud_init(user: str, public_key: str | None) -> str:
    lines = [
        "#cloud-config",
        "users:",
        "  - default",
        f"  - name: {json.dumps(user)}",
        "    groups: [sudo]",
        "    shell: /bin/bash",
        '    sudo: "ALL=(ALL) NOPASSWD:ALL"',
        "    lock_passwd: true",
    ]
    if public_key:
        lines += ["    ssh_authorized_keys:", f"      - {json.dumps(public_key)}"]
    lines += ["ssh_pwauth: false", "package_update: true"]
    return "\n".join(lines) + "\n"
