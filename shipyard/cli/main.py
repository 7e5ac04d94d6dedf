"""Entry point of the ``shipyard`` CLI.

Each command group lives in its own module exposing ``register(app)``; this module
only assembles them and turns Shipyard errors into exit codes: a user error prints
one line to stderr and exits 2, never a traceback.
"""

from __future__ import annotations

import importlib
import os
import sys

import typer

from shipyard.core.errors import ConfigError, PolicyError, ShipyardError

# Modules that contribute commands. Add yours here; each exposes ``register(app)``.
COMMAND_MODULES: tuple[str, ...] = (
    "shipyard.cli.stack",
    "shipyard.cli.sim",
    "shipyard.cli.build",
    "shipyard.cli.check",
    "shipyard.cli.demo",
    "shipyard.cli.gitops",
    "shipyard.cli.bridge",
    "shipyard.cli.deliver_steps",
    "shipyard.cli.dr",
    "shipyard.cli.drift",
    "shipyard.cli.runs",
    "shipyard.cli.fleet",
    # Adds `appset` to the `fleet` group of shipyard.cli.fleet.
    "shipyard.cli.fleet_appset",
    # Adds `pause`, `resume`, `skip` to the `fleet` group.
    "shipyard.cli.fleet_control",
    "shipyard.cli.dora",
    "shipyard.cli.deliveries",
    "shipyard.cli.exporter",
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def build_app() -> typer.Typer:
    """Create the Typer app with every command group registered."""
    app = typer.Typer(
        name="shipyard",
        help="Shipyard: GitOps continuous delivery as Prefect flows.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)
    return app


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Print ``message`` as one line on stderr and return the Exit to raise."""
    typer.echo(f"shipyard: {' '.join(message.split())}", err=True)
    return typer.Exit(code)


def load_stack_env() -> None:
    """Export the local stack's env file (if any) for variables not already set.

    So every command finds the stack's services after `shipyard stack up` without the
    user sourcing anything; explicit environment variables always win.
    """
    from shipyard.stack.model import StackLayout
    from shipyard.stack.runner import read_env_file

    for key, value in read_env_file(StackLayout.from_env()).items():
        os.environ.setdefault(key, value)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; map Shipyard errors to one stderr line and an exit code."""
    load_stack_env()
    from shipyard.core.redact import install_log_redaction

    install_log_redaction()
    app = build_app()
    try:
        app(args=argv, standalone_mode=True)
    except SystemExit:
        raise
    except ConfigError as exc:
        raise SystemExit(_report(exc, EXIT_USAGE)) from None
    except PolicyError as exc:
        raise SystemExit(_report(exc, EXIT_FAILED)) from None
    except ShipyardError as exc:
        raise SystemExit(_report(exc, EXIT_FAILED)) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


def _report(exc: ShipyardError, code: int) -> int:
    from shipyard.core.redact import redact

    typer.echo(f"shipyard: {redact(' '.join(str(exc).split()))}", err=True)
    return code


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
