"""Method components (losses, re-weighting rules, batch mixers, schedules), each in a name registry; importing this
package registers every one (a module defining a registry never imports the modules that fill it)."""

from benchmark.methods import (  # noqa: F401  (registration side effects)
    las,
    losses,
    minority_augment,
    mixers,
    ride_loss,
    rules,
    schedules,
)
