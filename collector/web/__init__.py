"""Server-rendered web pages for tier-1 support: sites, readiness tests, reports, tickets.

No build step and no external assets: Jinja2 templates shipped with the package, plain
HTML forms, and one small inline script that polls a running test's progress.
"""
