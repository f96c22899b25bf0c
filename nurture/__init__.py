"""nurture: email nurturing campaigns as code, with click-triggered call-now tasks for reps."""

__version__ = "0.1.0"
