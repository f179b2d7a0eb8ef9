"""The docker backend: the backend itself (:mod:`.backend`), the plan of networks and
containers it makes from a topology (:mod:`.plan`), the images it runs (:mod:`.images`) and the
same plan written as a compose file (:mod:`.compose`)."""
