"""Launcher only: `python bot.py` starts alertpilot (the package bot/ holds the code)."""

from bot.app import main

if __name__ == "__main__":
    main()
