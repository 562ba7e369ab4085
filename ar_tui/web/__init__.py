"""The app in a browser: `ar-tui serve`."""
