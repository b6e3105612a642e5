"""The `judgeeye` command: everything the app does, headless."""

from judgeeye.cli.main import app, main

__all__ = ["app", "main"]
