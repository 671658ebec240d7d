"""Method components (losses, re-weighting rules, batch mixers, schedules), each in a name registry."""
