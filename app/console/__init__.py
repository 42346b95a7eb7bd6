"""The operator's web console: a static page and its JSON API (README "Console")."""
