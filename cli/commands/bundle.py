"""`llmtally bundle DIR`: writes the stack (compose file, collector, receiver, PostgreSQL, Prometheus with the rules,
Alertmanager, Grafana with the dashboards) with llmtally.yaml applied; never overwrites without --force."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the parser is built without the `serve` extra: .stack (yaml) is imported by the command only
    from .stack import Bundle, Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", metavar="DIR", help="where to write the bundle (created if missing)")
    parser.add_argument("--config", help="llmtally.yaml to apply (default: $LLMTALLY_CONFIG, else ./llmtally.yaml)")
    parser.add_argument("--force", action="store_true", help="overwrite the files of an earlier bundle")
    parser.add_argument(
        "--write-tokens",
        action="store_true",
        help="also write the tokens the stack uses to DIR/.env (mode 600), where docker compose reads them",
    )


def bundle(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    from .stack import Settings, build

    target = Path(args.dir)
    if target.exists() and not target.is_dir():
        print(f"llmtally bundle: {target} exists and is not a directory", file=sys.stderr)
        return 1
    # The tokens as compose will see them: its environment first, then the .env of an earlier --write-tokens (kept
    # as it is, so writing the bundle again keeps its tokens).
    kept = {k: v for k, v in _dotenv(target / ".env").items() if k in ("LLMTALLY_API_TOKEN", "LLMTALLY_INGEST_TOKEN")}
    environ = {**kept, **(os.environ if environ is None else environ)}
    settings = Settings.read(args.config, environ)
    made = build(settings, environ, write_tokens=args.write_tokens)
    existing = sorted(path for path in made.files if (target / path).exists())
    if existing and not args.force:
        shown = ", ".join(existing[:5]) + (f" and {len(existing) - 5} more" if len(existing) > 5 else "")
        print(
            f"llmtally bundle: {target} already holds {shown}: not overwritten (--force overwrites them)",
            file=sys.stderr,
        )
        return 1
    _write(target, made)
    _report(target, settings, made, overwritten=len(existing))
    return 0


def _dotenv(path: Path) -> dict[str, str]:
    """The KEY=VALUE lines of a .env file (none when it is missing)."""
    if not path.is_file():
        return {}
    found = {}
    for line in path.read_text().splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and not name.startswith("#"):
            found[name.strip()] = value.strip().strip("'\"")
    return found


def _write(target: Path, made: Bundle) -> None:
    for path, content in made.files.items():
        destination = target / path
        destination.parent.mkdir(parents=True, exist_ok=True)
        if path in made.private:
            destination.unlink(missing_ok=True)
            descriptor = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as file:
                file.write(content)
        else:
            destination.write_bytes(content)


def _report(target: Path, settings: Settings, made: Bundle, overwritten: int) -> None:
    source = settings.source or "no llmtally.yaml: the defaults"
    again = f", {overwritten} of them overwritten" if overwritten else ""
    print(f"llmtally bundle: wrote {len(made.files)} files to {target} ({source}{again}):")
    for path in sorted(made.files):
        print(f"  {target / path}")
    for note in made.notes:
        print(f"note: {note}")
    generated = [t for t in made.tokens if t.origin == "generated"]
    if generated and ".env" not in made.files:
        print("tokens generated for this stack (only their sha256 is written; keep them, the stack needs them):")
        for token in generated:
            print(f"  export {token.variable}={token.value}")
    for token in made.tokens:
        if token.origin == "llmtally.yaml" and token.value is None:
            print(f"set {token.variable} to the token of {token.section} entry {token.name!r} before starting")
    print(f"start: docker compose -f {target / 'compose.yaml'} up -d --build")
