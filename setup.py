"""The stack files in the package; everything else about the build is in pyproject.toml.

The Grafana dashboards and provisioning, the Prometheus config, the alert rules, `alertmanager.yml`, the collector
configs and the compose template stay in their top-level folders of the repository, the one copy there is. `build_py`
adds them to the package as `llmtally/stack/<their path in the repository>`, where `llmtally bundle` reads them:
copied into the wheel, listed in the sdist (`get_source_files`), linked by a strict editable install
(`get_output_mapping`). A pattern that matches nothing fails the build, so a renamed file cannot silently drop out.
"""

from __future__ import annotations

import os
import shutil
from glob import glob

from setuptools import setup
from setuptools.command.build_py import build_py

# Relative to the repository root (the directory of this file, where every build runs).
STACK = (
    "grafana-dashboards/docker-compose.yml",
    "grafana-dashboards/prometheus.yml",
    "grafana-dashboards/dashboards/*.json",
    "grafana-dashboards/provisioning/datasources/*.yaml",
    "grafana-dashboards/provisioning/dashboards/*.yaml",
    "alert-rules/*.rules.yml",
    "alert-rules/alertmanager.yml",
    "otel-collector-config.yaml",
    "otel-collector-loadbalancing.yaml",
)
TARGET = ("llmtally", "stack")


def stack_sources() -> list[str]:
    found: list[str] = []
    for pattern in STACK:
        matches = sorted(glob(pattern))
        if not matches:
            raise SystemExit(f"setup.py: no file matches {pattern!r} (the stack files of llmtally bundle)")
        found += matches
    return found


class BuildPyWithStack(build_py):
    def _stack(self) -> dict[str, str]:
        """Build path -> source path of every stack file."""
        return {os.path.join(self.build_lib, *TARGET, *source.split("/")): source for source in stack_sources()}

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return  # the editable wheel links the files of get_output_mapping instead
        # Exactly today's files: none left over in a reused build directory from a file since removed.
        shutil.rmtree(os.path.join(self.build_lib, *TARGET), ignore_errors=True)
        for target, source in self._stack().items():
            os.makedirs(os.path.dirname(target), exist_ok=True)
            self.copy_file(source, target)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:  # type: ignore[override]
        outputs = list(super().get_outputs(include_bytecode))
        if self.editable_mode:
            return outputs  # already the keys of get_output_mapping
        return [*outputs, *self._stack()]

    def get_output_mapping(self) -> dict[str, str]:
        return {**super().get_output_mapping(), **self._stack()}

    def get_source_files(self) -> list[str]:
        return [*super().get_source_files(), *self._stack().values()]


setup(cmdclass={"build_py": BuildPyWithStack})
