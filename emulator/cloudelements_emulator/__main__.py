"""``python -m cloudelements_emulator`` → the CLI."""

from cloudelements_emulator.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
