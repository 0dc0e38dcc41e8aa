"""A toy scenario the registry test adds: a steps module (as in tasks/) and a flow module (as in
flows/), nothing else."""
