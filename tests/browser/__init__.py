"""Browser tests of the support portal (Playwright on Debian's Chromium, axe-core)."""
