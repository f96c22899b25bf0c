"""The web apps: the public tracker (``/c``, ``/u``, ``/o``, ``/healthz``) and the reps' app.

:func:`nurture.web.tracker.create_tracker_app` builds the public app and
:func:`nurture.web.reps.create_reps_app` the reps' app; :mod:`nurture.parts` serves them.
"""
