"""``python -m airflow_provider_cloudelements.emulator`` → the CLI."""

from airflow_provider_cloudelements.emulator.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
