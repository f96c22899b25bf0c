"""The web apps: the public tracker (``/c``, ``/u``, ``/o``, ``/healthz``) and the reps' app.

:func:`nurture.web.tracker.create_tracker_app` builds the public app;
:func:`nurture.web.tracker.serve_public` runs it (with the settle loop) until told to stop.
"""
